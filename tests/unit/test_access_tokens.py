"""engine/access: verification of ce, auth, pat and app tokens (§3.1) and offline app-token minting (§3.3)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from portway.engine.access.mint import (
    AppCredential,
    load_client_secret,
    mint_app_token,
    new_app_credential,
    public_key_pem,
)
from portway.engine.access.tokens import AccessPrincipal, AccessVerifier, AppRecord, PatRecord, pat_digest
from portway.engine.auth import Principal, TokenVerifier, mint_token
from portway.engine.policy import TokenMemo
from portway.errors import AuthError

SECRET = "s" * 40
NOW = 1_700_000_000
WEB = {"id": "t1", "name": "web", "protocol": "http", "labels": {}, "project_id": "p1", "workspace_id": "w1"}
OTHER = {**WEB, "id": "t2", "name": "db", "project_id": "p2"}
READ = "tunnels.resources.read-only"
CONNECT = "tunnels.streams.create-delete"
CREATE = "tunnels.tunnels.create-delete"


@dataclass
class Store:
    """Dict-backed CredentialStore: test data, not a stand-in for our own store."""

    pats: dict[str, PatRecord] = field(default_factory=dict)
    apps: dict[str, AppRecord] = field(default_factory=dict)
    revoked_ids: set[str] = field(default_factory=set)
    disabled_ids: set[str] = field(default_factory=set)
    roles: dict[str, str] = field(default_factory=dict)

    def pat(self, sha256_hex: str) -> PatRecord | None:
        return self.pats.get(sha256_hex)

    def app_credential(self, client_id: str) -> AppRecord | None:
        return self.apps.get(client_id)

    def revoked(self, credential_id: str) -> bool:
        return credential_id in self.revoked_ids

    def disabled(self, credential_id: str) -> bool:
        return credential_id in self.disabled_ids

    def role(self, credential_id: str) -> str | None:
        return self.roles.get(credential_id)


@pytest.fixture(scope="module")
def cred() -> AppCredential:
    return new_app_credential("app-1")


@pytest.fixture
def store(cred: AppCredential) -> Store:
    return Store(apps={"app-1": AppRecord(client_id="app-1", public_key_pem=cred.public_key_pem, project_id="p1",
                                          permissions=[CONNECT, READ])})


@pytest.fixture
def verifier(store: Store) -> AccessVerifier:
    return AccessVerifier(TokenVerifier(SECRET, enabled=True), store)


def hs256(claims: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def app_token(cred: AppCredential, **kw: Any) -> str:
    kw.setdefault("project_id", "p1")
    return mint_app_token(cred.client_id, cred.client_secret, now=NOW, **kw)


def es512(claims: dict[str, Any], secret_hex: str) -> str:
    return jwt.encode(claims, load_client_secret(secret_hex), algorithm="ES512")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    """A JWT signed by hand, for signatures PyJWT rightly refuses to make (HS256 keyed with a PEM)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def refused(verifier: AccessVerifier, token: str, reason: str, now: float = NOW) -> None:
    with pytest.raises(AuthError) as caught:
        verifier.verify(token, now)
    assert str(caught.value) == reason
    assert token not in str(caught.value)


# ---- accepted ---------------------------------------------------------------------------------------------------

def test_a_ce_token_without_type(verifier: AccessVerifier) -> None:
    principal = verifier.verify(hs256({"sub": "alice", "exp": NOW + 60}), NOW)
    assert isinstance(principal, Principal)
    assert (principal.kind, principal.subject, principal.expires_at) == ("ce", "alice", NOW + 60)
    assert principal.grant.unrestricted
    assert principal.permissions is None
    assert principal.grant.can("create", {"name": "x"})


def test_a_ce_token_carries_its_own_restrictions(verifier: AccessVerifier) -> None:
    token = hs256({"sub": "a", "permissions": [READ], "resources": {"tunnels": {"projects": ["p1"]}}})
    principal = verifier.verify(token, NOW)
    assert principal.grant.select(WEB) == WEB
    assert principal.grant.select(OTHER) is None
    assert not principal.grant.can("connect", WEB)


def test_an_engine_auth_token(verifier: AccessVerifier) -> None:
    token = mint_token(SECRET, subject="bob", ttl_s=60, now=NOW, extra={"sourceCredentialId": "parent-1"})
    principal = verifier.verify(token, NOW)
    assert (principal.kind, principal.subject, principal.source_credential_id) == ("auth", "bob", "parent-1")
    assert principal.revocation_id == "parent-1"


def test_an_auth_token_without_source_names_itself_for_revocation(verifier: AccessVerifier) -> None:
    principal = verifier.verify(mint_token(SECRET, subject="bob", ttl_s=60, now=NOW), NOW)
    assert principal.source_credential_id is None
    assert principal.revocation_id == principal.token_id


def test_a_pat(verifier: AccessVerifier, store: Store) -> None:
    token = hs256({"type": "pat", "token_endpoint": "0a1b2c3d", "sub": "ignored", "permissions": [READ, CONNECT]})
    store.pats[pat_digest(token)] = PatRecord(
        id="pat-1", subject="carol", project_id="p1", workspace_id="w1", permissions=[READ, CREATE],
        resources={"tunnels": {"projects": ["p1"]}}, expires_at=NOW + 100)
    principal = verifier.verify(token, NOW)
    assert (principal.kind, principal.subject, principal.project_id, principal.workspace_id) == \
        ("pat", "carol", "p1", "w1")
    assert principal.source_credential_id == "pat-1"
    assert principal.expires_at == NOW + 100
    assert principal.permissions == frozenset({READ})  # stored ∩ claimed
    assert principal.grant.select(WEB) == WEB
    assert principal.grant.select(OTHER) is None
    assert not principal.grant.can("connect", WEB)


def test_a_pat_keeps_the_earlier_expiry(verifier: AccessVerifier, store: Store) -> None:
    token = hs256({"type": "pat", "exp": NOW + 10})
    store.pats[pat_digest(token)] = PatRecord(id="pat-2", subject="c", expires_at=NOW + 100)
    assert verifier.verify(token, NOW).expires_at == NOW + 10


def test_an_app_token_minted_here_verifies(verifier: AccessVerifier, cred: AppCredential) -> None:
    principal = verifier.verify(app_token(cred, engine="engine.example:443"), NOW + 5)
    assert (principal.kind, principal.subject, principal.project_id) == ("app", "app-1", "p1")
    assert principal.source_credential_id == "app-1"
    assert principal.expires_at == NOW + 60
    assert principal.permissions == frozenset({CONNECT, READ})  # the credential's ceiling
    assert principal.grant.can("connect", WEB)
    assert not principal.grant.can("connect", OTHER)
    assert not principal.grant.can("create", {"name": "x"}, project_id="p1")


def test_an_app_token_is_narrowed_by_the_credential_resources(
        verifier: AccessVerifier, store: Store, cred: AppCredential) -> None:
    store.apps["app-1"] = AppRecord(client_id="app-1", public_key_pem=cred.public_key_pem, subject="acme",
                                    resources={"tunnels": {"scopes": {"tunnels": {"list": True}}}})
    principal = verifier.verify(app_token(cred, permissions=[READ, CONNECT]), NOW)
    assert principal.subject == "acme"
    assert principal.grant.select(WEB) == WEB
    assert not principal.grant.can("connect", WEB)


def test_an_app_token_stays_valid_for_its_whole_lifetime(verifier: AccessVerifier, cred: AppCredential) -> None:
    token = app_token(cred, expires_in=3600)
    assert verifier.verify(token, NOW + 3500).kind == "app"


def test_an_app_iat_may_run_up_to_300_s_ahead(verifier: AccessVerifier, cred: AppCredential) -> None:
    token = es512({"clientId": "app-1", "type": "app", "iat": NOW + 300, "exp": NOW + 360}, cred.client_secret)
    assert verifier.verify(token, NOW).kind == "app"


def test_disabled_auth_admits_anyone(store: Store) -> None:
    verifier = AccessVerifier(TokenVerifier(None, enabled=False), store)
    principal = verifier.verify(None)
    assert (principal.kind, principal.subject) == ("ce", "anonymous")
    assert principal.grant.unrestricted
    assert not verifier.enabled


def test_it_is_a_drop_in_for_the_token_memo(verifier: AccessVerifier) -> None:
    memo = TokenMemo(verifier.verify)
    assert memo.valid(hs256({"sub": "a"}))
    assert not memo.valid(hs256({"sub": "a"}, secret="t" * 40))


def test_the_token_memo_gives_each_refused_request_its_reason(verifier: AccessVerifier, store: Store) -> None:
    """Only valid tokens are remembered: a refused one is verified (and explained) every time it is presented,
    and a remembered one revoked since is refused with the revocation's reason."""
    verified: list[str] = []

    def verify(token: str, now: float) -> Principal:
        verified.append(token)
        return verifier.verify(token, now)

    memo = TokenMemo(verify, verifier.withdrawn)
    forged = hs256({"sub": "a"}, secret="t" * 40)
    for _ in range(2):
        with pytest.raises(AuthError, match=r"^token signature invalid$"):
            memo.principal(forged)
    good = hs256({"sub": "a", "jti": "j-1"})
    assert memo.principal(good).subject == "a"
    assert memo.principal(good).subject == "a"
    assert verified == [forged, forged, good]  # the valid token was verified once
    store.revoked_ids.add("j-1")
    for _ in range(2):  # first from the memo, then from a fresh verification
        with pytest.raises(AuthError, match=r"^token revoked$"):
            memo.principal(good)
    assert verified == [forged, forged, good, good]


# ---- refused ----------------------------------------------------------------------------------------------------

def test_missing_and_malformed(verifier: AccessVerifier) -> None:
    for token in (None, "", "  "):
        with pytest.raises(AuthError, match="token missing"):
            verifier.verify(token, NOW)
    refused(verifier, "not-a-jwt", "token malformed")
    refused(verifier, "x" * 70000, "token malformed")


@pytest.mark.parametrize("claims", [{"sub": "a"}, {"type": "app", "clientId": "app-1", "iat": NOW, "exp": NOW + 9}])
def test_alg_none(verifier: AccessVerifier, claims: dict[str, Any]) -> None:
    refused(verifier, jwt.encode(claims, None, algorithm="none"), "token algorithm not allowed")


def test_other_algorithms(verifier: AccessVerifier) -> None:
    p256 = ec.generate_private_key(ec.SECP256R1())
    claims = {"type": "app", "clientId": "app-1", "iat": NOW, "exp": NOW + 9}
    refused(verifier, jwt.encode(claims, p256, algorithm="ES256"), "token algorithm not allowed")
    refused(verifier, jwt.encode({"sub": "a"}, SECRET * 2, algorithm="HS512"), "token algorithm not allowed")


def test_bad_hs256_signature(verifier: AccessVerifier) -> None:
    refused(verifier, hs256({"sub": "a"}, secret="t" * 40), "token signature invalid")
    refused(verifier, hs256({"type": "pat"}, secret="t" * 40), "token signature invalid")


def test_hs256_claiming_app_is_algorithm_confusion(verifier: AccessVerifier) -> None:
    token = hs256({"type": "app", "clientId": "app-1", "iat": NOW, "exp": NOW + 60})
    refused(verifier, token, "token algorithm does not match its type")


def test_hs256_signed_with_the_app_public_key_pem(verifier: AccessVerifier, cred: AppCredential) -> None:
    claims = {"type": "app", "clientId": "app-1", "iat": NOW, "exp": NOW + 60}
    token = hand_signed({"alg": "HS256", "typ": "JWT"}, claims, cred.public_key_pem.encode())
    refused(verifier, token, "token signature invalid")
    token = hand_signed({"alg": "HS256", "typ": "JWT"}, {"sub": "a"}, cred.public_key_pem.encode())
    refused(verifier, token, "token signature invalid")


@pytest.mark.parametrize("kind", ["pat", "auth", None])
def test_es512_claiming_another_type_is_algorithm_confusion(
        verifier: AccessVerifier, cred: AppCredential, kind: str | None) -> None:
    claims = {"clientId": "app-1", "iat": NOW, "exp": NOW + 60, **({"type": kind} if kind else {})}
    refused(verifier, es512(claims, cred.client_secret), "token algorithm does not match its type")


def test_unknown_type(verifier: AccessVerifier) -> None:
    refused(verifier, hs256({"type": "robot"}), "token type unknown")
    refused(verifier, hs256({"type": 3}), "token type unknown")


def test_expired_and_not_yet_valid(verifier: AccessVerifier, cred: AppCredential) -> None:
    refused(verifier, hs256({"sub": "a", "exp": NOW - 60}), "token expired")
    refused(verifier, hs256({"sub": "a", "nbf": NOW + 600}), "token not yet valid")
    refused(verifier, app_token(cred), "token expired", now=NOW + 120)
    future = es512({"clientId": "app-1", "type": "app", "iat": NOW + 301, "exp": NOW + 400}, cred.client_secret)
    refused(verifier, future, "token not yet valid")
    early = es512({"clientId": "app-1", "type": "app", "iat": NOW, "exp": NOW + 60, "nbf": NOW + 120},
                  cred.client_secret)
    refused(verifier, early, "token not yet valid")


def test_auth_token_from_a_revoked_source(verifier: AccessVerifier, store: Store) -> None:
    store.revoked_ids.add("parent-1")
    token = mint_token(SECRET, subject="bob", ttl_s=60, now=NOW, extra={"sourceCredentialId": "parent-1"})
    refused(verifier, token, "token source credential revoked")
    refused(verifier, hs256({"sourceCredentialId": 7}), "token claims malformed")


def test_without_a_store_revocation_is_not_checked_and_pat_app_are_refused(cred: AppCredential) -> None:
    verifier = AccessVerifier(TokenVerifier(SECRET, enabled=True))
    token = mint_token(SECRET, subject="bob", ttl_s=60, now=NOW, extra={"sourceCredentialId": "parent-1"})
    assert verifier.verify(token, NOW).kind == "auth"
    refused(verifier, hs256({"type": "pat"}), "personal access tokens are not accepted by this engine")
    refused(verifier, app_token(cred), "application tokens are not accepted by this engine")


def test_pat_unknown_revoked_or_expired(verifier: AccessVerifier, store: Store) -> None:
    token = hs256({"type": "pat", "jti": "1"})
    refused(verifier, token, "token unknown")
    store.pats[pat_digest(token)] = PatRecord(id="pat-1", subject="c", revoked=True)
    refused(verifier, token, "token revoked")
    store.pats[pat_digest(token)] = PatRecord(id="pat-1", subject="c", expires_at=NOW)
    refused(verifier, token, "token expired")


def test_pat_of_a_disabled_user_and_what_derives_from_it(verifier: AccessVerifier, store: Store) -> None:
    token = hs256({"type": "pat", "jti": "2"})
    store.pats[pat_digest(token)] = PatRecord(id="pat-1", subject="c", role="operator", disabled=True)
    refused(verifier, token, "user disabled")
    store.pats[pat_digest(token)] = PatRecord(id="pat-1", subject="c", revoked=True, disabled=True)
    refused(verifier, token, "token revoked")  # revocation is for good: it is the reason that stays
    derived = mint_token(SECRET, subject="c", ttl_s=60, now=NOW, extra={"sourceCredentialId": "pat-1"})
    assert verifier.verify(derived, NOW).kind == "auth"
    store.disabled_ids.add("pat-1")
    refused(verifier, derived, "token source credential's user disabled")
    store.revoked_ids.add("pat-1")
    refused(verifier, derived, "token source credential revoked")


def test_pat_principal_and_its_derived_tokens_carry_the_users_stored_role(verifier: AccessVerifier,
                                                                         store: Store) -> None:
    token = hs256({"type": "pat", "jti": "3"})
    store.pats[pat_digest(token)] = PatRecord(id="pat-1", subject="c", role="operator")
    principal = verifier.verify(token, NOW)
    assert principal.role == "operator" and "role" not in principal.claims  # the store's word, not a claim
    store.pats[pat_digest(token)] = PatRecord(id="pat-1", subject="c")
    assert verifier.verify(token, NOW).role is None
    derived = mint_token(SECRET, subject="c", ttl_s=60, now=NOW,
                         extra={"sourceCredentialId": "pat-1", "role": "operator"})
    assert verifier.verify(derived, NOW).role is None  # no user on record: a claimed role is not a stored one
    store.roles["pat-1"] = "member"
    assert verifier.verify(derived, NOW).role == "member"  # read at each verification: a demotion applies
    store.roles["pat-1"] = "operator"
    assert verifier.verify(derived, NOW).role == "operator"


def test_pat_signed_with_another_secret_is_refused_even_when_stored(verifier: AccessVerifier, store: Store) -> None:
    token = hs256({"type": "pat"}, secret="t" * 40)
    store.pats[pat_digest(token)] = PatRecord(id="pat-1", subject="c")
    refused(verifier, token, "token signature invalid")


def test_app_unknown_or_revoked_credential(verifier: AccessVerifier, store: Store, cred: AppCredential) -> None:
    other = new_app_credential("app-2")
    refused(verifier, app_token(other), "credential unknown")
    store.apps["app-1"] = AppRecord(client_id="app-1", public_key_pem=cred.public_key_pem, revoked=True)
    refused(verifier, app_token(cred), "credential revoked")


def test_app_signed_with_another_key(verifier: AccessVerifier) -> None:
    impostor = new_app_credential("app-1")
    refused(verifier, app_token(impostor), "token signature invalid")


def test_app_credential_with_a_key_that_is_not_p521(
        verifier: AccessVerifier, store: Store, cred: AppCredential) -> None:
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    for pem in (p256, "not a pem"):
        store.apps["app-1"] = AppRecord(client_id="app-1", public_key_pem=pem)
        refused(verifier, app_token(cred), "credential key unusable")


@pytest.mark.parametrize(("claims", "reason"), [
    ({"iat": NOW, "exp": NOW + 3601}, "token lifetime too long"),
    ({"iat": NOW - 7200, "exp": NOW + 60}, "token lifetime too long"),
    ({"exp": NOW + 60}, "token claims malformed"),
    ({"iat": NOW}, "token claims malformed"),
    ({"iat": NOW, "exp": NOW}, "token claims malformed"),
    ({"iat": "now", "exp": NOW + 60}, "token claims malformed"),
    ({"iat": True, "exp": NOW + 60}, "token claims malformed"),
    ({"iat": NOW, "exp": NOW + 60, "nbf": "x"}, "token claims malformed"),
    ({"iat": NOW, "exp": NOW + 60, "clientId": 5}, "token claims malformed"),
])
def test_app_time_claims(verifier: AccessVerifier, cred: AppCredential, claims: dict[str, Any], reason: str) -> None:
    token = es512({"clientId": "app-1", "type": "app", **claims}, cred.client_secret)
    refused(verifier, token, reason)


@pytest.mark.parametrize(("tree", "problem"), [
    ({"AND": []}, "empty AND"),
    ({"scopes": {"tunnels": {"connect": {"filters": {"name": {"regex": r"(w)\1"}}}}}}, "invalid regular expression"),
    ({"scopes": {"tunnels": {"connect": {"params": {"path": {"regex": "/(?!admin).*"}}}}}}, "RE2 syntax"),
])
def test_a_malformed_resources_claim_grants_nothing(verifier: AccessVerifier, cred: AppCredential,
                                                    tree: dict[str, Any], problem: str) -> None:
    """Holder-signed claims: a pattern RE2 cannot run (backreference, lookahead) is malformed, not skipped."""
    token = es512({"clientId": "app-1", "type": "app", "iat": NOW, "exp": NOW + 60,
                   "resources": {"tunnels": tree}}, cred.client_secret)
    principal = verifier.verify(token, NOW)
    assert principal.boundary.problem is not None
    assert problem in principal.boundary.problem
    assert not principal.grant.can("connect", WEB)


# ---- minting ----------------------------------------------------------------------------------------------------

def test_minted_claims_follow_section_3_3(cred: AppCredential) -> None:
    token = app_token(cred, expires_in=120, engine="e.example:443")
    assert jwt.get_unverified_header(token)["alg"] == "ES512"
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims == {
        "clientId": "app-1", "type": "app", "iat": NOW, "exp": NOW + 120, "permissions": None,
        "metadata": {"engine": "e.example:443"},
        "resources": {"tunnels": {"projects": ["p1"],
                                  "scopes": {"tunnels": {"create": True, "connect": True, "list": True}}}},
    }


def test_mint_defaults_and_targets(cred: AppCredential) -> None:
    claims = jwt.decode(mint_app_token("app-1", cred.client_secret, now=NOW, workspace_id="w1",
                                       permissions=[READ]), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 60
    assert claims["permissions"] == [READ]
    assert claims["resources"]["tunnels"]["workspaces"] == ["w1"]
    assert "metadata" not in claims
    tree = {"tunnels": {"scopes": {"tunnels": {"list": True}}}}
    token = mint_app_token("app-1", cred.client_secret, resources=tree)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["resources"] == tree


def test_mint_accepts_an_iat_within_300_s(cred: AppCredential) -> None:
    token = mint_app_token("app-1", cred.client_secret, now=NOW, issued_at=NOW - 300, project_id="p1")
    assert jwt.decode(token, options={"verify_signature": False})["iat"] == NOW - 300


@pytest.mark.parametrize(("kw", "message"), [
    ({"expires_in": 0}, "expires_in"),
    ({"expires_in": 3601}, "expires_in"),
    ({"expires_in": True}, "expires_in"),
    ({"issued_at": NOW + 301}, "issued_at"),
    ({"issued_at": NOW - 301}, "issued_at"),
    ({"project_id": None}, "give project_id, workspace_id or resources"),
    ({"workspace_id": "w1"}, "mutually exclusive"),
    ({"resources": {"tunnels": {"projects": ["p"]}}}, "not both"),
    ({"project_id": None, "resources": {"turn": {}}}, "resources must be"),
    ({"project_id": None, "resources": {"tunnels": {"AND": []}}}, "empty AND"),
])
def test_mint_refuses(cred: AppCredential, kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        app_token(cred, **kw)


def test_mint_refuses_an_empty_client_id(cred: AppCredential) -> None:
    with pytest.raises(ValueError, match="client_id"):
        mint_app_token("", cred.client_secret, project_id="p1")


def test_credential_pair(cred: AppCredential) -> None:
    assert public_key_pem(cred.client_secret) == cred.public_key_pem
    assert cred.client_secret not in repr(cred)
    assert len(new_app_credential().client_id) == 24
    der = bytes.fromhex(cred.client_secret)
    key = serialization.load_der_private_key(der, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp521r1"


def test_bad_client_secrets_are_refused_without_echo() -> None:
    p256 = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).hex()
    for secret in ("zz-not-hex", "00" * 40, p256):
        with pytest.raises(ValueError) as caught:
            load_client_secret(secret)
        assert secret not in str(caught.value)


def test_principal_type() -> None:
    principal = AccessPrincipal(subject="a", token_id="t", kind="ce")
    assert principal.boundary.unrestricted
    assert principal.revocation_id == "t"


# ---- the official SDK -------------------------------------------------------------------------------------------

def test_official_sdk_app_tokens_verify(verifier: AccessVerifier) -> None:
    """rstream (PyPI) has no app-credential minting helper as of 0.7.0 (only webhook signing); when one
    appears, this test starts checking that its tokens verify here."""
    import rstream

    helpers = [name for name in dir(rstream) if "app_token" in name.lower() or "mint" in name.lower()]
    if not helpers:
        pytest.skip(f"rstream {getattr(rstream, '__version__', '?')} has no app-credential minting helper")
    pytest.fail(f"rstream now offers {helpers}: wire it into this interop test")
