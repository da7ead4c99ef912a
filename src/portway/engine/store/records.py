"""What the repository functions return: frozen pydantic models, so the admin API serializes them as they
are and its OpenAPI document describes them from the same classes. None of them carries a secret except
`CreatedPat.token` and `CreatedAppCredential.secret`, which exist only in the answer to a creation."""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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
    id: str
    subject: str
    role: Literal["operator", "member"]
    created_at: datetime


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


class PolicyDocument(_Record):
    """A project-wide access policy: what tunnels of the project may be and who may reach them.

    Empty lists mean "no restriction"; `allowed_protocols` null means every protocol."""

    allow_public: bool = Field(default=True,
                               description="Whether tunnels may be published (false: private tunnels only)")
    allowed_protocols: list[Literal["http", "tls", "tcp", "dtls", "quic"]] | None = Field(
        default=None, description="Tunnel protocols that may be created (null = all)")
    required_labels: dict[str, str | None] = Field(
        default_factory=dict, description="Labels every tunnel must carry (null value = any value)")
    allowed_source_cidrs: list[str] = Field(default_factory=list, description="Visitor addresses allowed (CIDR)")
    allowed_countries: list[str] = Field(default_factory=list,
                                         description="Visitor countries allowed (ISO 3166 alpha-2)")
    min_tls_version: Literal["1.2", "1.3"] | None = Field(default=None, description="Lowest TLS version at the edge")

    @field_validator("allowed_source_cidrs")
    @classmethod
    def _cidrs(cls, values: list[str]) -> list[str]:
        return [str(ipaddress.ip_network(value, strict=False)) for value in values]

    @field_validator("allowed_countries")
    @classmethod
    def _countries(cls, values: list[str]) -> list[str]:
        for value in values:
            if not re.fullmatch(r"[A-Za-z]{2}", value):
                raise ValueError(f"{value!r} is not an ISO 3166 alpha-2 country code")
        return [value.upper() for value in values]


class AccessPolicy(_Record):
    """The policy in force for a project; version 0 is the built-in default (nothing stored yet)."""

    project_id: str
    version: int
    policy: PolicyDocument
    created_at: datetime | None
    created_by: str | None
