"""Token admission: HS256 only, exp/nbf with leeway, refusals that never quote the token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping

import jwt
import pytest

from portway.engine.auth import Principal, TokenVerifier, mint_token, token_id
from portway.errors import AuthError, ConfigError

SECRET = "unit-test-secret-unit-test-secret-0123456789"
NOW = 1_900_000_000.0


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def craft(header: Mapping[str, object], payload: Mapping[str, object], key: bytes | None = None) -> str:
    """A JWT built by hand so tests do not depend on what PyJWT agrees to produce."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    if key is None:
        return f"{signing_input}."
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[str(header["alg"])]
    return f"{signing_input}.{b64(hmac.new(key, signing_input.encode(), digest).digest())}"


def refused(verifier: TokenVerifier, token: str | None, reason: str, now: float = NOW) -> AuthError:
    with pytest.raises(AuthError) as info:
        verifier.verify(token, now=now)
    message = str(info.value)
    assert message == reason
    if token:
        assert token not in message
        for part in token.split("."):
            if len(part) > 4:
                assert part not in message
    return info.value


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier(SECRET, enabled=True)


def test_valid_minted_token(verifier: TokenVerifier) -> None:
    token = mint_token(SECRET, subject="alice", ttl_s=600, now=NOW, extra={"permissions": ["x"]})
    principal = verifier.verify(token, now=NOW + 10)
    assert isinstance(principal, Principal)
    assert principal.subject == "alice"
    assert principal.token_id == hashlib.sha256(token.encode()).hexdigest()[:16]
    assert principal.token_id == token_id(token)
    assert principal.expires_at == NOW + 600
    assert principal.claims["type"] == "auth"
    assert principal.claims["permissions"] == ["x"]
    assert principal.claims["iat"] == principal.claims["nbf"] == int(NOW)
    assert isinstance(principal.claims["jti"], str)
    with pytest.raises(TypeError):
        principal.claims["sub"] = "mallory"  # type: ignore[index]


def test_minted_tokens_are_unique_and_hs256() -> None:
    a = mint_token(SECRET, subject="alice", ttl_s=60, now=NOW)
    b = mint_token(SECRET, subject="alice", ttl_s=60, now=NOW)
    assert a != b
    assert jwt.get_unverified_header(a)["alg"] == "HS256"
    claims = jwt.decode(
        a,
        SECRET,
        algorithms=["HS256"],
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )
    assert set(claims) == {"type", "iat", "nbf", "exp", "sub", "jti"}
    assert claims["exp"] - claims["iat"] == 60


def test_mint_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        mint_token(SECRET, subject="a", ttl_s=0)
    with pytest.raises(ValueError, match="exp"):
        mint_token(SECRET, subject="a", ttl_s=5, extra={"exp": 1})
    token = mint_token(SECRET, subject="a", ttl_s=5, now=NOW, extra={"type": "pat"})
    assert TokenVerifier(SECRET, enabled=True).verify(token, now=NOW).claims["type"] == "pat"


def test_real_clock_default(verifier: TokenVerifier) -> None:
    token = mint_token(SECRET, subject="alice", ttl_s=60)
    assert verifier.verify(token).subject == "alice"


def test_expired(verifier: TokenVerifier) -> None:
    token = mint_token(SECRET, subject="alice", ttl_s=60, now=NOW)
    assert verifier.verify(token, now=NOW + 60 + 29).subject == "alice"  # within the 30 s leeway
    refused(verifier, token, "token expired", now=NOW + 60 + 30)
    strict = TokenVerifier(SECRET, enabled=True, leeway_s=0)
    refused(strict, token, "token expired", now=NOW + 60)


def test_not_yet_valid(verifier: TokenVerifier) -> None:
    token = craft({"alg": "HS256", "typ": "JWT"}, {"sub": "a", "nbf": NOW + 300}, SECRET.encode())
    refused(verifier, token, "token not yet valid")
    assert verifier.verify(token, now=NOW + 280).subject == "a"  # leeway
    assert verifier.verify(token, now=NOW + 300).subject == "a"


def test_issued_in_the_future(verifier: TokenVerifier) -> None:
    token = mint_token(SECRET, subject="alice", ttl_s=600, now=NOW + 120)
    refused(verifier, token, "token not yet valid")
    assert verifier.verify(token, now=NOW + 100).subject == "alice"  # leeway


def test_wrong_secret(verifier: TokenVerifier) -> None:
    token = mint_token("another-secret-another-secret-0123456789", subject="alice", ttl_s=60, now=NOW)
    refused(verifier, token, "token signature invalid")


def test_tampered_payload(verifier: TokenVerifier) -> None:
    token = mint_token(SECRET, subject="alice", ttl_s=60, now=NOW)
    header, _, signature = token.split(".")
    forged = f"{header}.{b64(json.dumps({'sub': 'root', 'exp': NOW + 60}).encode())}.{signature}"
    refused(verifier, forged, "token signature invalid")


def test_alg_none_rejected(verifier: TokenVerifier) -> None:
    token = craft({"alg": "none", "typ": "JWT"}, {"sub": "root", "exp": NOW + 600})
    refused(verifier, token, "token algorithm not allowed")
    token_no_dot = craft({"alg": "none"}, {"sub": "root"}).rstrip(".")
    refused(verifier, token_no_dot, "token malformed")


def test_hs512_rejected_even_with_the_right_secret(verifier: TokenVerifier) -> None:
    token = craft({"alg": "HS512", "typ": "JWT"}, {"sub": "a", "exp": NOW + 600}, SECRET.encode())
    refused(verifier, token, "token algorithm not allowed")
    es = craft({"alg": "ES512", "typ": "JWT"}, {"sub": "a"})
    refused(verifier, es + "c2ln", "token algorithm not allowed")


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        ("garbage", "token malformed"),
        ("a.b.c", "token malformed"),
        ("not base64!.at all.zzz", "token malformed"),
        ("opaque-token-without-dots-0123456789", "token malformed"),
        (b64(b"{}") + "." + b64(b'{"sub":"a"}') + ".c2ln", "token algorithm not allowed"),
        (b64(b'{"alg":"HS256"}') + "." + b64(b"not json") + ".c2ln", "token signature invalid"),
    ],
)
def test_garbage(verifier: TokenVerifier, garbage: str, reason: str) -> None:
    refused(verifier, garbage, reason)


def test_payload_that_is_not_an_object(verifier: TokenVerifier) -> None:
    signing_input = f"{b64(json.dumps({'alg': 'HS256'}).encode())}.{b64(b'[1,2,3]')}"
    sig = b64(hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest())
    refused(verifier, f"{signing_input}.{sig}", "token malformed")


@pytest.mark.parametrize(
    "claims",
    [{"exp": "tomorrow"}, {"nbf": [1]}, {"exp": True}, {"iat": "now"}, {"sub": 42}, {"jti": 7}],
)
def test_malformed_claims(verifier: TokenVerifier, claims: dict[str, object]) -> None:
    token = craft({"alg": "HS256", "typ": "JWT"}, claims, SECRET.encode())
    refused(verifier, token, "token claims malformed")


def test_oversized_token(verifier: TokenVerifier) -> None:
    token = mint_token(SECRET, subject="a", ttl_s=60, now=NOW, extra={"pad": "x" * 70000})
    refused(verifier, token, "token malformed")


@pytest.mark.parametrize("token", [None, "", "   "])
def test_missing(verifier: TokenVerifier, token: str | None) -> None:
    refused(verifier, token, "token missing")


def test_audience_and_issuer_are_not_required(verifier: TokenVerifier) -> None:
    token = craft(
        {"alg": "HS256", "typ": "JWT"},
        {"aud": "rstream", "iss": "https://rstream.io", "userId": "u-1", "exp": NOW + 60},
        SECRET.encode(),
    )
    assert verifier.verify(token, now=NOW).subject == "u-1"


def test_subject_fallbacks(verifier: TokenVerifier) -> None:
    key = SECRET.encode()
    header = {"alg": "HS256", "typ": "JWT"}
    assert verifier.verify(craft(header, {"sub": "s", "userId": "u"}, key), now=NOW).subject == "s"
    assert verifier.verify(craft(header, {"userId": "u", "clientId": "c"}, key), now=NOW).subject == "u"
    assert verifier.verify(craft(header, {"clientId": "c"}, key), now=NOW).subject == "c"
    bare = craft(header, {"type": "app"}, key)
    principal = verifier.verify(bare, now=NOW)
    assert principal.subject == f"token:{token_id(bare)}"
    assert principal.expires_at is None


def test_disabled_mode_admits_anyone() -> None:
    verifier = TokenVerifier(None, enabled=False)
    assert not verifier.enabled
    anonymous = verifier.verify(None)
    assert anonymous.subject == "anonymous"
    assert anonymous.token_id == ""
    assert dict(anonymous.claims) == {}
    with_token = verifier.verify("whatever-string")
    assert with_token.subject == "anonymous"
    assert with_token.token_id == token_id("whatever-string")
    assert with_token.expires_at is None


def test_enabled_needs_a_usable_secret() -> None:
    with pytest.raises(ConfigError, match="token_jwt_secret"):
        TokenVerifier(None, enabled=True)
    with pytest.raises(ConfigError, match="token_jwt_secret"):
        TokenVerifier("", enabled=True)
    with pytest.raises(ConfigError, match="PEM/JWK"):
        TokenVerifier('{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}', enabled=True)


def test_short_secret_works_without_warnings() -> None:
    # pytest turns warnings into errors here, so PyJWT's short-key warning would fail this test.
    verifier = TokenVerifier("short", enabled=True)
    assert verifier.weak_secret
    assert not TokenVerifier(SECRET, enabled=True).weak_secret
    token = mint_token("short", subject="bob", ttl_s=60, now=NOW)
    assert verifier.verify(token, now=NOW).subject == "bob"


def test_secret_not_in_repr() -> None:
    assert SECRET not in repr(TokenVerifier(SECRET, enabled=True))


def test_token_id_is_stable() -> None:
    token = mint_token(SECRET, subject="alice", ttl_s=60, now=time.time())
    assert token_id(token) == token_id(token)
    assert len(token_id(token)) == 16
    assert token_id(token) != token_id(token + "x")
