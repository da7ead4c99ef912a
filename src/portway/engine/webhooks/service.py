"""`WebhookService`: the engine's webhooks as one part — the tables in the control-plane store, the recorder
that turns bus events into stored deliveries, the dispatcher task, and the operations the Engine API offers.

Lifecycle (server.py): `await open(store, ...)` before the engine accepts, `attach(bus)`, `start()`; at
shutdown `stop()` after the sessions closed (their last events are stored, then delivered by the next run
if the dispatcher had no time), and `detach()` before the store closes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from portway.engine.events import EventBus
from portway.engine.webhooks.dispatcher import Dispatcher
from portway.engine.webhooks.recorder import Recorder
from portway.engine.webhooks.records import Attempt, Delivery, Endpoint
from portway.engine.webhooks.schedule import RetrySchedule
from portway.engine.webhooks.secret import new_secret
from portway.engine.webhooks.store import WebhookStore

if TYPE_CHECKING:
    from portway.engine.store import Store

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
    refresh_s: float = 10.0  # endpoints changed by another engine on the same database are seen this late


class WebhookService:
    """Endpoints, recording and delivery. API methods take the caller's project: an endpoint, its
    deliveries and its events belong to one project, and a caller only reaches its own."""

    def __init__(self, store: WebhookStore, settings: WebhookSettings, *, version: str,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self.settings = settings
        self._clock = clock
        self.dispatcher = Dispatcher(store, schedule=settings.schedule, timeout_s=settings.timeout_s,
                                     concurrency=settings.concurrency, lease_s=settings.lease_s,
                                     user_agent=f"portway-webhooks/{version}", clock=clock)
        self.recorder = Recorder(store, horizon_s=settings.schedule.horizon_s, clock=clock,
                                 stored=self.dispatcher.wake)
        self._bus: EventBus | None = None
        self.announce: Callable[[], Awaitable[None]] | None = None  # tells other engines (store/changes.py)
        self._unsubscribe: Callable[[], None] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def open(cls, store: Store, settings: WebhookSettings, *, version: str) -> WebhookService:
        """The service over the store's webhook tables, with the enabled endpoints loaded."""
        service = cls(WebhookStore(store), settings, version=version)
        await service.recorder.load()
        return service

    def attach(self, bus: EventBus) -> None:
        """Record every deliverable event from now on, and hold agents' answers until it is stored."""
        self._bus = bus
        self._unsubscribe = bus.subscribe(self.recorder.on_event)
        bus.hold_answers(self.recorder.after_recorded)

    def start(self) -> None:
        """Start recording and delivering (needs a running loop); the service owns the tasks."""
        loop = asyncio.get_running_loop()
        self.recorder.start()
        self._tasks = [loop.create_task(self._deliver(), name="webhook-dispatcher"),
                       loop.create_task(self._maintain(), name="webhook-maintenance")]

    async def stop(self) -> None:
        """Store what is queued, then cancel the dispatcher (its in-flight leases are given back). Idempotent."""
        await self.recorder.stop()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def detach(self) -> None:
        """Stop recording (after `stop()`); the store itself is the engine's to close."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._bus is not None:
            self._bus.hold_answers(None)
            self._bus = None

    async def _deliver(self) -> None:
        try:
            await self.dispatcher.run()
        except Exception:
            log.exception("the webhook dispatcher stopped; deliveries resume at the next start")

    async def _maintain(self) -> None:
        """Re-read the enabled endpoints every `refresh_s` (another engine may have changed them) and forget
        finished deliveries past the retention every hour."""
        last_prune = 0.0
        while True:
            await asyncio.sleep(self.settings.refresh_s)
            try:
                await self.recorder.load()
            except Exception:
                log.exception("cannot re-read the webhook endpoints")
            if self._clock() - last_prune >= _PRUNE_EVERY_S:
                last_prune = self._clock()
                try:
                    if removed := await self._store.prune(last_prune - self.settings.retention_s):
                        log.info("forgot %d finished webhook deliveries older than the retention", removed)
                except Exception:
                    log.exception("cannot prune old webhook deliveries")

    # ---- what the Engine API offers

    async def create(self, project_id: str, *, url: str, event_types: Sequence[str], enabled: bool,
                     secret: str | None) -> tuple[Endpoint, str]:
        """A new endpoint of the project and its secret (generated unless given)."""
        secret = secret or new_secret()
        endpoint = await self._store.create_endpoint(project_id=project_id, url=url, event_types=event_types,
                                                     enabled=enabled, secret=secret, now=self._clock())
        await self._changed()
        return endpoint, secret

    async def endpoints(self, project_id: str) -> list[Endpoint]:
        return await self._store.endpoints(project_id, now=self._clock())

    async def endpoint(self, project_id: str, endpoint_id: str) -> Endpoint | None:
        return await self._store.endpoint(endpoint_id, project_id=project_id, now=self._clock())

    async def delete(self, project_id: str, endpoint_id: str) -> bool:
        await self.recorder.drain()  # what was queued for it is stored (then deleted with it), not orphaned
        deleted = await self._store.delete_endpoint(endpoint_id, project_id=project_id)
        await self._changed()
        return deleted

    async def _changed(self) -> None:
        """Endpoints changed: record with the new set here at once, and on the other engines soon."""
        await self.recorder.load()
        if self.announce is not None:
            await self.announce()

    async def rotate(self, project_id: str, endpoint_id: str, *, secret: str | None,
                     grace_s: float | None) -> tuple[Endpoint, str] | None:
        """Give the endpoint a new secret; the old ones sign too for `grace_s` (default from settings)."""
        secret = secret or new_secret()
        grace = self.settings.rotation_grace_s if grace_s is None else grace_s
        if not await self._store.rotate(endpoint_id, project_id=project_id, secret=secret, now=self._clock(),
                                        grace_s=grace):
            return None
        endpoint = await self.endpoint(project_id, endpoint_id)
        return (endpoint, secret) if endpoint is not None else None

    async def deliveries(self, endpoint_id: str, *, limit: int) -> list[tuple[Delivery, list[Attempt]]]:
        return await self._store.deliveries(endpoint_id, limit=limit)

    async def redeliver(self, endpoint_id: str, delivery_id: str) -> Delivery | None:
        """Deliver the same event again as a new delivery, with a fresh horizon."""
        now = self._clock()
        delivery = await self._store.redeliver(endpoint_id, delivery_id, now=now,
                                               deadline=now + self.settings.schedule.horizon_s)
        if delivery is not None:
            self.dispatcher.wake()
        return delivery
