"""Request bodies of the admin API (`/api/admin/...`). Responses are the store's own records
(portway.engine.store.records), so what is stored, served and documented cannot drift apart."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from portway.engine.accesspolicy import PolicyDocument
from portway.engine.store.pats import DEFAULT_PAT_TTL_S, MAX_PAT_TTL_S
from portway.engine.store.records import NAME_PATTERN


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkspaceCreate(_Body):
    name: str = Field(pattern=NAME_PATTERN)


class ProjectCreate(_Body):
    name: str = Field(pattern=NAME_PATTERN)
    workspace: str = Field(default="default", description="Workspace id or name")


class PatCreate(_Body):
    name: str = Field(pattern=NAME_PATTERN)
    project: str = Field(default="default", description="Project id or name")
    subject: str | None = Field(default=None, max_length=255,
                                description="Whom the token speaks for (default: the caller)")
    permissions: list[str] | None = Field(default=None, description="null = every permission of the subject")
    resources: dict[str, Any] | None = Field(default=None, description='{"tunnels": node} (§3.2)')
    expires_in: int = Field(default=DEFAULT_PAT_TTL_S, ge=1, le=MAX_PAT_TTL_S, description="Lifetime in seconds")


class AppCreate(_Body):
    name: str = Field(pattern=NAME_PATTERN)
    project: str = Field(default="default", description="Project id or name")
    permissions: list[str] | None = Field(default=None, description="Ceiling of the tokens it mints")
    resources: dict[str, Any] | None = Field(default=None, description="Ceiling of the tokens it mints")


class UserCreate(_Body):
    subject: str = Field(min_length=1, max_length=255,
                         description="The `sub` its tokens carry; no control characters")
    role: Literal["operator", "member"] = Field(default="member", description="operator may use the admin API")


class UserUpdate(_Body):
    """Give `role`, `disabled` or both; a disabled user's PATs and their derived tokens are refused."""

    role: Literal["operator", "member"] | None = None
    disabled: StrictBool | None = None


class Revoke(_Body):
    reason: str | None = Field(default=None, max_length=255)


class TokenRevoke(_Body):
    """One token to withdraw: by its `jti`, or the token itself (only its `jti` and `project_id` are read and
    kept; its signature is not checked — an operator may revoke whatever they hold)."""

    jti: str | None = Field(default=None, min_length=1, max_length=255)
    token: str | None = Field(default=None, min_length=1, max_length=8192)
    reason: str | None = Field(default=None, max_length=255)


class PolicyUpdate(_Body):
    policy: PolicyDocument
    expected_version: int | None = Field(
        default=None, ge=0, description="Refuse (409) unless this is the version in force")


class Deleted(BaseModel):
    deleted: str
