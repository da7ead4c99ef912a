"""The admin API (`/api/admin/...`): workspaces, projects, users, personal access tokens, application
credentials, access policies and the revocation log, over the control-plane store.

Only operator tokens (access/operators.py `is_operator`). Handlers are coroutines (the store is async); see
routes.py for how the edges run them. Store refusals map to 404/409/400 with `{error}`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import jwt
from pydantic import BaseModel

from portway.engine.access.operators import is_operator
from portway.engine.api.admin_views import (
    AppCreate,
    Deleted,
    PatCreate,
    PolicyUpdate,
    ProjectCreate,
    Revoke,
    TokenRevoke,
    UserCreate,
    UserUpdate,
    WorkspaceCreate,
)
from portway.engine.api.routes import ApiResponse, Call, Refusal, json_response, model_response, parse_body, route
from portway.engine.credentials import CredentialCache
from portway.engine.store import (
    Conflict,
    Invalid,
    NotFound,
    Store,
    apps,
    pats,
    policies,
    revocations,
    users,
    workspaces,
)
from portway.engine.store.changes import ChangeFeed
from portway.engine.store.pats import Signer

_STATUS = {NotFound: 404, Conflict: 409, Invalid: 400}
AdminHandler = Callable[[Call, Store], Awaitable[ApiResponse]]


def admin(method: str, template: str) -> Callable[[AdminHandler], AdminHandler]:
    """`route`, for operators only, with the store handed in and its refusals mapped to statuses."""
    def register(handler: AdminHandler) -> AdminHandler:
        async def guarded(call: Call) -> ApiResponse:
            if not call.principal.claims:
                raise Refusal(403, "the admin API needs token authentication (auth.jwt.enabled)")
            if not is_operator(call.principal):
                raise Refusal(403, "an operator token is required (role operator or permission admin)")
            store = call.inventory.service("store")
            if not isinstance(store, Store):
                raise Refusal(503, "the control-plane store is not open")
            try:
                answer = await handler(call, store)
            except (NotFound, Conflict, Invalid) as refused:
                raise Refusal(_STATUS[type(refused)], str(refused)) from None
            credentials = call.inventory.service("credentials")
            if method != "GET" and isinstance(credentials, CredentialCache):
                await credentials.reload(store)  # a revocation or a new policy applies to the next request
                changes = call.inventory.service("changes")
                if isinstance(changes, ChangeFeed):
                    await changes.announce()  # ... and on the other engines sharing the database
            return answer
        route(method, template)(guarded)
        return handler
    return register


def _one(call: Call, name: str) -> str | None:
    values = call.query.get(name)
    return values[-1] if values else None


def _rows(records: Sequence[BaseModel]) -> ApiResponse:
    return json_response([record.model_dump(mode="json") for record in records])


# ---- workspaces and projects ----

@admin("GET", "/api/admin/workspaces")
async def _workspaces(call: Call, store: Store) -> ApiResponse:
    return _rows(await workspaces.list_workspaces(store))


@admin("POST", "/api/admin/workspaces")
async def _create_workspace(call: Call, store: Store) -> ApiResponse:
    body = parse_body(WorkspaceCreate, call.body)
    return model_response(await workspaces.create_workspace(store, body.name), 201)


@admin("GET", "/api/admin/workspaces/{ref}")
async def _workspace(call: Call, store: Store) -> ApiResponse:
    return model_response(await workspaces.get_workspace(store, call.params["ref"]))


@admin("DELETE", "/api/admin/workspaces/{ref}")
async def _delete_workspace(call: Call, store: Store) -> ApiResponse:
    await workspaces.delete_workspace(store, call.params["ref"])
    return model_response(Deleted(deleted=call.params["ref"]))


@admin("GET", "/api/admin/projects")
async def _projects(call: Call, store: Store) -> ApiResponse:
    return _rows(await workspaces.list_projects(store, _one(call, "workspace")))


@admin("POST", "/api/admin/projects")
async def _create_project(call: Call, store: Store) -> ApiResponse:
    body = parse_body(ProjectCreate, call.body)
    return model_response(await workspaces.create_project(store, body.name, body.workspace), 201)


@admin("GET", "/api/admin/projects/{ref}")
async def _project(call: Call, store: Store) -> ApiResponse:
    return model_response(await workspaces.get_project(store, call.params["ref"]))


@admin("DELETE", "/api/admin/projects/{ref}")
async def _delete_project(call: Call, store: Store) -> ApiResponse:
    await workspaces.delete_project(store, call.params["ref"])
    return model_response(Deleted(deleted=call.params["ref"]))


# ---- users ----

@admin("GET", "/api/admin/users")
async def _users(call: Call, store: Store) -> ApiResponse:
    return _rows(await users.list_users(store))


@admin("POST", "/api/admin/users")
async def _create_user(call: Call, store: Store) -> ApiResponse:
    body = parse_body(UserCreate, call.body)
    return model_response(await users.create_user(store, body.subject, body.role), 201)


@admin("GET", "/api/admin/users/{ref}")
async def _user(call: Call, store: Store) -> ApiResponse:
    return model_response(await users.get_user(store, call.params["ref"]))


@admin("PATCH", "/api/admin/users/{ref}")
async def _update_user(call: Call, store: Store) -> ApiResponse:
    body = parse_body(UserUpdate, call.body)
    if body.role is None and body.disabled is None:
        raise Invalid("give role and/or disabled")
    return model_response(await users.update_user(store, call.params["ref"], role=body.role, disabled=body.disabled))


@admin("DELETE", "/api/admin/users/{ref}")
async def _delete_user(call: Call, store: Store) -> ApiResponse:
    await users.delete_user(store, call.params["ref"])
    return model_response(Deleted(deleted=call.params["ref"]))


# ---- access policies ----

@admin("GET", "/api/admin/projects/{ref}/policy")
async def _policy(call: Call, store: Store) -> ApiResponse:
    return model_response(await policies.get_access_policy(store, call.params["ref"]))


@admin("PUT", "/api/admin/projects/{ref}/policy")
async def _set_policy(call: Call, store: Store) -> ApiResponse:
    body = parse_body(PolicyUpdate, call.body)
    if body.policy.allowed_countries and call.inventory.service("geoip") is None:
        # Accepted, it would refuse every visitor here in silence (a tunnel's own geoip is FEATURE_NOT_AVAILABLE).
        raise Invalid("allowed_countries needs a GeoIP database on this engine (geoip.database_file); without one "
                      "every visitor of the project's tunnels would be refused")
    return model_response(await policies.set_access_policy(
        store, call.params["ref"], body.policy, expected_version=body.expected_version,
        created_by=call.principal.subject))


@admin("GET", "/api/admin/projects/{ref}/policy/history")
async def _policy_history(call: Call, store: Store) -> ApiResponse:
    return _rows(await policies.policy_history(store, call.params["ref"]))


# ---- personal access tokens ----

@admin("GET", "/api/admin/pats")
async def _pats(call: Call, store: Store) -> ApiResponse:
    return _rows(await pats.list_pats(store, _one(call, "project")))


@admin("POST", "/api/admin/pats")
async def _create_pat(call: Call, store: Store) -> ApiResponse:
    body = parse_body(PatCreate, call.body)
    signer = call.inventory.service("signer")
    if not isinstance(signer, Signer):
        raise Refusal(503, "this engine cannot sign tokens")
    created = await pats.create_pat(
        store, signer=signer, engine=call.inventory.host, project=body.project, name=body.name,
        subject=body.subject or call.principal.subject, permissions=body.permissions, resources=body.resources,
        ttl_s=body.expires_in)
    return model_response(created, 201)


@admin("GET", "/api/admin/pats/{id}")
async def _pat(call: Call, store: Store) -> ApiResponse:
    return model_response(await pats.get_pat(store, call.params["id"]))


@admin("POST", "/api/admin/pats/{id}/revoke")
async def _revoke_pat(call: Call, store: Store) -> ApiResponse:
    body = parse_body(Revoke, call.body)
    return model_response(await pats.revoke_pat(store, call.params["id"], body.reason))


# ---- application credentials ----

@admin("GET", "/api/admin/apps")
async def _apps(call: Call, store: Store) -> ApiResponse:
    return _rows(await apps.list_app_credentials(store, _one(call, "project")))


@admin("POST", "/api/admin/apps")
async def _create_app(call: Call, store: Store) -> ApiResponse:
    body = parse_body(AppCreate, call.body)
    created = await apps.create_app_credential(store, project=body.project, name=body.name,
                                               permissions=body.permissions, resources=body.resources)
    return model_response(created, 201)


@admin("GET", "/api/admin/apps/{client_id}")
async def _app(call: Call, store: Store) -> ApiResponse:
    found = await apps.lookup_app_credential(store, call.params["client_id"])
    if found is None:
        raise NotFound(f"no application credential {call.params['client_id']!r}")
    return model_response(found)


@admin("POST", "/api/admin/apps/{client_id}/revoke")
async def _revoke_app(call: Call, store: Store) -> ApiResponse:
    body = parse_body(Revoke, call.body)
    return model_response(await apps.revoke_app_credential(store, call.params["client_id"], body.reason))


# ---- revocations ----

@admin("GET", "/api/admin/revocations")
async def _revocations(call: Call, store: Store) -> ApiResponse:
    project = _one(call, "project")
    if project is not None:
        project = (await workspaces.get_project(store, project)).id
    return _rows(await revocations.list_revocations(store, project))


@admin("POST", "/api/admin/revocations")
async def _revoke_token(call: Call, store: Store) -> ApiResponse:
    body = parse_body(TokenRevoke, call.body)
    jti, project = body.jti, None
    if (body.jti is None) == (body.token is None):
        raise Refusal(400, "give either jti or token")
    if body.token is not None:
        try:
            claims = jwt.decode(body.token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise Refusal(400, "token is not a JWT") from None
        jti, project = claims.get("jti"), claims.get("project_id")
        if not isinstance(jti, str) or not 0 < len(jti) <= 255:
            raise Refusal(400, "this token has no jti to revoke it by: revoke its credential instead")
    assert jti is not None
    if not (isinstance(project, str) and len(project) <= 40):  # informational only: the token is not verified
        project = None
    recorded = await revocations.record_revocation(store, "token", jti, reason=body.reason, project_id=project)
    return model_response(recorded, 201)
