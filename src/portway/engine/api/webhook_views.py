"""JSON shapes of the webhook endpoints of the Engine API (webhook_routes.py); like views.py, the same
models validate requests, serialize answers and generate the OpenAPI document."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from portway.engine.webhooks import Attempt, Delivery, Endpoint
from portway.engine.webhooks.secret import check_secret
from portway.engine.webhooks.url import check_url

EventType = Literal["client.created", "client.deleted", "tunnel.created", "tunnel.deleted"]
MAX_ROTATION_GRACE_S = 7 * 86_400


def _when(seconds: float | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookCreate(_Shape):
    """`POST /api/webhooks`."""

    url: str = Field(description="http(s) URL that receives the POSTs (no credentials, no fragment)")
    events: list[EventType] | None = Field(None, min_length=1, description="Event types to send (default: all four)")
    secret: str | None = Field(None, description="whsec_ + 43 base64url characters (default: generated)")
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        return check_secret(value) if value is not None else None


class WebhookRotate(_Shape):
    """`POST /api/webhooks/{id}/rotate`."""

    secret: str | None = Field(None, description="The new secret (default: generated)")
    grace_seconds: float | None = Field(None, ge=0, le=MAX_ROTATION_GRACE_S,
                                        description="How long the current secrets keep signing (default: "
                                                    "webhooks.rotation_grace_seconds, 24 h)")

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        return check_secret(value) if value is not None else None


class WebhookView(_Shape):
    """A webhook endpoint. Its secrets are never listed: `secret_hint` tells which one is newest."""

    id: str
    project_id: str
    url: str
    events: list[str]
    enabled: bool
    created_at: datetime
    secret_hint: str = Field(description="The newest secret's first characters")
    secrets_active: int = Field(description="Secrets signing now (2+ during a rotation's grace period)")

    @classmethod
    def of(cls, endpoint: Endpoint) -> WebhookView:
        return cls(id=endpoint.id, project_id=endpoint.project_id, url=endpoint.url, events=list(endpoint.event_types),
                   enabled=endpoint.enabled, created_at=datetime.fromtimestamp(endpoint.created_at, UTC),
                   secret_hint=endpoint.secret_hint, secrets_active=endpoint.secrets_active)


class WebhookWithSecret(WebhookView):
    """The answer to create and rotate: the only time the secret is shown."""

    secret: str

    @classmethod
    def with_secret(cls, endpoint: Endpoint, secret: str) -> WebhookWithSecret:
        return cls(**WebhookView.of(endpoint).model_dump(), secret=secret)


class WebhookDeleted(_Shape):
    id: str
    deleted: bool = True


class AttemptView(_Shape):
    """One POST of a delivery."""

    number: int
    started_at: datetime
    latency_ms: float
    status_code: int | None = Field(None, description="The receiver's HTTP status (none if it never answered)")
    response_excerpt: str | None = Field(None, description="The first KiB of the receiver's answer")
    error: str | None = Field(None, description="Why the attempt failed, when not a status")

    @classmethod
    def of(cls, attempt: Attempt) -> AttemptView:
        return cls(number=attempt.number, started_at=datetime.fromtimestamp(attempt.started_at, UTC),
                   latency_ms=attempt.latency_ms, status_code=attempt.status_code,
                   response_excerpt=attempt.response_excerpt, error=attempt.error)


class DeliveryView(_Shape):
    """One event sent (or to be sent) to one endpoint, with its attempts."""

    id: str
    webhook_id: str
    event_id: str
    event_type: str
    status: Literal["pending", "delivered", "failed"]
    created_at: datetime
    next_attempt_at: datetime | None = Field(None, description="When pending: the next attempt")
    deadline_at: datetime = Field(description="A pending delivery is failed after this")
    redelivery_of: str | None = Field(None, description="The delivery this one repeats (redeliver)")
    attempts: list[AttemptView]

    @classmethod
    def of(cls, delivery: Delivery, attempts: list[Attempt]) -> DeliveryView:
        return cls(id=delivery.id, webhook_id=delivery.endpoint_id, event_id=delivery.event_id,
                   event_type=delivery.event_type, status=delivery.status,
                   created_at=datetime.fromtimestamp(delivery.created_at, UTC),
                   next_attempt_at=_when(delivery.next_attempt_at),
                   deadline_at=datetime.fromtimestamp(delivery.deadline_at, UTC),
                   redelivery_of=delivery.redelivery_of, attempts=[AttemptView.of(a) for a in attempts])
