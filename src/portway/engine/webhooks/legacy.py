"""One-time import of the webhook outbox earlier Portway versions kept in `<state dir>/portway.db` (stdlib
SQLite, schema version 1) into the control-plane store, so an upgrade loses no endpoint, secret or owed
delivery. Everything is copied in one store transaction (leases dropped: whatever was in flight is due
again — at least once), then the file is renamed `portway.db.imported`. Rows already in the store (an import
that committed but could not rename) are skipped, so running it twice changes nothing."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

from sqlalchemy import select

from portway.engine.store import Store
from portway.engine.store.schema import (
    WebhookAttemptRow,
    WebhookDeliveryRow,
    WebhookEndpointRow,
    WebhookEventRow,
    WebhookSecretRow,
)

log = logging.getLogger("portway.engine.webhooks")

LEGACY_FILE = "portway.db"


def _rows(db: sqlite3.Connection, sql: str) -> list[sqlite3.Row]:
    return list(db.execute(sql).fetchall())


async def import_legacy_outbox(state_dir: Path, store: Store, project_id: str) -> int | None:
    """Copy `state_dir/portway.db` into the store (every endpoint into `project_id`, the default project, as
    the outbox had no projects); how many endpoints were imported, None when there was no file."""
    path = state_dir / LEGACY_FILE
    if not path.exists():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        endpoints = _rows(db, "SELECT * FROM endpoints")
        keys = _rows(db, "SELECT * FROM secrets")
        events = _rows(db, "SELECT * FROM events")
        deliveries = _rows(db, "SELECT * FROM deliveries")
        attempts = _rows(db, "SELECT * FROM attempts")
    finally:
        db.close()
    async with store.transaction() as session:
        known = set(await session.scalars(select(WebhookEndpointRow.id)))
        new = {row["id"] for row in endpoints} - known
        session.add_all(WebhookEndpointRow(id=r["id"], project_id=project_id, url=r["url"],
                                           event_types=json.loads(r["event_types"]), enabled=bool(r["enabled"]),
                                           created_at=r["created_at"]) for r in endpoints if r["id"] in new)
        owed = [r for r in deliveries if r["endpoint_id"] in new]
        needed = {r["event_id"] for r in owed}
        stored = set(await session.scalars(select(WebhookEventRow.id).where(WebhookEventRow.id.in_(needed))))
        session.add_all(WebhookEventRow(id=r["id"], type=r["type"], body=bytes(r["body"]), recorded_at=r["recorded_at"])
                        for r in events if r["id"] in needed - stored)
        await session.flush()  # endpoints and events before what refers to them
        session.add_all(WebhookSecretRow(endpoint_id=r["endpoint_id"], secret=r["secret"], created_at=r["created_at"],
                                         expires_at=r["expires_at"]) for r in keys if r["endpoint_id"] in new)
        session.add_all(WebhookDeliveryRow(
            id=r["id"], endpoint_id=r["endpoint_id"], event_id=r["event_id"], status=r["status"],
            attempts=r["attempts"], created_at=r["created_at"], next_attempt_at=r["next_attempt_at"],
            deadline_at=r["deadline_at"], lease_until=None, lease_owner=None, redelivery_of=r["redelivery_of"])
            for r in owed)
        await session.flush()
        copied = {r["id"] for r in owed}
        session.add_all(WebhookAttemptRow(
            delivery_id=r["delivery_id"], number=r["number"], started_at=r["started_at"], latency_ms=r["latency_ms"],
            status_code=r["status_code"], response_excerpt=r["response_excerpt"], error=r["error"])
            for r in attempts if r["delivery_id"] in copied)
    path.rename(path.with_name(LEGACY_FILE + ".imported"))
    pending = sum(1 for r in owed if r["status"] == "pending")
    log.warning("webhooks: imported %d endpoint(s) and %d delivery(ies) (%d still owed) from %s into the "
                "control-plane store; the file is kept as %s.imported", len(new), len(owed), pending, path, LEGACY_FILE)
    return len(new)
