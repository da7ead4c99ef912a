"""Webhooks (§4.3): durable, signed delivery of lifecycle events to HTTP endpoints.

Pure pieces — `records`, `secret` (format), `signature` (the header), `schedule` (retries), `url` (what is
accepted) — and the I/O around them: `store` (the `webhook_*` tables of the control-plane store), `recorder`
(bus events into stored deliveries), `dispatcher` (the POST loop), `service` (the whole, as the engine and
its API see it). Only the pure pieces are imported here: the others load SQLAlchemy, which only a starting
engine needs. Design notes: docs/webhooks.md.
"""

from portway.engine.webhooks.records import DELIVERABLE_EVENTS, Attempt, Delivery, Endpoint
from portway.engine.webhooks.schedule import RetrySchedule

__all__ = ["DELIVERABLE_EVENTS", "Attempt", "Delivery", "Endpoint", "RetrySchedule"]
