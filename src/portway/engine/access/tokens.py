"""Every token type of §3.1, verified into an `AccessPrincipal` that carries what the token may do. Pure:
stored credentials are read through `CredentialStore`, a small synchronous Protocol (the store keeps
credentials in memory; verification never waits on a database).

| kind | signature | also required |
|------|-----------|---------------|
| ce   | HS256, engine secret (no `type` claim) | — |
| auth | HS256, engine secret | its `sourceCredentialId`, if any, is not revoked nor a disabled user's PAT |
| pat  | HS256, engine secret | SHA-256 hex of the whole token is stored, not revoked, its user not disabled |
| app  | ES512, the P-521 key of the `clientId` credential | credential not revoked; exp − iat ≤ 3600 s |

Any kind: a token whose `jti` is in the revocation log (a single token withdrawn by an operator) is refused, and so
is a derived token with a revoked `jti` in its `derivedFrom` chain.
`withdrawn(principal)` asks the same questions again of a principal verified earlier, so the engine can close
control channels and signaling streams whose credential was revoked (or whose user was disabled) since.

A principal backed by a stored credential (a PAT, an app credential, or a token derived from either)
carries the stored `role` behind it (`AccessPrincipal.role`), read at every verification: access/operators.py
`is_operator` lets that role decide, so demoting a user takes operator rights from their PATs at once.

The algorithm is pinned by the kind, so an HS256 token claiming `app`, an ES512 token claiming `pat`
or an HS256 token signed with an app public key as secret are all refused. What a token may do is the
intersection of the stored credential's restrictions and the token's own claims (§3.2 "Derivation").
Refusals raise `AuthError` with a short reason that never quotes the token.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from portway.engine.access.grant import EVERYTHING, Grant
from portway.engine.access.resources import Boundary
from portway.engine.auth import ANONYMOUS, MAX_TOKEN_LENGTH, Principal, TokenVerifier, subject_of, token_id
from portway.errors import AuthError

__all__ = [
    "APP_ALGORITHM",
    "APP_CLOCK_SKEW_S",
    "APP_MAX_LIFETIME_S",
    "DERIVED_FROM",
    "AccessPrincipal",
    "AccessVerifier",
    "AppRecord",
    "CredentialStore",
    "PatRecord",
    "TokenKind",
    "pat_digest",
]

TokenKind = Literal["ce", "auth", "pat", "app"]
DERIVED_FROM = "derivedFrom"
"""Claim of a derived token: the `jti` of every token above it (api/tokens.py `derive`)."""
APP_ALGORITHM = "ES512"
APP_MAX_LIFETIME_S = 3600
APP_CLOCK_SKEW_S = 300
"""How far in the future an app token's `iat` may lie (the minting client's clock may run ahead)."""


@dataclass(frozen=True, slots=True)
class PatRecord:
    """A stored personal access token (the token itself is kept only as its SHA-256 hex), with the role and
    disabled state of the user it belongs to (`role` None: no user on record)."""

    id: str
    subject: str
    project_id: str | None = None
    workspace_id: str | None = None
    revoked: bool = False
    permissions: Sequence[str] | None = None
    resources: Mapping[str, object] | None = None
    expires_at: float | None = None
    role: str | None = None
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class AppRecord:
    """Stored application credentials: the public half of the P-521 key and the ceiling of its tokens."""

    client_id: str
    public_key_pem: str
    subject: str | None = None
    project_id: str | None = None
    workspace_id: str | None = None
    revoked: bool = False
    permissions: Sequence[str] | None = None
    resources: Mapping[str, object] | None = None


class CredentialStore(Protocol):
    """What verification needs from the control-plane store. Calls must be cheap and must not block."""

    def pat(self, sha256_hex: str) -> PatRecord | None:
        """The PAT whose whole token string hashes to `sha256_hex`, or None."""

    def app_credential(self, client_id: str) -> AppRecord | None:
        """The application credential `client_id`, or None."""

    def revoked(self, credential_id: str) -> bool:
        """True when `credential_id` (a `sourceCredentialId`) was revoked; False when unknown."""

    def disabled(self, credential_id: str) -> bool:
        """True when `credential_id` is a PAT whose user is disabled; False when unknown."""

    def role(self, credential_id: str) -> str | None:
        """The stored role behind a credential: a PAT's user's role; for an app credential "operator" when its
        stored permissions list `admin`, else "member"; None when unknown (or a PAT without a user)."""


def pat_digest(token: str) -> str:
    """How a PAT is stored and looked up: SHA-256 hex of the whole token string."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessPrincipal(Principal):
    """A verified token: who (`subject`), which kind, what it may do (`grant`) and where it belongs.

    `source_credential_id` is the stored credential behind it (PAT id, app client id, or an auth
    token's `sourceCredentialId`). `role` is the stored role ("operator" or "member") behind that credential
    (`CredentialStore.role`); None when no stored credential stands behind it. The store's word, not a claim.
    Still a `Principal`, so code that only needs the subject keeps working.
    """

    kind: TokenKind
    grant: Grant = EVERYTHING
    workspace_id: str | None = None
    source_credential_id: str | None = None
    role: str | None = None

    @property
    def permissions(self) -> frozenset[str] | None:
        return self.grant.permissions

    @property
    def boundary(self) -> Boundary:
        return self.grant.boundary

    @property
    def revocation_id(self) -> str:
        """What a token derived from this one should carry as `sourceCredentialId`: the root credential,
        so revoking it also revokes everything derived from it."""
        return self.source_credential_id or self.token_id


class AccessVerifier:
    """Admits ce, auth, pat and app tokens. Immutable; a drop-in for `TokenVerifier.verify`.

    Without a store, pat and app tokens are refused and `sourceCredentialId` is not checked (CE has no
    revocation).
    """

    __slots__ = ("_store", "_tokens")

    def __init__(self, tokens: TokenVerifier, store: CredentialStore | None = None) -> None:
        self._tokens = tokens
        self._store = store

    @property
    def enabled(self) -> bool:
        return self._tokens.enabled

    def verify(self, token: str | None, now: float | None = None) -> AccessPrincipal:
        """The principal for `token`, or AuthError with a reason that never quotes the token."""
        principal = self._verify(token, now)
        reason = self.withdrawn(principal)
        if reason is not None:
            raise AuthError(reason)
        return principal

    def withdrawn(self, principal: Principal) -> str | None:
        """Why a principal verified earlier is no longer good (its token or credential revoked, its user
        disabled), or None. Expiry is not asked: a connection outlives its token's `exp`, as in rstream."""
        if self._store is None or not isinstance(principal, AccessPrincipal):
            return None
        jti = principal.claims.get("jti")
        if isinstance(jti, str) and self._store.revoked(jti):
            return "token revoked"
        chain = principal.claims.get(DERIVED_FROM)
        if isinstance(chain, list) and any(isinstance(a, str) and self._store.revoked(a) for a in chain):
            return "token source revoked"
        source = principal.source_credential_id
        if source is not None:
            if self._store.revoked(source):
                return "credential revoked"
            if self._store.disabled(source):
                return "user disabled"
        return None

    def _verify(self, token: str | None, now: float | None) -> AccessPrincipal:
        if not self._tokens.enabled:
            return AccessPrincipal(subject=ANONYMOUS, token_id=token_id(token) if token else "", kind="ce")
        if token is None or not token.strip():
            raise AuthError("token missing")
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthError("token malformed")
        when = time.time() if now is None else now
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise AuthError("token malformed") from None
        if header.get("alg") == APP_ALGORITHM:
            return self._app(token, when)
        # TokenVerifier.decode refuses every algorithm but HS256 (alg: none included).
        claims = self._tokens.decode(token, header)
        kind = claims.get("type")
        if kind == "app":
            raise AuthError("token algorithm does not match its type")
        if kind is not None and kind not in ("auth", "pat"):
            raise AuthError("token type unknown")
        expires_at = self._tokens.check_times(claims, when)
        if kind == "pat":
            return self._pat(token, claims, expires_at, when)
        return self._auth(token, claims, expires_at, "ce" if kind is None else "auth")

    def _auth(self, token: str, claims: dict[str, Any], expires_at: float | None,
              kind: Literal["ce", "auth"]) -> AccessPrincipal:
        source = claims.get("sourceCredentialId")
        if source is not None and not isinstance(source, str):
            raise AuthError("token claims malformed")
        if source is not None and self._store is not None:
            if self._store.revoked(source):
                raise AuthError("token source credential revoked")
            if self._store.disabled(source):
                raise AuthError("token source credential's user disabled")
        tid = token_id(token)
        project, workspace = claims.get("project_id"), claims.get("workspace_id")  # set on derived tokens
        role = self._store.role(source) if source is not None and self._store is not None else None
        return AccessPrincipal(
            subject=subject_of(claims, tid), token_id=tid, claims=MappingProxyType(claims), expires_at=expires_at,
            kind=kind, grant=Grant.from_claims(claims), source_credential_id=source, role=role,
            project_id=project if isinstance(project, str) else None,
            workspace_id=workspace if isinstance(workspace, str) else None)

    def _pat(self, token: str, claims: dict[str, Any], expires_at: float | None, now: float) -> AccessPrincipal:
        if self._store is None:
            raise AuthError("personal access tokens are not accepted by this engine")
        record = self._store.pat(pat_digest(token))
        if record is None:
            raise AuthError("token unknown")
        if record.revoked:
            raise AuthError("token revoked")
        if record.disabled:
            raise AuthError("user disabled")
        if record.expires_at is not None:
            if now >= record.expires_at:
                raise AuthError("token expired")
            expires_at = record.expires_at if expires_at is None else min(expires_at, record.expires_at)
        grant = Grant.of(record.permissions, record.resources).intersect(Grant.from_claims(claims))
        return AccessPrincipal(
            subject=record.subject, token_id=token_id(token), claims=MappingProxyType(claims), expires_at=expires_at,
            kind="pat", grant=grant, project_id=record.project_id, workspace_id=record.workspace_id,
            source_credential_id=record.id, role=record.role)

    def _app(self, token: str, now: float) -> AccessPrincipal:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise AuthError("token malformed") from None
        if unverified.get("type") != "app":
            raise AuthError("token algorithm does not match its type")
        client_id = unverified.get("clientId")
        if not isinstance(client_id, str) or not client_id:
            raise AuthError("token claims malformed")
        if self._store is None:
            raise AuthError("application tokens are not accepted by this engine")
        record = self._store.app_credential(client_id)
        if record is None:
            raise AuthError("credential unknown")
        if record.revoked:
            raise AuthError("credential revoked")
        claims = _decode_app(token, _public_key(record.public_key_pem))
        expires_at = _check_app_times(claims, now, self._tokens.leeway_s)
        grant = Grant.of(record.permissions, record.resources).intersect(Grant.from_claims(claims))
        return AccessPrincipal(
            subject=record.subject or client_id, token_id=token_id(token), claims=MappingProxyType(claims),
            expires_at=expires_at, kind="app", grant=grant, project_id=record.project_id,
            workspace_id=record.workspace_id, source_credential_id=client_id, role=self._store.role(client_id))


@functools.lru_cache(maxsize=256)
def _public_key(pem: str) -> ec.EllipticCurvePublicKey:
    """A credential's P-521 public key; cached, since parsing a PEM costs more than checking a signature."""
    try:
        key = load_pem_public_key(pem.encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError):
        raise AuthError("credential key unusable") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP521R1):
        raise AuthError("credential key unusable")
    return key


def _decode_app(token: str, key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
    try:
        return jwt.decode(token, key, algorithms=[APP_ALGORITHM], options={
            "verify_signature": True, "verify_exp": False, "verify_nbf": False, "verify_iat": False,
            "verify_aud": False, "verify_iss": False})
    except jwt.InvalidSignatureError:
        raise AuthError("token signature invalid") from None
    except jwt.InvalidAlgorithmError:
        raise AuthError("token algorithm not allowed") from None
    except jwt.InvalidTokenError:
        raise AuthError("token malformed") from None


def _check_app_times(claims: Mapping[str, object], now: float, leeway_s: float) -> float:
    """§3.3: iat and exp are required and exp − iat ≤ 3600 s; iat may run up to 300 s ahead of us.

    An old `iat` is fine while `exp` holds: a 3600 s token stays usable for its whole lifetime.
    """
    issued_at, expires_at = _number(claims.get("iat")), _number(claims.get("exp"))
    if issued_at is None or expires_at is None:
        raise AuthError("token claims malformed")
    if expires_at <= issued_at:
        raise AuthError("token claims malformed")
    if expires_at - issued_at > APP_MAX_LIFETIME_S:
        raise AuthError("token lifetime too long")
    if issued_at > now + APP_CLOCK_SKEW_S:
        raise AuthError("token not yet valid")
    if now - leeway_s >= expires_at:
        raise AuthError("token expired")
    if "nbf" in claims:
        not_before = _number(claims["nbf"])
        if not_before is None:
            raise AuthError("token claims malformed")
        if now + leeway_s < not_before:
            raise AuthError("token not yet valid")
    return expires_at


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)

