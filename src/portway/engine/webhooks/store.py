"""Durable webhook state in the control-plane store (SQLite or PostgreSQL): endpoints, their secrets,
recorded events, deliveries and every attempt. Tables: store/schema.py (`webhook_*`).

Why this shape:
- `record()` inserts a batch of events and their deliveries in one transaction; the recorder holds the
  engine's answers to agents until it commits, so an acknowledged action always has its deliveries stored;
- a dispatcher takes a due delivery with a *lease* (`lease_until`, `lease_owner`) by a conditional UPDATE
  (`... WHERE the lease is free`), which exactly one writer can win on either database, so two dispatchers
  (two engines on one PostgreSQL, or one restarted after a crash) never attempt the same delivery at once;
  a lease left by a killed process simply expires and the delivery becomes due again.

Every function takes the `Store` and is async; SQLAlchemy errors become `StoreError`.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from portway.engine.store.schema import (
    WebhookAttemptRow,
    WebhookDeliveryRow,
    WebhookEndpointRow,
    WebhookEventRow,
    WebhookSecretRow,
)
from portway.engine.store.store import Store
from portway.engine.webhooks.records import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Endpoint,
    Lease,
    PendingEvent,
    Subscription,
)
from portway.engine.webhooks.secret import mask
from portway.errors import PortwayError


class StoreError(PortwayError):
    """The webhook tables could not be read or written (database unreachable, disk full, locked too long)."""


def new_id(prefix: str) -> str:
    """`<prefix>_` + milliseconds (hex) + random: unique, and sorted by creation time as text."""
    return f"{prefix}_{int(time.time() * 1000):012x}{secrets.token_hex(4)}"


class WebhookStore:
    """The webhook tables of one open `Store` (which the engine owns and closes)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncSession]:
        try:
            async with self._store.transaction() as session:
                yield session
        except SQLAlchemyError as failure:
            raise StoreError(f"webhook tables: {type(failure).__name__}: {failure.args[0] if failure.args else ''}"
                             ) from failure

    # ---- endpoints and secrets

    async def create_endpoint(self, *, project_id: str, url: str, event_types: Sequence[str], enabled: bool,
                              secret: str, now: float) -> Endpoint:
        endpoint_id = new_id("wh")
        async with self._tx() as session:
            session.add(WebhookEndpointRow(id=endpoint_id, project_id=project_id, url=url,
                                           event_types=list(event_types), enabled=enabled, created_at=now))
            await session.flush()
            session.add(WebhookSecretRow(endpoint_id=endpoint_id, secret=secret, created_at=now, expires_at=None))
        return Endpoint(id=endpoint_id, project_id=project_id, url=url, event_types=tuple(event_types),
                        enabled=enabled, created_at=now, secret_hint=mask(secret), secrets_active=1)

    async def endpoints(self, project_id: str, *, now: float) -> list[Endpoint]:
        async with self._tx() as session:
            rows = list(await session.scalars(select(WebhookEndpointRow).where(
                WebhookEndpointRow.project_id == project_id).order_by(WebhookEndpointRow.created_at,
                                                                      WebhookEndpointRow.id)))
            return [await _endpoint(session, row, now) for row in rows]

    async def endpoint(self, endpoint_id: str, *, project_id: str | None, now: float) -> Endpoint | None:
        """One endpoint; with `project_id`, only if it belongs to that project."""
        async with self._tx() as session:
            row = await session.get(WebhookEndpointRow, endpoint_id)
            if row is None or (project_id is not None and row.project_id != project_id):
                return None
            return await _endpoint(session, row, now)

    async def delete_endpoint(self, endpoint_id: str, *, project_id: str) -> bool:
        """Remove an endpoint with its secrets, deliveries and attempts; False if the project has none such."""
        async with self._tx() as session:
            done = await session.execute(delete(WebhookEndpointRow).where(
                WebhookEndpointRow.id == endpoint_id, WebhookEndpointRow.project_id == project_id))
            return bool(done.rowcount)  # type: ignore[attr-defined]

    async def secrets(self, endpoint_id: str, *, now: float) -> list[str]:
        """The secrets that sign deliveries now, newest first."""
        async with self._tx() as session:
            return await _secrets(session, endpoint_id, now)

    async def rotate(self, endpoint_id: str, *, project_id: str, secret: str, now: float, grace_s: float) -> bool:
        """Make `secret` the endpoint's newest; the current ones keep signing for `grace_s` seconds."""
        until = now + grace_s
        async with self._tx() as session:
            row = await session.get(WebhookEndpointRow, endpoint_id)
            if row is None or row.project_id != project_id:
                return False
            owned = WebhookSecretRow.endpoint_id == endpoint_id
            await session.execute(delete(WebhookSecretRow).where(owned, WebhookSecretRow.expires_at <= now))
            await session.execute(update(WebhookSecretRow).where(
                owned, (WebhookSecretRow.expires_at.is_(None)) | (WebhookSecretRow.expires_at > until)
            ).values(expires_at=until))
            session.add(WebhookSecretRow(endpoint_id=endpoint_id, secret=secret, created_at=now, expires_at=None))
        return True

    async def subscriptions(self) -> list[Subscription]:
        """Every enabled endpoint (the recorder keeps them in memory)."""
        async with self._tx() as session:
            rows = await session.scalars(select(WebhookEndpointRow).where(WebhookEndpointRow.enabled.is_(True)))
            return [Subscription(r.id, r.project_id, frozenset(r.event_types)) for r in rows]

    # ---- events and deliveries

    async def record(self, events: Sequence[PendingEvent], *, now: float, deadline: float) -> int:
        """Store events and one due delivery per (still existing) endpoint, in one transaction; how many
        deliveries. An endpoint deleted since the recorder looked is skipped, and an event already stored (a
        retried batch whose commit did land) is not stored again. Core inserts, not the ORM: this runs before
        agents get their answers."""
        wanted = {e for event in events for e in event.endpoint_ids}
        async with self._tx() as session:
            alive = set(await session.scalars(select(WebhookEndpointRow.id).where(WebhookEndpointRow.id.in_(wanted))))
            kept = [event for event in events if any(e in alive for e in event.endpoint_ids)]
            if not kept:
                return 0
            insert = _insert_ignoring_duplicates(session)
            stored = await session.execute(
                insert(WebhookEventRow).values([{"id": e.event_id, "type": e.event_type, "body": e.body,
                                                 "recorded_at": now} for e in kept])
                .on_conflict_do_nothing().returning(WebhookEventRow.id))
            new = set(stored.scalars())
            owed = [{"id": new_id("dlv"), "endpoint_id": endpoint, "event_id": e.event_id, "status": "pending",
                     "attempts": 0, "created_at": now, "next_attempt_at": now, "deadline_at": deadline}
                    for e in kept if e.event_id in new for endpoint in e.endpoint_ids if endpoint in alive]
            if owed:
                await session.execute(insert(WebhookDeliveryRow).values(owed))
        return len(owed)

    async def lease(self, *, now: float, limit: int, lease_s: float, owner: str) -> tuple[list[Lease], float | None]:
        """Take up to `limit` due deliveries whose lease is free or expired, until `now + lease_s`; and when the
        next pending delivery becomes due or its lease expires (None: nothing pending). One transaction: the
        dispatcher asks this on every turn.

        The taking is one UPDATE whose WHERE repeats the due-and-free test: on PostgreSQL a row another
        dispatcher leased meanwhile fails that re-check and is skipped; SQLite runs one writer at a time."""
        until = now + lease_s
        d = WebhookDeliveryRow
        free = (d.lease_until.is_(None)) | (d.lease_until <= now)
        due = (d.status == "pending", d.next_attempt_at <= now, free)
        later = case((d.lease_until > d.next_attempt_at, d.lease_until), else_=d.next_attempt_at)
        async with self._tx() as session:
            taken: list[str] = []
            if limit > 0:
                candidates = select(d.id).where(*due).order_by(d.next_attempt_at).limit(limit).scalar_subquery()
                taken = list(await session.scalars(
                    update(d).where(d.id.in_(candidates), *due).values(lease_until=until, lease_owner=owner)
                    .returning(d.id).execution_options(synchronize_session=False)))
            rows = (await session.execute(
                select(d, WebhookEndpointRow.url, WebhookEventRow)
                .join(WebhookEndpointRow, WebhookEndpointRow.id == d.endpoint_id)
                .join(WebhookEventRow, WebhookEventRow.id == d.event_id)
                .where(d.id.in_(taken)).order_by(d.next_attempt_at))).all() if taken else []
            wakeup = await session.scalar(select(func.min(later)).where(d.status == "pending"))
        leases = [Lease(delivery_id=row.id, endpoint_id=row.endpoint_id, url=url, event_id=e.id, event_type=e.type,
                        body=bytes(e.body), failures=row.attempts, deadline_at=row.deadline_at, until=until)
                  for row, url, e in rows]
        return leases, float(wakeup) if wakeup is not None else None

    async def finish(self, lease: Lease, owner: str, attempt: Attempt, *, status: DeliveryStatus,
                     next_attempt_at: float | None) -> bool:
        """Record an attempt and the delivery's new state, if `owner` still holds the lease."""
        async with self._tx() as session:
            held = await session.execute(update(WebhookDeliveryRow).where(
                WebhookDeliveryRow.id == lease.delivery_id, WebhookDeliveryRow.lease_owner == owner
            ).values(status=status, attempts=attempt.number, next_attempt_at=next_attempt_at, lease_until=None,
                     lease_owner=None))
            if not held.rowcount:  # type: ignore[attr-defined]
                return False
            session.add(WebhookAttemptRow(delivery_id=lease.delivery_id, number=attempt.number,
                                          started_at=attempt.started_at, latency_ms=attempt.latency_ms,
                                          status_code=attempt.status_code,
                                          response_excerpt=attempt.response_excerpt, error=attempt.error))
        return True

    async def release(self, owner: str) -> None:
        """Give back every lease of `owner` (a clean stop): those deliveries are due again at once."""
        async with self._tx() as session:
            await session.execute(update(WebhookDeliveryRow).where(WebhookDeliveryRow.lease_owner == owner)
                                  .values(lease_until=None, lease_owner=None))

    async def deliveries(self, endpoint_id: str, *, limit: int) -> list[tuple[Delivery, list[Attempt]]]:
        """The endpoint's deliveries, newest first, each with its attempts."""
        async with self._tx() as session:
            rows = (await session.execute(_DELIVERY.where(WebhookDeliveryRow.endpoint_id == endpoint_id).order_by(
                WebhookDeliveryRow.created_at.desc(), WebhookDeliveryRow.id.desc()).limit(limit))).all()
            found = [_delivery(d, kind) for d, kind in rows]
            attempts: dict[str, list[Attempt]] = {d.id: [] for d in found}
            if found:
                for a in await session.scalars(select(WebhookAttemptRow).where(
                        WebhookAttemptRow.delivery_id.in_(attempts)).order_by(WebhookAttemptRow.number)):
                    attempts[a.delivery_id].append(Attempt(a.number, a.started_at, a.latency_ms, a.status_code,
                                                           a.response_excerpt, a.error))
        return [(d, attempts[d.id]) for d in found]

    async def attempts(self, delivery_id: str) -> list[Attempt]:
        async with self._tx() as session:
            rows = await session.scalars(select(WebhookAttemptRow).where(
                WebhookAttemptRow.delivery_id == delivery_id).order_by(WebhookAttemptRow.number))
            return [Attempt(a.number, a.started_at, a.latency_ms, a.status_code, a.response_excerpt, a.error)
                    for a in rows]

    async def redeliver(self, endpoint_id: str, delivery_id: str, *, now: float, deadline: float) -> Delivery | None:
        """A new due delivery of the same event to the same endpoint (whatever the old one's state)."""
        new = new_id("dlv")
        async with self._tx() as session:
            old = await session.get(WebhookDeliveryRow, delivery_id)
            if old is None or old.endpoint_id != endpoint_id:
                return None
            session.add(WebhookDeliveryRow(id=new, endpoint_id=endpoint_id, event_id=old.event_id, status="pending",
                                           attempts=0, created_at=now, next_attempt_at=now, deadline_at=deadline,
                                           redelivery_of=delivery_id))
            await session.flush()
            row = (await session.execute(_DELIVERY.where(WebhookDeliveryRow.id == new))).one()
            return _delivery(*row)

    async def prune(self, before: float) -> int:
        """Forget finished deliveries created before `before`, and events no delivery refers to."""
        async with self._tx() as session:
            done = await session.execute(delete(WebhookDeliveryRow).where(
                WebhookDeliveryRow.status != "pending", WebhookDeliveryRow.created_at < before))
            await session.execute(delete(WebhookEventRow).where(
                WebhookEventRow.id.not_in(select(WebhookDeliveryRow.event_id))))
            return int(done.rowcount)  # type: ignore[attr-defined]


_DELIVERY = select(WebhookDeliveryRow, WebhookEventRow.type).join(
    WebhookEventRow, WebhookEventRow.id == WebhookDeliveryRow.event_id)


def _insert_ignoring_duplicates(session: AsyncSession) -> Callable[..., Any]:
    """The dialect's INSERT, which has `on_conflict_do_nothing` (SQLite and PostgreSQL spell it alike)."""
    return sqlite_insert if session.get_bind().dialect.name == "sqlite" else postgresql_insert


def _delivery(row: WebhookDeliveryRow, event_type: str) -> Delivery:
    return Delivery(id=row.id, endpoint_id=row.endpoint_id, event_id=row.event_id, event_type=event_type,
                    status=row.status, attempts=row.attempts, created_at=row.created_at,  # type: ignore[arg-type]
                    next_attempt_at=row.next_attempt_at, deadline_at=row.deadline_at,
                    redelivery_of=row.redelivery_of)


async def _secrets(session: AsyncSession, endpoint_id: str, now: float) -> list[str]:
    rows = await session.scalars(select(WebhookSecretRow.secret).where(
        WebhookSecretRow.endpoint_id == endpoint_id,
        (WebhookSecretRow.expires_at.is_(None)) | (WebhookSecretRow.expires_at > now),
    ).order_by(WebhookSecretRow.created_at.desc(), WebhookSecretRow.id.desc()))
    return list(rows)


async def _endpoint(session: AsyncSession, row: WebhookEndpointRow, now: float) -> Endpoint:
    active = await _secrets(session, row.id, now)
    return Endpoint(id=row.id, project_id=row.project_id, url=row.url, event_types=tuple(row.event_types),
                    enabled=row.enabled, created_at=row.created_at, secret_hint=mask(active[0]) if active else "",
                    secrets_active=len(active))
