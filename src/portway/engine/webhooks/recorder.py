"""`Recorder`: turns bus events into stored webhook deliveries, and holds the engine's answers to agents
until the events their action caused are stored.

The bus is synchronous (an event is seen by every subscriber before `publish` returns) while the store is
async, so recording has two halves:
- `on_event` (bus subscriber): looks the event's project up in an in-memory copy of the enabled endpoints
  and queues it if some endpoint wants it — no I/O, nothing queued for events nobody subscribed to;
- a writer task commits everything queued in one transaction (group commit: a burst of tunnel creations
  costs one write, not one each), then releases the answers waiting for it, in the order they were held.

`after_recorded(callback)` runs `callback` once every event queued so far is stored — at once when
nothing is queued, the common case. Callbacks run in registration order, so the answers on one control
channel keep their order. A write that keeps failing is logged (those events are not delivered) and the
answers are released anyway: an unavailable database must not stall every agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

from portway.engine.events import EngineEvent
from portway.engine.webhooks.records import DELIVERABLE_EVENTS, PendingEvent, Subscription
from portway.engine.webhooks.store import StoreError, WebhookStore

log = logging.getLogger("portway.engine.webhooks")

WRITE_RETRIES_S = (0.05, 0.2, 1.0)  # waits between attempts at one batch before giving it up
MAX_BATCH = 500


class Recorder:
    """Start with `start()` on the loop; `drain()` stores what is queued; `stop()` ends the writer."""

    def __init__(self, store: WebhookStore, *, horizon_s: float, clock: Callable[[], float],
                 stored: Callable[[], None]) -> None:
        self._store = store
        self._horizon_s = horizon_s
        self._clock = clock
        self._stored = stored  # told after each commit (the dispatcher wakes)
        self._subscriptions: dict[str, list[Subscription]] = {}
        self._loading = asyncio.Lock()
        self._queue: deque[tuple[int, PendingEvent]] = deque()
        self._queued = 0  # events ever queued
        self._done = 0  # events ever stored (or given up on)
        self._waiting: deque[tuple[int, Callable[[], None]]] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    async def load(self) -> None:
        """Read the enabled endpoints again (after a change here, at start, and periodically for changes
        made by another engine on the same database)."""
        async with self._loading:  # one at a time: the copy swapped in last is the newest (credentials.py)
            found: dict[str, list[Subscription]] = {}
            for subscription in await self._store.subscriptions():
                found.setdefault(subscription.project_id, []).append(subscription)
            self._subscriptions = found

    def on_event(self, event: EngineEvent) -> None:
        if event.type not in DELIVERABLE_EVENTS or event.project_id is None:
            return
        targets = tuple(s.endpoint_id for s in self._subscriptions.get(event.project_id, ())
                        if event.type in s.event_types)
        if not targets:
            return
        self._queued += 1
        self._queue.append((self._queued, PendingEvent(event.id, event.type, event.to_json().encode(), targets)))
        self._idle.clear()
        self._wake.set()

    def after_recorded(self, callback: Callable[[], None]) -> None:
        if self._done >= self._queued:
            callback()
        else:
            self._waiting.append((self._queued, callback))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._write_forever(), name="webhook-recorder")

    async def drain(self) -> None:
        """Wait until everything queued so far is stored (or given up on)."""
        if self._task is not None and not self._task.done():
            await self._idle.wait()

    async def stop(self) -> None:
        """Store what is queued, then end the writer."""
        await self.drain()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._release(self._queued)  # nothing may stay held after the writer is gone

    async def _write_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_BATCH))]
                await self._write([event for _, event in batch])
                self._release(batch[-1][0])
            self._idle.set()

    async def _write(self, batch: list[PendingEvent]) -> None:
        for wait in (*WRITE_RETRIES_S, None):
            now = self._clock()
            try:
                await self._store.record(batch, now=now, deadline=now + self._horizon_s)
            except Exception as failure:  # StoreError, or a bug: either way the answers must not hang
                if wait is not None:
                    log.warning("cannot store %d webhook event(s) yet (%s); retrying", len(batch), failure)
                    await asyncio.sleep(wait)
                    continue
                log.error("cannot store %d webhook event(s) (%s): they will not be delivered: %s", len(batch),
                          failure, ", ".join(f"{e.event_id} ({e.event_type})" for e in batch),
                          exc_info=not isinstance(failure, StoreError))
                return
            self._stored()
            return

    def _release(self, done: int) -> None:
        self._done = max(self._done, done)
        while self._waiting and self._waiting[0][0] <= self._done:
            _, callback = self._waiting.popleft()
            try:
                callback()
            except Exception:
                log.exception("an answer held for webhook recording failed")
