"""Token admission: HS256 JWTs checked against the engine's shared secret (CE-compatible). Pure, no I/O.

Only HS256 is accepted. `exp`, `nbf` and a future `iat` are checked with a leeway; `aud`/`iss` are not
checked (CE documents no requirement). Refusals raise `AuthError` with a short fixed reason that never
contains the token.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import jwt
from jwt.algorithms import HMACAlgorithm
from jwt.warnings import InsecureKeyLengthWarning

from portway.errors import AuthError, ConfigError

__all__ = [
    "ALGORITHM",
    "ANONYMOUS",
    "MAX_TOKEN_LENGTH",
    "Principal",
    "TokenVerifier",
    "mint_token",
    "subject_of",
    "token_id",
]

ALGORITHM = "HS256"
ANONYMOUS = "anonymous"
_RESERVED_MINT_CLAIMS = frozenset({"iat", "nbf", "exp", "sub", "jti"})
MAX_TOKEN_LENGTH = 65536
"""Longer strings are refused before any parsing."""


def _no_claims() -> Mapping[str, object]:
    return MappingProxyType({})


def token_id(token: str) -> str:
    """A stable, non-reversible handle for a credential: sha256 hex of the token, first 16 chars."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified token speaks for.

    `token_id` recognises the same credential again ("" when there was no token); `expires_at` is `exp`.
    """

    subject: str
    token_id: str
    claims: Mapping[str, object] = field(default_factory=_no_claims)
    expires_at: float | None = None
    project_id: str | None = None  # the project the credential belongs to (None: the default one)


def _hmac() -> HMACAlgorithm:
    return HMACAlgorithm(HMACAlgorithm.SHA256)


def _check_secret(secret: str) -> bool:
    """Validate `secret` as an HS256 key; returns True when it is shorter than PyJWT's recommended minimum."""
    if not secret:
        raise ConfigError("auth.jwt.token_jwt_secret must not be empty")
    alg = _hmac()
    try:
        key = alg.prepare_key(secret)
    except jwt.InvalidKeyError:
        raise ConfigError(
            "auth.jwt.token_jwt_secret looks like a PEM/JWK key, not an HS256 shared secret"
        ) from None
    return bool(alg.check_key_length(key))


@contextlib.contextmanager
def _quiet_short_keys(weak: bool) -> Iterator[None]:
    """Silence PyJWT's short-key warning for a secret already reported through `weak_secret`."""
    if not weak:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        yield


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class TokenVerifier:
    """Admits or refuses tokens. Immutable after construction."""

    __slots__ = ("_enabled", "_leeway", "_secret", "_weak")

    def __init__(self, secret: str | None, *, enabled: bool, leeway_s: float = 30) -> None:
        if leeway_s < 0:
            raise ValueError("leeway_s must not be negative")
        self._enabled = enabled
        self._leeway = float(leeway_s)
        self._secret = secret
        self._weak = False
        if enabled:
            if secret is None:
                raise ConfigError("auth.jwt.token_jwt_secret is required when auth.jwt.enabled is true")
            self._weak = _check_secret(secret)

    def __repr__(self) -> str:
        return f"TokenVerifier(enabled={self._enabled}, leeway_s={self._leeway})"

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def weak_secret(self) -> bool:
        """True when the secret is shorter than 32 bytes: accepted, but worth a warning to the operator."""
        return self._weak

    def issue(self, *, subject: str, ttl_s: int, now: float | None = None,
              extra: Mapping[str, object] | None = None) -> str:
        """A token this verifier admits (see `mint_token`); only when token auth is on."""
        if not self._enabled or self._secret is None:
            raise AuthError("this engine does not use tokens (auth.jwt.enabled is false)")
        return mint_token(self._secret, subject=subject, ttl_s=ttl_s, now=now, extra=extra)

    def verify(self, token: str | None, now: float | None = None) -> Principal:
        """Return the principal for `token`, or raise AuthError with a reason that never quotes the token."""
        if not self._enabled:
            return Principal(subject=ANONYMOUS, token_id=token_id(token) if token else "")
        if token is None or not token.strip():
            raise AuthError("token missing")
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthError("token malformed")
        claims = self.decode(token)
        when = time.time() if now is None else now
        expires_at = self.check_times(claims, when)
        tid = token_id(token)
        return Principal(
            subject=subject_of(claims, tid),
            token_id=tid,
            claims=MappingProxyType(claims),
            expires_at=expires_at,
        )

    @property
    def leeway_s(self) -> float:
        return self._leeway

    def decode(self, token: str, header: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The claims of an HS256 token whose signature the secret verifies; times are not checked yet.

        For `access.tokens`, which adds the other token types on top and passes the `header` it already
        parsed (parsing it twice would slow every request); raises AuthError.
        """
        if not self._enabled:
            raise AuthError("this engine does not use tokens (auth.jwt.enabled is false)")
        if header is None:
            try:
                header = jwt.get_unverified_header(token)
            except jwt.DecodeError:
                raise AuthError("token malformed") from None
        if header.get("alg") != ALGORITHM:
            raise AuthError("token algorithm not allowed")
        assert self._secret is not None
        try:
            with _quiet_short_keys(self._weak):
                claims = jwt.decode(
                    token,
                    self._secret,
                    algorithms=[ALGORITHM],
                    # exp/nbf/iat are checked in _check_claims against the caller's clock.
                    options={
                        "verify_signature": True,
                        "verify_exp": False,
                        "verify_nbf": False,
                        "verify_iat": False,
                        "verify_aud": False,
                        "verify_iss": False,
                    },
                )
        except jwt.InvalidSignatureError:
            raise AuthError("token signature invalid") from None
        except jwt.InvalidAlgorithmError:
            raise AuthError("token algorithm not allowed") from None
        except jwt.DecodeError:
            raise AuthError("token malformed") from None
        except jwt.InvalidTokenError:  # e.g. a non-string sub or jti
            raise AuthError("token claims malformed") from None
        return claims

    def check_times(self, claims: Mapping[str, object], now: float) -> float | None:
        """Types of the registered claims, then validity at `now` (with the leeway); returns `exp`."""
        for name in ("sub", "jti"):
            if name in claims and not isinstance(claims[name], str):
                raise AuthError("token claims malformed")
        expires_at: float | None = None
        if "exp" in claims:
            expires_at = _number(claims["exp"])
            if expires_at is None:
                raise AuthError("token claims malformed")
            if now - self._leeway >= expires_at:
                raise AuthError("token expired")
        if "nbf" in claims:
            not_before = _number(claims["nbf"])
            if not_before is None:
                raise AuthError("token claims malformed")
            if now + self._leeway < not_before:
                raise AuthError("token not yet valid")
        if "iat" in claims:
            issued_at = _number(claims["iat"])
            if issued_at is None:
                raise AuthError("token claims malformed")
            if now + self._leeway < issued_at:
                raise AuthError("token not yet valid")
        return expires_at


def subject_of(claims: Mapping[str, object], tid: str) -> str:
    """Who a token names: `sub`, else `userId`, else `clientId`, else its token id."""
    for name in ("sub", "userId", "clientId"):
        value = claims.get(name)
        if isinstance(value, str) and value:
            return value
    return f"token:{tid}"


def mint_token(
    secret: str,
    *,
    subject: str,
    ttl_s: int,
    now: float | None = None,
    extra: Mapping[str, object] | None = None,
) -> str:
    """An HS256 token with iat, nbf, exp, sub, jti (random) and type "auth".

    `extra` adds claims (and may replace `type`); it may not set iat/nbf/exp/sub/jti.
    """
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    if not subject:
        raise ValueError("subject must not be empty")
    weak = _check_secret(secret)
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {"type": "auth"}
    if extra:
        clash = sorted(_RESERVED_MINT_CLAIMS.intersection(extra))
        if clash:
            raise ValueError(f"extra claims may not set {', '.join(clash)}")
        claims.update(extra)
    claims.update(iat=issued, nbf=issued, exp=issued + int(ttl_s), sub=subject, jti=secrets.token_hex(16))
    with _quiet_short_keys(weak):
        return jwt.encode(claims, secret, algorithm=ALGORITHM)
