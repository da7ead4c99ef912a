"""What the repository functions return: frozen pydantic models, so the admin API serializes them as they
are and its OpenAPI document describes them from the same classes. None of them carries a secret except
`CreatedPat.token` and `CreatedAppCredential.secret`, which exist only in the answer to a creation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from portway.engine.accesspolicy import PolicyDocument  # the one policy model, stored as JSON

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
PROTOCOLS = ("http", "tls", "tcp", "dtls", "quic")


def utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes for what was stored as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Workspace(_Record):
    id: str
    name: str
    created_at: datetime


class Project(_Record):
    id: str
    workspace_id: str
    name: str
    created_at: datetime


class User(_Record):
    """Whom credentials speak for; `disabled_at` set = its PATs (and what derives from them) are refused."""

    id: str
    subject: str
    role: Literal["operator", "member"]
    created_at: datetime
    disabled_at: datetime | None


class Pat(_Record):
    """A personal access token as stored: its hash, never the token."""

    id: str
    name: str
    project_id: str
    user_id: str | None
    token_sha256: str
    token_endpoint: str
    permissions: list[str] | None
    resources: dict[str, Any] | None
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class CreatedPat(_Record):
    """The answer to a creation: the only time `token` exists outside its holder."""

    pat: Pat
    token: str


class AppCredential(_Record):
    """Application credentials as stored: the client id and the P-521 public key that checks its ES512 tokens."""

    client_id: str
    name: str
    project_id: str
    public_key_pem: str
    permissions: list[str] | None
    resources: dict[str, Any] | None
    created_at: datetime
    revoked_at: datetime | None


class CreatedAppCredential(_Record):
    """`secret` is the hex PKCS#8 DER private key (§3.3), shown here once and never stored."""

    credential: AppCredential
    secret: str


class Revocation(_Record):
    kind: Literal["pat", "app", "token"]
    ref: str
    project_id: str | None
    reason: str | None
    revoked_at: datetime


class AccessPolicy(_Record):
    """The policy in force for a project; version 0 is the built-in default (nothing stored yet)."""

    project_id: str
    version: int
    policy: PolicyDocument
    created_at: datetime | None
    created_by: str | None
