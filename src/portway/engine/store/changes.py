"""`ChangeFeed`: engines sharing one PostgreSQL tell each other when the control plane changed, so a revocation,
a disabled user, a policy or a webhook endpoint made on one engine applies on the others at once rather than
at their next periodic refresh (`store.refresh_seconds`, which stays as the safety net).

PostgreSQL LISTEN/NOTIFY on one channel: an engine that changed something sends `NOTIFY portway_control,
'<engine id>'`; every engine keeps one connection LISTENing and, on a notification from another engine, runs
its reload callback (debounced: a burst of changes costs one reload). The listening connection is watched and
re-opened when it drops, with a reload after (notifications missed meanwhile). On SQLite there is nothing to
do: one engine per file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from portway.engine.store.store import Store

log = logging.getLogger("portway.engine.store")

CHANNEL = "portway_control"
_RECONNECT_S = 2.0
_SETTLE_S = 0.05  # notifications arriving this close together cause one reload


class ChangeFeed:
    """`start(on_change)` once the engine runs; `announce()` after each change; `stop()` at shutdown."""

    def __init__(self, store: Store, *, check_s: float = 5.0) -> None:
        self._store = store
        self._check_s = check_s
        self.engine_id = secrets.token_hex(8)  # whose notification it is (an engine ignores its own)
        self.enabled = store.engine.dialect.name == "postgresql"
        self._on_change: Callable[[], Awaitable[None]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._reload: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()  # set while a LISTEN connection is up (tests wait on it)

    def start(self, on_change: Callable[[], Awaitable[None]]) -> None:
        self._on_change = on_change
        if self.enabled:
            self._task = asyncio.get_running_loop().create_task(self._listen_forever(), name="store-change-feed")

    async def stop(self) -> None:
        for task in (self._task, self._reload):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._reload = None

    async def announce(self) -> None:
        """Tell the other engines (never raises: they still catch up at their periodic refresh)."""
        if not self.enabled:
            return
        try:
            async with self._store.engine.connect() as connection:
                await connection.execute(text("SELECT pg_notify(:channel, :sender)"),
                                         {"channel": CHANNEL, "sender": self.engine_id})
                await connection.commit()
        except (SQLAlchemyError, OSError) as failure:
            log.warning("cannot tell other engines about a control-plane change (%s); they apply it at their "
                        "next refresh", failure)

    def _heard(self, _connection: Any, _pid: int, _channel: str, sender: str) -> None:
        if sender != self.engine_id:
            self._schedule()

    def _schedule(self) -> None:
        if self._reload is None or self._reload.done():
            self._reload = asyncio.get_running_loop().create_task(self._run_reload(), name="store-change-reload")

    async def _run_reload(self) -> None:
        await asyncio.sleep(_SETTLE_S)
        assert self._on_change is not None
        try:
            await self._on_change()
        except Exception:
            log.exception("cannot apply a control-plane change made by another engine; retrying at the next refresh")

    async def _listen_forever(self) -> None:
        first = True
        while True:
            try:
                async with self._store.engine.connect() as connection:
                    raw = (await connection.get_raw_connection()).driver_connection
                    assert raw is not None
                    await raw.add_listener(CHANNEL, self._heard)
                    try:
                        self.listening.set()
                        if not first:  # what changed while nobody listened
                            self._schedule()
                        first = False
                        while not raw.is_closed():
                            await asyncio.sleep(self._check_s)
                            await raw.execute("SELECT 1")  # notices a dead server, not only a closed socket
                    finally:
                        if not raw.is_closed():
                            with contextlib.suppress(Exception):
                                await raw.remove_listener(CHANNEL, self._heard)
            except asyncio.CancelledError:
                raise
            except Exception as failure:  # any loss of the connection: try again
                if self.listening.is_set() or first:
                    log.warning("lost the connection listening for other engines' changes (%s); reconnecting",
                                failure)
            self.listening.clear()
            await asyncio.sleep(_RECONNECT_S)
