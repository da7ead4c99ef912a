"""Derived tokens (`POST /api/tokens`, api/tokens.py `derive`) never hold more than their parent: for random
parents of every kind (ce claims; pat and app: a stored ceiling and the token's own claims) and random
requests, the token minted from `derive`'s claims and read back by `AccessVerifier` may do, for every
scope, tunnel and path, only what the parent may, and shows only fields the parent sees. Pure."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portway.engine.access.grant import PERMISSION_OF
from portway.engine.access.mint import mint_app_token, new_app_credential
from portway.engine.access.operators import is_operator
from portway.engine.access.scopes import SCOPES
from portway.engine.access.tokens import AccessPrincipal, AccessVerifier, AppRecord, PatRecord, pat_digest
from portway.engine.api.tokens import MAX_GENERATIONS, MintRefused, MintRequest, derive
from portway.engine.auth import TokenVerifier, mint_token
from portway.errors import AuthError
from tests.unit.test_access_resources import PATHS, trees, tunnels
from tests.unit.test_access_tokens import Store

SECRET = "d" * 40
NOW = 1_700_000_000
APP = new_app_credential("app-derive")
PERMISSIONS = sorted(PERMISSION_OF.values())

permission_sets = st.none() | st.lists(st.sampled_from([*PERMISSIONS, "turn.relay.allocate", "admin"]), unique=True)
resources = st.none() | st.builds(lambda tree: {"tunnels": tree}, trees)
grants = st.tuples(permission_sets, resources)
requests = st.builds(lambda p, r: MintRequest(expires_in=600, permissions=p, resources=r), permission_sets,
                     st.none() | st.builds(lambda tree: {"tunnels": tree}, trees))
checks = st.lists(st.tuples(tunnels, st.sampled_from(SCOPES), st.none() | st.sampled_from(PATHS)),
                  min_size=1, max_size=8)


def claims_of(grant: tuple[list[str] | None, dict[str, Any] | None]) -> dict[str, Any]:
    permissions, resources_ = grant
    claims: dict[str, Any] = {"permissions": permissions}
    if resources_ is not None:
        claims["resources"] = resources_
    return claims


def parent_of(kind: str, stored: tuple[Any, Any], own: tuple[Any, Any]) -> AccessPrincipal:
    """A verified parent token of `kind`: `own` are its claims; pat and app also have the `stored` ceiling."""
    store = Store()
    verifier = AccessVerifier(TokenVerifier(SECRET, enabled=True), store)
    if kind == "ce":
        token = mint_token(SECRET, subject="alice", ttl_s=3600, now=NOW, extra=claims_of(own))
    elif kind == "pat":
        token = mint_token(SECRET, subject="alice", ttl_s=3600, now=NOW, extra={"type": "pat", **claims_of(own)})
        store.pats[pat_digest(token)] = PatRecord(id="pat-1", subject="alice", project_id="p1", workspace_id="w1",
                                                  permissions=stored[0], resources=stored[1])
    else:
        store.apps[APP.client_id] = AppRecord(client_id=APP.client_id, public_key_pem=APP.public_key_pem,
                                              project_id="p1", workspace_id="w1", permissions=stored[0],
                                              resources=stored[1])
        target: dict[str, Any] = {"resources": own[1]} if own[1] is not None else {"project_id": "p1"}
        token = mint_app_token(APP.client_id, APP.client_secret, now=NOW, expires_in=3600, permissions=own[0],
                               **target)
    return verifier.verify(token, NOW)


def child_of(parent: AccessPrincipal, request: MintRequest) -> AccessPrincipal | None:
    """The derived token as the engine mints and then reads it; None when `derive` refuses."""
    try:
        ttl, claims = derive(parent, request, now=NOW, engine="engine.test")
    except MintRefused:
        return None
    token = mint_token(SECRET, subject=parent.subject, ttl_s=ttl, now=NOW, extra=claims)
    return AccessVerifier(TokenVerifier(SECRET, enabled=True), Store()).verify(token, NOW)


def assert_within(child: AccessPrincipal, parent: AccessPrincipal, checks: list[Any]) -> None:
    assert child.kind == "auth"
    assert child.project_id == parent.project_id and child.workspace_id == parent.workspace_id
    assert child.source_credential_id == parent.revocation_id  # revoking the parent's root revokes the child
    assert child.expires_at is not None and parent.expires_at is not None and child.expires_at <= parent.expires_at
    if parent.permissions is not None:
        assert child.permissions is not None and child.permissions <= parent.permissions
    for tunnel, scope, path in checks:
        where = {"project_id": tunnel["project_id"], "workspace_id": tunnel["workspace_id"]}
        if child.grant.can(scope, tunnel, path=path, **where):
            assert parent.grant.can(scope, tunnel, path=path, **where), (scope, tunnel, path)
        shown = child.grant.select(tunnel, **where)
        if shown is not None:
            seen = parent.grant.select(tunnel, **where)
            assert seen is not None and set(shown) <= set(seen), (shown, seen)


@pytest.mark.parametrize("kind", ["ce", "pat", "app"])
@settings(max_examples=150, deadline=None)
@given(stored=grants, own=grants, request=requests, again=requests, checks=checks)
def test_a_derived_token_holds_a_subset_of_its_parents_rights(
        kind: str, *, stored: tuple[Any, Any], own: tuple[Any, Any], request: MintRequest, again: MintRequest,
        checks: list[Any]) -> None:
    parent = parent_of(kind, stored, own)
    child = child_of(parent, request)
    if child is None:  # refused: it asked for permissions the parent does not hold, or admin from a non-operator
        assert request.permissions is not None
        assert (parent.permissions is not None and not set(request.permissions) <= parent.permissions) or (
            "admin" in request.permissions and not is_operator(parent))
        return
    assert_within(child, parent, checks)
    parent_jti = [parent.claims["jti"]] if "jti" in parent.claims else []  # app tokens may have none
    assert child.claims["derivedFrom"] == [*parent.claims.get("derivedFrom", []), *parent_jti]
    assert child.claims["userId"] == parent.subject == child.subject
    assert is_operator(parent) or not is_operator(child)
    grandchild = child_of(child, again)  # and down a chain
    if grandchild is not None:
        assert_within(grandchild, child, checks)
        assert_within(grandchild, parent, checks)


@settings(max_examples=100, deadline=None)
@given(own=grants, checks=checks)
def test_an_empty_request_keeps_exactly_the_parents_rights(own: tuple[Any, Any], checks: list[Any]) -> None:
    parent = parent_of("ce", (None, None), own)
    child = child_of(parent, MintRequest(expires_in=600))
    assert child is not None and child.permissions == parent.permissions
    for tunnel, scope, path in checks:
        where = {"project_id": tunnel["project_id"], "workspace_id": tunnel["workspace_id"]}
        assert child.grant.can(scope, tunnel, path=path, **where) == parent.grant.can(scope, tunnel, path=path,
                                                                                        **where)
        assert child.grant.select(tunnel, **where) == parent.grant.select(tunnel, **where)


def test_admin_is_delegated_only_by_an_operator_token() -> None:
    """"Every permission" (no list) does not hold `admin`: a plain engine token cannot mint itself operator rights."""
    wants_admin = MintRequest(expires_in=60, permissions=["admin"])
    with pytest.raises(MintRefused, match="only an operator token"):
        derive(parent_of("ce", (None, None), (None, None)), wants_admin, now=NOW, engine="e")
    with pytest.raises(MintRefused, match="only an operator token"):  # an app holder claiming admin for itself
        derive(parent_of("app", (None, None), (["admin"], None)), wants_admin, now=NOW, engine="e")
    operator = parent_of("ce", (None, None), (["admin", "tunnels.resources.read-only"], None))
    child = child_of(operator, wants_admin)
    assert child is not None and is_operator(child) and child.permissions == {"admin"}


def test_revoking_any_ancestor_withdraws_the_chain() -> None:
    store = Store()
    verifier = AccessVerifier(TokenVerifier(SECRET, enabled=True), store)
    tokens = [mint_token(SECRET, subject="alice", ttl_s=3600, now=NOW)]  # a CE root: no stored credential
    for _ in range(3):
        ttl, claims = derive(verifier.verify(tokens[-1], NOW), MintRequest(expires_in=600), now=NOW, engine="e")
        tokens.append(mint_token(SECRET, subject="alice", ttl_s=ttl, now=NOW, extra=claims))
    jtis = [verifier.verify(token, NOW).claims["jti"] for token in tokens]
    assert verifier.verify(tokens[3], NOW).claims["derivedFrom"] == jtis[:3]
    store.revoked_ids.add(jtis[1])  # a middle token, revoked by its jti
    for token in tokens[2:]:
        with pytest.raises(AuthError, match="token source revoked"):
            verifier.verify(token, NOW)
    with pytest.raises(AuthError, match="token revoked"):
        verifier.verify(tokens[1], NOW)
    assert verifier.verify(tokens[0], NOW).subject == "alice"  # above the revoked token: untouched


def test_a_chain_is_bounded_and_its_resources_stay_flat() -> None:
    verifier = AccessVerifier(TokenVerifier(SECRET, enabled=True), Store())
    token = mint_token(SECRET, subject="alice", ttl_s=3600, now=NOW)
    narrow = {"tunnels": {"scopes": {"tunnels": {"list": True, "connect": True}}}}
    for generation in range(MAX_GENERATIONS):
        ttl, claims = derive(verifier.verify(token, NOW), MintRequest(expires_in=600, resources=narrow), now=NOW,
                             engine="e")
        token = mint_token(SECRET, subject="alice", ttl_s=ttl, now=NOW, extra=claims)
        tree = claims["resources"]["tunnels"]  # type: ignore[index]
        assert set(tree) == {"AND"} if generation else tree == narrow["tunnels"]
        assert all("AND" not in term for term in tree.get("AND", [])), tree
    with pytest.raises(MintRefused, match="derived 8 times"):
        derive(verifier.verify(token, NOW), MintRequest(expires_in=60), now=NOW, engine="e")
