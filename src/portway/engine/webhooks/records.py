"""What the webhook tables hold, as frozen records (store.py reads and writes them; the API shows them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DeliveryStatus = Literal["pending", "delivered", "failed"]
DELIVERABLE_EVENTS = ("client.created", "client.deleted", "tunnel.created", "tunnel.deleted")  # §4.3 catalog


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    project_id: str
    url: str
    event_types: tuple[str, ...]
    enabled: bool
    created_at: float
    secret_hint: str  # the newest secret, masked
    secrets_active: int  # more than one during a rotation's grace period


@dataclass(frozen=True, slots=True)
class Attempt:
    """One POST of a delivery: what came back, or why nothing did."""

    number: int
    started_at: float
    latency_ms: float
    status_code: int | None = None
    response_excerpt: str | None = None  # at most RESPONSE_EXCERPT_BYTES of the body
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    created_at: float
    next_attempt_at: float | None  # None once delivered or failed
    deadline_at: float
    redelivery_of: str | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    """A due delivery taken by one dispatcher until `until`: what it needs to make one attempt."""

    delivery_id: str
    endpoint_id: str
    url: str
    event_id: str
    event_type: str
    body: bytes
    failures: int
    deadline_at: float
    until: float


@dataclass(frozen=True, slots=True)
class Subscription:
    """An enabled endpoint as the recorder needs it: whose events, and which types."""

    endpoint_id: str
    project_id: str
    event_types: frozenset[str]


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event to store with one delivery per endpoint in `endpoint_ids`."""

    event_id: str
    event_type: str
    body: bytes
    endpoint_ids: tuple[str, ...]
