"""Tables of the control-plane store. The migrations in `migrations/versions` create exactly these; a
change here needs a new revision there (the schema test compares both).

Timestamps are stored as timezone-aware UTC; SQLite hands them back naive, `records.py` re-attaches UTC.
Credentials keep no secret: a PAT row holds the SHA-256 of its token, an application credential its public key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, datetime: DateTime(timezone=True)}


class WorkspaceRow(Base):
    __tablename__ = "workspaces"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    created_at: Mapped[datetime]


class ProjectRow(Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime]


class UserRow(Base):
    """A person or automation that holds credentials; `role` is "operator" or "member". A disabled user
    (`disabled_at` set) has its PATs refused, and every token derived from them."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    disabled_at: Mapped[datetime | None]


class PatRow(Base):
    __tablename__ = "personal_access_tokens"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    token_endpoint: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(63))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    permissions: Mapped[list[str] | None] = mapped_column(JSON)
    resources: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class AppCredentialRow(Base):
    __tablename__ = "app_credentials"

    client_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    public_key_pem: Mapped[str] = mapped_column(String(1024))
    name: Mapped[str] = mapped_column(String(63))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    permissions: Mapped[list[str] | None] = mapped_column(JSON)
    resources: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class RevocationRow(Base):
    """One withdrawn credential or token: `kind` is "pat", "app" or "token" (a single JWT by `jti`)."""

    __tablename__ = "revocations"
    __table_args__ = (UniqueConstraint("kind", "ref"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    ref: Mapped[str] = mapped_column(String(255))
    project_id: Mapped[str | None] = mapped_column(String(40))
    reason: Mapped[str | None] = mapped_column(String(255))
    revoked_at: Mapped[datetime]


class AccessPolicyRow(Base):
    """Every version of a project's access policy; the highest `version` is in force."""

    __tablename__ = "access_policies"

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    created_by: Mapped[str | None] = mapped_column(String(255))


# ---- webhooks (engine/webhooks/store.py). Times here are epoch seconds (float): leases and retry times are
# compared and computed arithmetically, the same way on SQLite and PostgreSQL.


class WebhookEndpointRow(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    event_types: Mapped[list[str]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[float] = mapped_column(Double)


class WebhookSecretRow(Base):
    """A signing secret; several are active during a rotation's grace period (`expires_at` set)."""

    __tablename__ = "webhook_secrets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True)
    secret: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[float] = mapped_column(Double)
    expires_at: Mapped[float | None] = mapped_column(Double)


class WebhookEventRow(Base):
    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    type: Mapped[str] = mapped_column(String(63))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    recorded_at: Mapped[float] = mapped_column(Double)


class WebhookDeliveryRow(Base):
    """One event owed to one endpoint. A dispatcher holds it while `lease_until` is in the future."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("webhook_deliveries_due", "status", "next_attempt_at"),
                      Index("webhook_deliveries_by_endpoint", "endpoint_id", "created_at"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(ForeignKey("webhook_events.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Double)
    next_attempt_at: Mapped[float | None] = mapped_column(Double)
    deadline_at: Mapped[float] = mapped_column(Double)
    lease_until: Mapped[float | None] = mapped_column(Double)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    redelivery_of: Mapped[str | None] = mapped_column(String(40))


class WebhookAttemptRow(Base):
    __tablename__ = "webhook_attempts"

    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
                                             primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[float] = mapped_column(Double)
    latency_ms: Mapped[float] = mapped_column(Double)
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
