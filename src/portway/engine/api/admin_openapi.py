"""The admin API's part of the OpenAPI document: paths and the models they use, from the same classes
that validate the requests (admin_views.py) and serialize the answers (store records)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

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
from portway.engine.store.records import (
    AccessPolicy,
    AppCredential,
    CreatedAppCredential,
    CreatedPat,
    Pat,
    Project,
    Revocation,
    User,
    Workspace,
)

ADMIN_RESPONSES: tuple[type[BaseModel], ...] = (Workspace, Project, User, Pat, CreatedPat, AppCredential,
                                                 CreatedAppCredential, AccessPolicy, Revocation, Deleted)
ADMIN_REQUESTS: tuple[type[BaseModel], ...] = (WorkspaceCreate, ProjectCreate, UserCreate, UserUpdate, PatCreate,
                                                AppCreate, Revoke, TokenRevoke, PolicyUpdate)
_REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {code: _json(_ref("ErrorBody"), text) for code, text in (
    ("400", "Malformed request"), ("401", "Missing, invalid or expired token"),
    ("403", "Not an operator token"), ("404", "No such object"), ("409", "Conflicts with what is stored"))}


def _op(summary: str, status: str, answer: dict[str, Any], *, body: str | None = None,
        params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "tags": ["admin"], "responses": {status: answer, **_ERRORS}}
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    if params:
        operation["parameters"] = params
    return operation


def _path(name: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}]


def _query(name: str, description: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "query", "required": False, "description": description,
             "schema": {"type": "string"}}]


def _list(model: str, description: str) -> dict[str, Any]:
    return _json({"type": "array", "items": _ref(model)}, description)


def admin_paths() -> dict[str, Any]:
    """The `/api/admin/...` entries of `paths`."""
    by_project = _query("project", "Project id or name (default: every project)")
    return {
        "/api/admin/workspaces": {
            "get": _op("List workspaces", "200", _list("Workspace", "Every workspace")),
            "post": _op("Create a workspace", "201", _json(_ref("Workspace"), "Created"), body="WorkspaceCreate"),
        },
        "/api/admin/workspaces/{ref}": {
            "get": _op("One workspace (id or name)", "200", _json(_ref("Workspace"), "The workspace"),
                       params=_path("ref")),
            "delete": _op("Delete an empty workspace", "200", _json(_ref("Deleted"), "Deleted"), params=_path("ref")),
        },
        "/api/admin/projects": {
            "get": _op("List projects", "200", _list("Project", "Projects"),
                       params=_query("workspace", "Workspace id or name")),
            "post": _op("Create a project", "201", _json(_ref("Project"), "Created"), body="ProjectCreate"),
        },
        "/api/admin/projects/{ref}": {
            "get": _op("One project (id or name)", "200", _json(_ref("Project"), "The project"), params=_path("ref")),
            "delete": _op("Delete a project without live credentials", "200", _json(_ref("Deleted"), "Deleted"),
                          params=_path("ref")),
        },
        "/api/admin/projects/{ref}/policy": {
            "get": _op("The access policy in force", "200", _json(_ref("AccessPolicy"), "Version 0 = default"),
                       params=_path("ref")),
            "put": _op("Store a new policy version", "200", _json(_ref("AccessPolicy"), "The new version"),
                       body="PolicyUpdate", params=_path("ref")),
        },
        "/api/admin/projects/{ref}/policy/history": {
            "get": _op("Every policy version", "200", _list("AccessPolicy", "Oldest first"), params=_path("ref")),
        },
        "/api/admin/users": {
            "get": _op("List users", "200", _list("User", "Oldest first")),
            "post": _op("Create a user", "201", _json(_ref("User"), "Created"), body="UserCreate"),
        },
        "/api/admin/users/{ref}": {
            "get": _op("One user (id or subject)", "200", _json(_ref("User"), "The user"), params=_path("ref")),
            "patch": _op("Change a user's role and/or disable or enable it", "200", _json(_ref("User"), "Changed"),
                         body="UserUpdate", params=_path("ref")),
            "delete": _op("Delete a user without live PATs", "200", _json(_ref("Deleted"), "Deleted"),
                          params=_path("ref")),
        },
        "/api/admin/pats": {
            "get": _op("List personal access tokens (hashes only)", "200", _list("Pat", "PATs"), params=by_project),
            "post": _op("Create a PAT; the token is shown once", "201", _json(_ref("CreatedPat"), "Created"),
                        body="PatCreate"),
        },
        "/api/admin/pats/{id}": {
            "get": _op("One PAT", "200", _json(_ref("Pat"), "The PAT"), params=_path("id")),
        },
        "/api/admin/pats/{id}/revoke": {
            "post": _op("Revoke a PAT", "200", _json(_ref("Pat"), "Revoked"), body="Revoke", params=_path("id")),
        },
        "/api/admin/apps": {
            "get": _op("List application credentials", "200", _list("AppCredential", "Credentials"),
                       params=by_project),
            "post": _op("Create application credentials; the secret is shown once", "201",
                        _json(_ref("CreatedAppCredential"), "Created"), body="AppCreate"),
        },
        "/api/admin/apps/{client_id}": {
            "get": _op("One application credential", "200", _json(_ref("AppCredential"), "The credential"),
                       params=_path("client_id")),
        },
        "/api/admin/apps/{client_id}/revoke": {
            "post": _op("Revoke application credentials", "200", _json(_ref("AppCredential"), "Revoked"),
                        body="Revoke", params=_path("client_id")),
        },
        "/api/admin/revocations": {
            "get": _op("The revocation log", "200", _list("Revocation", "Oldest first"), params=by_project),
            "post": _op("Revoke one token (by jti); open connections using it are closed", "201",
                        _json(_ref("Revocation"), "Recorded"), body="TokenRevoke"),
        },
    }
