"""Carrying signaling watches (api/watch.py) on visitor connections: an HTTP/1.1 connection handed over
whole (SSE response or WebSocket after a 101), or one HTTP/2 stream (SSE, or WebSocket over extended
CONNECT). Both bound what a slow client can make the engine hold: past `limits.watch_buffer_bytes` unsent,
the watch ends with a reason instead of growing memory; `limits.max_watchers` bounds how many run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

from portway.engine.api.inventory import EngineInventory
from portway.engine.api.routes import ApiResponse, WatchRequest, error
from portway.engine.api.watch import SLOW_CONSUMER, Watch
from portway.engine.auth import Principal
from portway.engine.context import EngineContext

log = logging.getLogger("portway.engine.watch")

SSE_KEEPALIVE_S = 15.0
WS_PING_S = 20.0
WS_SILENCE_S = 60.0  # a WebSocket client that answers no ping for this long is gone
CLOSE_GRACE_S = 5.0
KERNEL_SEND_BUFFER = 64 * 1024
SSE_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-store\r\n"
            b"X-Accel-Buffering: no\r\nServer: portway\r\nConnection: close\r\n\r\n")


def over_capacity(ctx: EngineContext) -> ApiResponse | None:
    """A 503 when `limits.max_watchers` signaling streams are already open."""
    if len(ctx.watchers) >= ctx.config.limits.max_watchers:
        log.warning("signaling stream refused: %d open (limits.max_watchers)", len(ctx.watchers))
        return error(503, "too many signaling streams are open; try again later", (("Retry-After", "5"),))
    return None


def enlist(ctx: EngineContext, adapter: H1Watch | H2Watch) -> None:
    """Count a running watch (and whether it wants summaries: the edges check that count)."""
    if adapter not in ctx.watchers:
        ctx.watchers.add(adapter)
        ctx.summary_watchers += adapter.watch.request.summaries


def discharge(ctx: EngineContext, adapter: H1Watch | H2Watch) -> None:
    """Undo `enlist`, once, however many ways the watch ends."""
    if adapter in ctx.watchers:
        ctx.watchers.discard(adapter)
        ctx.summary_watchers -= adapter.watch.request.summaries


class _Ticker:
    """Keepalives (SSE comments, WebSocket pings) and the WebSocket silence limit for one watch."""

    def __init__(self, watch: Watch, on_silence: Callable[[], None]) -> None:
        self._watch = watch
        self._on_silence = on_silence
        self._loop = asyncio.get_running_loop()
        self.heard_at = self._loop.time()
        self._handle = self._loop.call_later(self._period, self._tick)

    @property
    def _period(self) -> float:
        return SSE_KEEPALIVE_S if self._watch.ws is None else WS_PING_S

    def _tick(self) -> None:
        if self._watch.closed:
            return
        if self._watch.ws is not None and self._loop.time() - self.heard_at > WS_SILENCE_S:
            self._on_silence()
            return
        self._watch.keepalive()
        self._handle = self._loop.call_later(self._period, self._tick)

    def cancel(self) -> None:
        self._handle.cancel()


class H1Watch(asyncio.Protocol):
    """An HTTP/1.1 visitor connection given over to one watch until either side ends it."""

    def __init__(self, ctx: EngineContext, request: WatchRequest, source: str | None) -> None:
        self.ctx = ctx
        self.source = source
        self.transport: asyncio.Transport | None = None
        self.watch = Watch(request, EngineInventory(ctx), ctx.events, self._write)
        self._ticker: _Ticker | None = None

    def take_over(self, transport: asyncio.Transport, head: bytes) -> None:
        """Answer with `head` (the SSE response or the 101), then the snapshot, then events."""
        self.transport = transport
        transport.set_protocol(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:  # the kernel's share of a slow client's backlog stays small too
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_SEND_BUFFER)
        transport.write(head)
        enlist(self.ctx, self)
        self.watch.start()
        self._ticker = _Ticker(self.watch, lambda: self.close("no answer to pings"))
        log.info("watch opened: %s from %s by %s", self.watch.request.transport, self.source,
                 self.watch.request.principal.subject)

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        if transport.get_write_buffer_size() > self.ctx.config.limits.watch_buffer_bytes and not self.watch.closed:
            log.warning("watch from %s dropped: %s", self.source, SLOW_CONSUMER)
            self.watch.fail(SLOW_CONSUMER)
            self._end()

    def data_received(self, data: bytes) -> None:
        if self._ticker is not None:
            self._ticker.heard_at = asyncio.get_running_loop().time()
        self.watch.received(data)
        if self.watch.closed:
            self._end()

    def eof_received(self) -> bool:
        return False  # the client is done: close

    def connection_lost(self, exc: Exception | None) -> None:
        self.watch.stop()
        if self._ticker is not None:
            self._ticker.cancel()
        discharge(self.ctx, self)
        log.info("watch closed: %s from %s after %d events", self.watch.request.transport, self.source,
                 self.watch.sent_events)

    @property
    def principal(self) -> Principal:
        return self.watch.request.principal

    def close(self, reason: str) -> None:
        self.watch.fail(reason)
        self._end()

    def _end(self) -> None:
        """Close after what is queued is written; abort if the client never reads it."""
        discharge(self.ctx, self)  # finished, even while its last bytes drain
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.close()
        asyncio.get_running_loop().call_later(CLOSE_GRACE_S, transport.abort)


class H2Watch:
    """One HTTP/2 stream carrying a watch. The edge calls `window_opened`, `received` and `lost`."""

    def __init__(self, ctx: EngineContext, request: WatchRequest, stream_id: int,
                 send: Callable[[int, bytes], int], end: Callable[[int], None]) -> None:
        """`send(stream_id, data)` sends what the windows allow and returns how much; `end(stream_id)` resets
        the stream."""
        self.ctx = ctx
        self.stream_id = stream_id
        self._send, self._end = send, end
        self._pending = bytearray()
        self.watch = Watch(request, EngineInventory(ctx), ctx.events, self._write)
        self._ticker: _Ticker | None = None

    def start(self) -> None:
        enlist(self.ctx, self)
        self.watch.start()
        self._ticker = _Ticker(self.watch, lambda: self.close("no answer to pings"))

    def _write(self, data: bytes) -> None:
        self._pending += data
        self.window_opened()
        if len(self._pending) > self.ctx.config.limits.watch_buffer_bytes and not self.watch.closed:
            log.warning("HTTP/2 watch dropped: %s", SLOW_CONSUMER)
            self.watch.fail(SLOW_CONSUMER)
            self.finish()

    def window_opened(self) -> None:
        if self._pending:
            sent = self._send(self.stream_id, bytes(self._pending))
            del self._pending[:sent]

    def received(self, data: bytes) -> None:
        if self._ticker is not None:
            self._ticker.heard_at = asyncio.get_running_loop().time()
        self.watch.received(data)
        if self.watch.closed:
            self.finish()

    @property
    def principal(self) -> Principal:
        return self.watch.request.principal

    def close(self, reason: str) -> None:
        self.watch.fail(reason)
        self.finish()

    def finish(self) -> None:
        """End the stream (the reason, if it fit in the window, went first) and leave the bus."""
        self.lost()
        self._end(self.stream_id)

    def lost(self) -> None:
        self.watch.stop()
        if self._ticker is not None:
            self._ticker.cancel()
        discharge(self.ctx, self)
