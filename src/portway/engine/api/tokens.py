"""Derived tokens (`POST /api/tokens`): a holder mints a short-lived token that can never do more than its
own — lifetime capped by the parent's expiry, permissions a subset of the parent's, `resources` the
intersection (an AND node over the parent's tree and the requested one, §3.2). Pure.

Two claims tie a derived token to where it came from, so withdrawing any ancestor withdraws it
(access/tokens.py `withdrawn`): `sourceCredentialId`, the stored credential at the root of the chain, and
`derivedFrom`, the `jti` of every token above it (oldest first). A chain is at most `MAX_GENERATIONS` deep.
`admin` (operator rights) can only be delegated by an operator token: "every permission" does not hold it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from portway.engine.access.operators import ADMIN_PERMISSION, is_operator
from portway.engine.access.resources import Boundary, ResourceError
from portway.engine.access.tokens import DERIVED_FROM, AccessPrincipal
from portway.engine.auth import Principal

MAX_EXPIRES_IN_S = 3600
MAX_GENERATIONS = 8


class MintRequest(BaseModel):
    """The request body, as `rstream token create` takes it (§3.3)."""

    model_config = ConfigDict(extra="forbid")

    expires_in: int = Field(60, ge=1, le=MAX_EXPIRES_IN_S, description="Lifetime in seconds")
    permissions: list[str] | None = Field(None, description="A subset of the parent's (null = the parent's)")
    resources: dict[str, Any] | None = Field(None, description='{"tunnels": node}: narrows the parent\'s')


class MintResponse(BaseModel):
    token: str
    expires_at: int
    type: str = "auth"


class MintRefused(Exception):
    """The request asks for more than the parent token holds (403)."""


def derive(parent: Principal, request: MintRequest, *, now: float, engine: str) -> tuple[int, dict[str, object]]:
    """(lifetime in seconds, extra claims) of the derived token; raises MintRefused or ValueError."""
    ttl = request.expires_in
    if parent.expires_at is not None:
        ttl = min(ttl, int(parent.expires_at - now))
    if ttl < 1:
        raise MintRefused("the token has (almost) expired: nothing is left to delegate")
    # The root credential, so revoking it revokes every token derived from it (access/tokens.py).
    source = parent.revocation_id if isinstance(parent, AccessPrincipal) else parent.token_id
    # §3.1 lists `userId` for auth tokens; the engine's views name a tunnel's user by its subject (`user_id`).
    claims: dict[str, object] = {"metadata": {"engine": engine}, "sourceCredentialId": source,
                                 "userId": parent.subject}
    ancestors = _ancestors(parent)
    if len(ancestors) > MAX_GENERATIONS:
        raise MintRefused(f"a token derived {MAX_GENERATIONS} times over cannot be derived from again")
    claims[DERIVED_FROM] = ancestors
    if parent.project_id is not None:  # a derived token stays in its parent's project
        claims["project_id"] = parent.project_id
    if isinstance(parent, AccessPrincipal) and parent.workspace_id is not None:
        claims["workspace_id"] = parent.workspace_id
    # What the parent may really do: for PATs and app tokens, the stored credential's ceiling ∩ the claims.
    if isinstance(parent, AccessPrincipal):
        held: object = sorted(parent.permissions) if parent.permissions is not None else None
        held_resources: object = parent.boundary.to_resources()
    else:
        held, held_resources = parent.claims.get("permissions"), parent.claims.get("resources")
    if request.permissions is not None:
        if ADMIN_PERMISSION in request.permissions and not is_operator(parent):
            raise MintRefused("only an operator token can delegate the admin permission")
        if isinstance(held, list) and not set(request.permissions) <= set(held):
            missing = sorted(set(request.permissions) - set(held))
            raise MintRefused(f"the token does not hold the permissions {', '.join(missing)}")
        claims["permissions"] = request.permissions
    elif isinstance(held, list):  # the parent's own list; `admin` only passes on from an operator token
        claims["permissions"] = held if is_operator(parent) else [p for p in held if p != ADMIN_PERMISSION]
    resources = _narrow(held_resources, request.resources)
    if resources is not None:
        claims["resources"] = resources
    return ttl, claims


def _narrow(held: object, wanted: dict[str, Any] | None) -> object:
    if wanted is None:
        return held
    if set(wanted) - {"tunnels"} or not isinstance(wanted.get("tunnels"), dict):
        raise ValueError('resources must be {"tunnels": {...}}')
    try:  # refused (400) rather than minted as a token that grants nothing
        Boundary.parse(wanted["tunnels"])
    except ResourceError as error:
        raise ValueError(str(error)) from None
    if not isinstance(held, dict) or not isinstance(held.get("tunnels"), dict):
        return {"tunnels": wanted["tunnels"]}
    parent = held["tunnels"]
    terms = parent["AND"] if set(parent) == {"AND"} and isinstance(parent["AND"], list) else [parent]
    return {"tunnels": {"AND": [*terms, wanted["tunnels"]]}}  # flat: a chain does not nest deeper each time


def _ancestors(parent: Principal) -> list[str]:
    """The `jti`s above the token being minted: the parent's own chain, then the parent."""
    chain = parent.claims.get(DERIVED_FROM)
    ancestors = [a for a in chain if isinstance(a, str)] if isinstance(chain, list) else []
    jti = parent.claims.get("jti")
    return [*ancestors, jti] if isinstance(jti, str) and jti else ancestors
