"""The delivery loop: lease due deliveries from the store, POST each signed event, record the attempt.

At most `concurrency` POSTs run at once, each bounded by `timeout_s` in total. A 2xx answer delivers;
anything else (3xx included: redirects are never followed, so a receiver cannot bounce the engine to
another address) is retried on the `RetrySchedule` until its deadline, then failed. The loop sleeps until
the next delivery is due or the recorder wakes it; it owns its POST tasks, and cancelling it gives
their leases back so they are retried at once by the next run (at least once, never lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

from portway.engine.webhooks import signature
from portway.engine.webhooks.records import Attempt, Lease
from portway.engine.webhooks.schedule import RetrySchedule
from portway.engine.webhooks.store import StoreError, WebhookStore

log = logging.getLogger("portway.engine.webhooks")

RESPONSE_EXCERPT_BYTES = 1024
_MAX_IDLE_S = 30.0  # look at the store at least this often, whatever it said
_STORE_RETRY_S = 1.0  # after a database failure


class Dispatcher:
    """Run with `await dispatcher.run()` (until cancelled); `wake()` when new deliveries were recorded."""

    def __init__(self, store: WebhookStore, *, schedule: RetrySchedule, timeout_s: float, concurrency: int,
                 lease_s: float, user_agent: str, clock: Callable[[], float] = time.time,
                 draw: Callable[[], float] = random.random) -> None:
        self._store = store
        self._schedule = schedule
        self._timeout_s = timeout_s
        self._concurrency = concurrency
        self._lease_s = lease_s
        self._user_agent = user_agent
        self._clock = clock
        self._draw = draw
        # Leases are held in this process's name; a killed process's leases expire by themselves.
        self.owner = f"{os.getpid()}-{secrets.token_hex(6)}"
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        inflight: set[asyncio.Task[None]] = set()

        def done(task: asyncio.Task[None]) -> None:
            inflight.discard(task)
            self._wake.set()

        try:
            async with httpx.AsyncClient(timeout=self._timeout_s, follow_redirects=False, trust_env=False,
                                         headers={"user-agent": self._user_agent}) as client, \
                    asyncio.TaskGroup() as group:
                while True:
                    self._wake.clear()
                    free = self._concurrency - len(inflight)
                    try:
                        leases, wakeup = await self._store.lease(now=self._clock(), limit=free,
                                                                 lease_s=self._lease_s, owner=self.owner)
                    except StoreError:
                        log.exception("cannot read due webhook deliveries; retrying")
                        leases, wakeup = [], self._clock() + _STORE_RETRY_S
                    for lease in leases:
                        task = group.create_task(self._attempt(client, lease))
                        inflight.add(task)
                        task.add_done_callback(done)
                    if len(inflight) >= self._concurrency or wakeup is None:
                        delay = _MAX_IDLE_S
                    else:
                        delay = min(max(wakeup - self._clock(), 0.01), _MAX_IDLE_S)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
        finally:
            with contextlib.suppress(StoreError):
                await self._store.release(self.owner)

    async def _attempt(self, client: httpx.AsyncClient, lease: Lease) -> None:
        """One POST and its record. Never raises (the task group would cancel its siblings)."""
        try:
            attempt = await self._post(client, lease)
            number = attempt.number
            if attempt.status_code is not None and 200 <= attempt.status_code < 300:
                await self._store.finish(lease, self.owner, attempt, status="delivered", next_attempt_at=None)
                return
            now = self._clock()
            retry_at = self._schedule.next_attempt(failures=number, now=now, deadline=lease.deadline_at,
                                                   draw=self._draw())
            await self._store.finish(lease, self.owner, attempt, status="pending" if retry_at else "failed",
                               next_attempt_at=retry_at)
            outcome = f"retry in {retry_at - now:.1f}s" if retry_at else "failed for good"
            log.info("webhook delivery %s (event %s) to %s: attempt %d: %s; %s", lease.delivery_id, lease.event_id,
                     urlsplit(lease.url).netloc, number, attempt.error or f"HTTP {attempt.status_code}", outcome)
        except Exception:
            log.exception("webhook delivery %s: cannot record the attempt", lease.delivery_id)

    async def _post(self, client: httpx.AsyncClient, lease: Lease) -> Attempt:
        number = lease.failures + 1
        started = self._clock()
        keys = await self._store.secrets(lease.endpoint_id, now=started)
        headers = signature.delivery_headers(lease.body, keys, int(started), event_id=lease.event_id,
                                             event_type=lease.event_type, webhook_id=lease.endpoint_id,
                                             delivery_id=lease.delivery_id)
        clock = time.monotonic()
        status: int | None = None
        excerpt: str | None = None
        error: str | None = None
        try:
            async with asyncio.timeout(self._timeout_s), \
                    client.stream("POST", lease.url, content=lease.body, headers=headers) as response:
                status = response.status_code
                excerpt = await _excerpt(response)
        except TimeoutError:
            error = f"no answer within {self._timeout_s:g}s"
        except httpx.HTTPError as failure:
            error = f"{type(failure).__name__}: {failure}" if str(failure) else type(failure).__name__
        if status is not None and 300 <= status < 400:
            error = "redirects are not followed"
        latency_ms = round((time.monotonic() - clock) * 1000, 1)
        return Attempt(number=number, started_at=started, latency_ms=latency_ms, status_code=status,
                       response_excerpt=excerpt, error=error)


async def _excerpt(response: httpx.Response) -> str:
    """The start of the response body, at most RESPONSE_EXCERPT_BYTES (the rest is never read)."""
    kept = bytearray()
    async for chunk in response.aiter_raw():
        kept += chunk[: RESPONSE_EXCERPT_BYTES - len(kept)]
        if len(kept) >= RESPONSE_EXCERPT_BYTES:
            break
    return kept.decode("utf-8", "replace")
