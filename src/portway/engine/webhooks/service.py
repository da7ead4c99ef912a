"""`WebhookService`: the engine's webhooks as one part — the store, the recorder that turns bus events into
stored deliveries, the dispatcher task, and the operations the Engine API offers.

Lifecycle (server.py): `open()` before the engine accepts, `attach(bus)`, `start()` once the loop runs;
at shutdown `stop()` after the sessions closed (their last events are recorded, then delivered by the
next run if the dispatcher had no time), and `close()` last.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from portway.engine.events import EngineEvent, EventBus
from portway.engine.webhooks.dispatcher import Dispatcher
from portway.engine.webhooks.records import DEFAULT_PROJECT, DELIVERABLE_EVENTS, Attempt, Delivery, Endpoint
from portway.engine.webhooks.schedule import RetrySchedule
from portway.engine.webhooks.secret import new_secret
from portway.engine.webhooks.store import WebhookStore

log = logging.getLogger("portway.engine.webhooks")

_PRUNE_EVERY_S = 3600.0


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """The resolved `webhooks` configuration section (seconds throughout)."""

    schedule: RetrySchedule = field(default_factory=RetrySchedule)
    timeout_s: float = 10.0
    concurrency: int = 4
    lease_s: float = 60.0
    rotation_grace_s: float = 86_400.0
    retention_s: float = 30 * 86_400.0


class WebhookService:
    """Endpoints, recording and delivery. Admin methods are synchronous (they run inside API handlers)."""

    def __init__(self, store: WebhookStore, settings: WebhookSettings, *, version: str,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self.settings = settings
        self._clock = clock
        self.dispatcher = Dispatcher(store, schedule=settings.schedule, timeout_s=settings.timeout_s,
                                     concurrency=settings.concurrency, lease_s=settings.lease_s,
                                     user_agent=f"portway-webhooks/{version}", clock=clock)
        self._unsubscribe: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def open(cls, path: Path, settings: WebhookSettings, *, version: str) -> WebhookService:
        """Open (or create) the database; StoreError when it cannot be."""
        return cls(WebhookStore.open(path), settings, version=version)

    def attach(self, bus: EventBus) -> None:
        """Record every deliverable event from now on."""
        self._unsubscribe = bus.subscribe(self._record)

    def start(self) -> None:
        """Start delivering (needs a running loop); the service owns the task."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        """Cancel the dispatcher and wait for it (its in-flight leases are given back). Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})

    def close(self) -> None:
        """Stop recording and close the database (after `stop()`)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._store.close()

    async def _run(self) -> None:
        prune = asyncio.get_running_loop().create_task(self._prune_forever(), name="webhook-prune")
        try:
            await self.dispatcher.run()
        except Exception:
            log.exception("the webhook dispatcher stopped; deliveries resume at the next start")
        finally:
            prune.cancel()
            await asyncio.wait({prune})

    async def _prune_forever(self) -> None:
        while True:
            try:
                if removed := self._store.prune(self._clock() - self.settings.retention_s):
                    log.info("forgot %d finished webhook deliveries older than the retention", removed)
            except Exception:
                log.exception("cannot prune old webhook deliveries")
            await asyncio.sleep(_PRUNE_EVERY_S)

    def _record(self, event: EngineEvent) -> None:
        """Bus subscriber: store the event and its deliveries before the publisher goes on. Never raises
        (the bus would drop us); a failure here is logged loudly, since that event cannot be delivered."""
        if event.type not in DELIVERABLE_EVENTS:
            return
        try:
            targets = self._store.subscribers(event.project_id or DEFAULT_PROJECT, event.type)
            if not targets:
                return
            now = self._clock()
            self._store.record(event_id=event.id, event_type=event.type, body=event.to_json().encode(),
                               endpoint_ids=targets, now=now, deadline=now + self.settings.schedule.horizon_s)
        except Exception:
            log.exception("cannot record event %s (%s) for webhooks: it will not be delivered", event.id,
                          event.type)
            return
        self.dispatcher.wake()

    # ---- what the Engine API offers

    def create(self, *, url: str, event_types: Sequence[str], enabled: bool,
               secret: str | None) -> tuple[Endpoint, str]:
        """A new endpoint in the default project and its secret (generated unless given)."""
        secret = secret or new_secret()
        endpoint = self._store.create_endpoint(project_id=DEFAULT_PROJECT, url=url, event_types=event_types,
                                               enabled=enabled, secret=secret, now=self._clock())
        return endpoint, secret

    def endpoints(self) -> list[Endpoint]:
        return self._store.endpoints(DEFAULT_PROJECT, now=self._clock())

    def endpoint(self, endpoint_id: str) -> Endpoint | None:
        return self._store.endpoint(endpoint_id, now=self._clock())

    def delete(self, endpoint_id: str) -> bool:
        return self._store.delete_endpoint(endpoint_id)

    def rotate(self, endpoint_id: str, *, secret: str | None,
               grace_s: float | None) -> tuple[Endpoint, str] | None:
        """Give the endpoint a new secret; the old ones sign too for `grace_s` (default from settings)."""
        secret = secret or new_secret()
        grace = self.settings.rotation_grace_s if grace_s is None else grace_s
        if not self._store.rotate(endpoint_id, secret=secret, now=self._clock(), grace_s=grace):
            return None
        endpoint = self.endpoint(endpoint_id)
        return (endpoint, secret) if endpoint is not None else None

    def deliveries(self, endpoint_id: str, *, limit: int) -> list[tuple[Delivery, list[Attempt]]]:
        return [(d, self._store.attempts(d.id)) for d in self._store.deliveries(endpoint_id, limit=limit)]

    def redeliver(self, endpoint_id: str, delivery_id: str) -> Delivery | None:
        """Deliver the same event again as a new delivery, with a fresh horizon."""
        now = self._clock()
        delivery = self._store.redeliver(endpoint_id, delivery_id, now=now,
                                         deadline=now + self.settings.schedule.horizon_s)
        if delivery is not None:
            self.dispatcher.wake()
        return delivery
