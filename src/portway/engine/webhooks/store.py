"""Durable webhook state in one SQLite file (stdlib sqlite3, WAL): endpoints, their secrets, recorded
events, deliveries and every attempt.

Why this shape:
- an event and its deliveries are inserted in one transaction, synchronously, before the engine answers
  the agent whose action caused it, so an acknowledged action always has its deliveries on disk;
- a dispatcher takes due deliveries with a *lease* (`lease_until`, `lease_owner`) inside a write
  transaction, so two dispatchers (or one restarted after a crash) never attempt the same delivery at
  once; a lease left by a killed process simply expires and the delivery becomes due again;
- `synchronous=FULL`: a commit is on disk when it returns (a crash of the machine, not only of the engine,
  loses nothing already acknowledged).

All methods are synchronous and fast (local file, small rows); they run on the engine's loop thread.
sqlite3 errors are translated into `StoreError` here.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from portway.engine.webhooks.records import Attempt, Delivery, DeliveryStatus, Endpoint, Lease
from portway.engine.webhooks.secret import mask
from portway.errors import PortwayError

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS endpoints (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL, url TEXT NOT NULL, event_types TEXT NOT NULL,
    enabled INTEGER NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS secrets (
    endpoint_id TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE, secret TEXT NOT NULL,
    created_at REAL NOT NULL, expires_at REAL);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, type TEXT NOT NULL, body BLOB NOT NULL, recorded_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY, endpoint_id TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
    event_id TEXT NOT NULL REFERENCES events(id), status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, next_attempt_at REAL, deadline_at REAL NOT NULL,
    lease_until REAL, lease_owner TEXT, redelivery_of TEXT);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_by_endpoint ON deliveries (endpoint_id, created_at);
CREATE TABLE IF NOT EXISTS attempts (
    delivery_id TEXT NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE, number INTEGER NOT NULL,
    started_at REAL NOT NULL, latency_ms REAL NOT NULL, status_code INTEGER, response_excerpt TEXT, error TEXT,
    PRIMARY KEY (delivery_id, number));
"""
_DELIVERY = ("SELECT d.id, d.endpoint_id, d.event_id, e.type, d.status, d.attempts, d.created_at, "
             "d.next_attempt_at, d.deadline_at, d.redelivery_of FROM deliveries d JOIN events e ON e.id = d.event_id")


class StoreError(PortwayError):
    """The webhook database failed (disk full, corrupt file, locked for too long)."""


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as failure:
        raise StoreError(f"webhook database: {failure}") from failure


def new_id(prefix: str) -> str:
    """`<prefix>_` + milliseconds (hex) + random: unique, and sorted by creation time as text."""
    return f"{prefix}_{int(time.time() * 1000):012x}{secrets.token_hex(4)}"


class WebhookStore:
    """One open database. `open()` creates it (mode 0600: it holds signing secrets); `close()` when done."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    @classmethod
    def open(cls, path: Path) -> WebhookStore:
        with _translated():
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))  # SQLite gives its -wal/-shm the same mode
            db = sqlite3.connect(path, isolation_level=None, timeout=5.0)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute("PRAGMA foreign_keys=ON")
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise StoreError(f"{path} was written by a newer Portway (schema {version})")
                db.executescript(_SCHEMA)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            except BaseException:
                db.close()
                raise
        return cls(db)

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, taken at once (IMMEDIATE) so leases cannot interleave."""
        with _translated():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _rows(self, sql: str, args: Sequence[object] = ()) -> list[tuple[object, ...]]:
        with _translated():
            return list(self._db.execute(sql, args).fetchall())

    # ---- endpoints and secrets

    def create_endpoint(self, *, project_id: str, url: str, event_types: Sequence[str], enabled: bool,
                        secret: str, now: float) -> Endpoint:
        endpoint_id = new_id("wh")
        with self._tx() as db:
            db.execute("INSERT INTO endpoints VALUES (?, ?, ?, ?, ?, ?)",
                       (endpoint_id, project_id, url, json.dumps(list(event_types)), int(enabled), now))
            db.execute("INSERT INTO secrets VALUES (?, ?, ?, NULL)", (endpoint_id, secret, now))
        found = self.endpoint(endpoint_id, now=now)
        assert found is not None
        return found

    def endpoints(self, project_id: str, *, now: float) -> list[Endpoint]:
        ids = self._rows("SELECT id FROM endpoints WHERE project_id = ? ORDER BY created_at, id", (project_id,))
        return [e for (endpoint_id,) in ids if (e := self.endpoint(str(endpoint_id), now=now)) is not None]

    def endpoint(self, endpoint_id: str, *, now: float) -> Endpoint | None:
        rows = self._rows("SELECT id, project_id, url, event_types, enabled, created_at FROM endpoints "
                          "WHERE id = ?", (endpoint_id,))
        if not rows:
            return None
        found, project, url, kinds, enabled, created = rows[0]
        active = self.secrets(endpoint_id, now=now)
        return Endpoint(id=str(found), project_id=str(project), url=str(url),
                        event_types=tuple(json.loads(str(kinds))), enabled=bool(enabled),
                        created_at=float(created),  # type: ignore[arg-type]
                        secret_hint=mask(active[0]) if active else "", secrets_active=len(active))

    def delete_endpoint(self, endpoint_id: str) -> bool:
        """Remove an endpoint with its secrets, deliveries and attempts; False if there was none."""
        with self._tx() as db:
            return db.execute("DELETE FROM endpoints WHERE id = ?", (endpoint_id,)).rowcount > 0

    def secrets(self, endpoint_id: str, *, now: float) -> list[str]:
        """The secrets that sign deliveries now, newest first."""
        rows = self._rows("SELECT secret FROM secrets WHERE endpoint_id = ? AND (expires_at IS NULL OR "
                          "expires_at > ?) ORDER BY created_at DESC, rowid DESC", (endpoint_id, now))
        return [str(secret) for (secret,) in rows]

    def rotate(self, endpoint_id: str, *, secret: str, now: float, grace_s: float) -> bool:
        """Make `secret` the endpoint's newest; the current ones keep signing for `grace_s` seconds."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM endpoints WHERE id = ?", (endpoint_id,)).fetchone() is None:
                return False
            db.execute("DELETE FROM secrets WHERE endpoint_id = ? AND expires_at <= ?", (endpoint_id, now))
            db.execute("UPDATE secrets SET expires_at = ? WHERE endpoint_id = ? AND (expires_at IS NULL OR "
                       "expires_at > ?)", (now + grace_s, endpoint_id, now + grace_s))
            db.execute("INSERT INTO secrets VALUES (?, ?, ?, NULL)", (endpoint_id, secret, now))
        return True

    def subscribers(self, project_id: str, event_type: str) -> list[str]:
        """Enabled endpoints of the project that want `event_type`."""
        rows = self._rows("SELECT id, event_types FROM endpoints WHERE project_id = ? AND enabled = 1",
                          (project_id,))
        return [str(endpoint_id) for endpoint_id, kinds in rows if event_type in json.loads(str(kinds))]

    # ---- events and deliveries

    def record(self, *, event_id: str, event_type: str, body: bytes, endpoint_ids: Sequence[str], now: float,
               deadline: float) -> list[str]:
        """Store an event and one due delivery per endpoint, in one transaction; the delivery ids."""
        ids = [new_id("dlv") for _ in endpoint_ids]
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?)", (event_id, event_type, body, now))
            db.executemany("INSERT INTO deliveries (id, endpoint_id, event_id, status, created_at, next_attempt_at, "
                           "deadline_at) VALUES (?, ?, ?, 'pending', ?, ?, ?)",
                           [(i, e, event_id, now, now, deadline) for i, e in zip(ids, endpoint_ids, strict=True)])
        return ids

    def lease(self, *, now: float, limit: int, lease_s: float, owner: str) -> list[Lease]:
        """Take up to `limit` due deliveries whose lease is free or expired, until `now + lease_s`."""
        until = now + lease_s
        with self._tx() as db:
            rows = db.execute(
                "SELECT d.id, d.endpoint_id, n.url, e.id, e.type, e.body, d.attempts, d.deadline_at "
                "FROM deliveries d JOIN events e ON e.id = d.event_id JOIN endpoints n ON n.id = d.endpoint_id "
                "WHERE d.status = 'pending' AND d.next_attempt_at <= ? AND (d.lease_until IS NULL OR "
                "d.lease_until <= ?) ORDER BY d.next_attempt_at LIMIT ?", (now, now, limit)).fetchall()
            db.executemany("UPDATE deliveries SET lease_until = ?, lease_owner = ? WHERE id = ?",
                           [(until, owner, row[0]) for row in rows])
        return [Lease(delivery_id=r[0], endpoint_id=r[1], url=r[2], event_id=r[3], event_type=r[4], body=bytes(r[5]),
                      failures=r[6], deadline_at=r[7], until=until) for r in rows]

    def finish(self, lease: Lease, owner: str, attempt: Attempt, *, status: DeliveryStatus,
               next_attempt_at: float | None) -> bool:
        """Record an attempt and the delivery's new state, if `owner` still holds the lease."""
        with self._tx() as db:
            held = db.execute("UPDATE deliveries SET status = ?, attempts = ?, next_attempt_at = ?, "
                              "lease_until = NULL, lease_owner = NULL WHERE id = ? AND lease_owner = ?",
                              (status, attempt.number, next_attempt_at, lease.delivery_id, owner)).rowcount
            if held:
                db.execute("INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (lease.delivery_id, attempt.number, attempt.started_at, attempt.latency_ms,
                            attempt.status_code, attempt.response_excerpt, attempt.error))
        return held > 0

    def release(self, owner: str) -> None:
        """Give back every lease of `owner` (a clean stop): those deliveries are due again at once."""
        with self._tx() as db:
            db.execute("UPDATE deliveries SET lease_until = NULL, lease_owner = NULL WHERE lease_owner = ?",
                       (owner,))

    def next_wakeup(self) -> float | None:
        """When some pending delivery becomes due or its lease expires (None: nothing pending)."""
        rows = self._rows("SELECT MIN(MAX(next_attempt_at, COALESCE(lease_until, 0))) FROM deliveries "
                          "WHERE status = 'pending'")
        value = rows[0][0]
        return float(value) if value is not None else None  # type: ignore[arg-type]

    def deliveries(self, endpoint_id: str, *, limit: int) -> list[Delivery]:
        """The endpoint's deliveries, newest first."""
        rows = self._rows(_DELIVERY + " WHERE d.endpoint_id = ? ORDER BY d.created_at DESC, d.id DESC LIMIT ?",
                          (endpoint_id, limit))
        return [Delivery(*row) for row in rows]  # type: ignore[arg-type]

    def delivery(self, endpoint_id: str, delivery_id: str) -> Delivery | None:
        rows = self._rows(_DELIVERY + " WHERE d.endpoint_id = ? AND d.id = ?", (endpoint_id, delivery_id))
        return Delivery(*rows[0]) if rows else None  # type: ignore[arg-type]

    def attempts(self, delivery_id: str) -> list[Attempt]:
        rows = self._rows("SELECT number, started_at, latency_ms, status_code, response_excerpt, error "
                          "FROM attempts WHERE delivery_id = ? ORDER BY number", (delivery_id,))
        return [Attempt(*row) for row in rows]  # type: ignore[arg-type]

    def redeliver(self, endpoint_id: str, delivery_id: str, *, now: float, deadline: float) -> Delivery | None:
        """A new due delivery of the same event to the same endpoint (whatever the old one's state)."""
        new = new_id("dlv")
        with self._tx() as db:
            row = db.execute("SELECT event_id FROM deliveries WHERE id = ? AND endpoint_id = ?",
                             (delivery_id, endpoint_id)).fetchone()
            if row is None:
                return None
            db.execute("INSERT INTO deliveries (id, endpoint_id, event_id, status, created_at, next_attempt_at, "
                       "deadline_at, redelivery_of) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?)",
                       (new, endpoint_id, row[0], now, now, deadline, delivery_id))
        return self.delivery(endpoint_id, new)

    def prune(self, before: float) -> int:
        """Forget finished deliveries created before `before`, and events no delivery refers to."""
        with self._tx() as db:
            count = db.execute("DELETE FROM deliveries WHERE status != 'pending' AND created_at < ?",
                               (before,)).rowcount
            db.execute("DELETE FROM events WHERE id NOT IN (SELECT event_id FROM deliveries)")
        return count
