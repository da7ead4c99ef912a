"""Webhooks (§4.3): durable, signed delivery of lifecycle events to HTTP endpoints.

Pure pieces — `secret` (format), `signature` (the header), `schedule` (retries), `url` (what is accepted) —
and the I/O around them: `store` (SQLite), `dispatcher` (the POST loop), `service` (the whole, as the
engine and its API see it). Design notes: docs/webhooks.md.
"""

from portway.engine.webhooks.records import DEFAULT_PROJECT, DELIVERABLE_EVENTS, Attempt, Delivery, Endpoint
from portway.engine.webhooks.schedule import RetrySchedule
from portway.engine.webhooks.service import WebhookService, WebhookSettings
from portway.engine.webhooks.store import StoreError

__all__ = [
    "DEFAULT_PROJECT",
    "DELIVERABLE_EVENTS",
    "Attempt",
    "Delivery",
    "Endpoint",
    "RetrySchedule",
    "StoreError",
    "WebhookService",
    "WebhookSettings",
]
