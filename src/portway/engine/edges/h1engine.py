"""The engine's own host on an HTTP/1.1 visitor connection (`HttpEdge`'s part, as a mixin): the Engine API
(api/routes.py), its health endpoint, and the hand-over of a connection to a signaling watch.

Most answers are immediate. An async route's answer (`Pending`) is awaited in a task; while any is
outstanding, reading pauses and later answers queue behind it (`_answering`), so pipelined requests are still
answered in order. The attributes and methods declared below are `HttpEdge`'s (edges/http1.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import httptools

from portway.engine.api import routes as api_routes
from portway.engine.api.inventory import EngineInventory
from portway.engine.context import EngineContext
from portway.engine.edges import h2rules
from portway.engine.edges.watchstream import SSE_HEAD, H1Watch, over_capacity

from .h1rules import RequestHead
from .pages import response

_ANSWERING = 32  # a pause reason (http1.py has the others): an engine API answer is being worked out


class _Asked(NamedTuple):
    """What an engine API answer needs from its request once the parser has moved on."""

    keep: bool
    method: bytes
    url: bytes
    started: float


class EngineHost:
    """Answering for the engine's own host; mixed into `HttpEdge`."""

    ctx: EngineContext
    scheme: str
    source_ip: str | None
    transport: asyncio.Transport | None
    bytes_in: int
    _loop: asyncio.AbstractEventLoop
    _parser: httptools.HttpRequestParser
    _head: RequestHead
    _url: bytes
    _started: float
    _local_body: bytearray
    _watching: H1Watch | None
    _idle_timer: asyncio.TimerHandle | None
    _failed: bool
    _closing: bool
    _eof: bool
    _rx_mark: int
    _deferred: bytes | None
    _answering: asyncio.Future[None] | None
    _count_status: Callable[[int], None]

    if TYPE_CHECKING:  # HttpEdge's and Pipe's; stubs here would shadow them at run time
        def _pause(self, reason: int) -> None: ...
        def _resume(self, reason: int) -> None: ...
        def _write_and_close(self, page: bytes) -> None: ...
        def close(self) -> None: ...
        def _log_line(self, method: bytes, target: bytes, status: int, response_bytes: int, started: float, *,
                      error: str | None = None, request_bytes: int = 0) -> None: ...

    def _answer_locally(self) -> None:
        """The engine's own host: the Engine API (api/routes.py) and its health endpoint.

        Most answers are immediate. An async route's answer (`Pending`) is awaited in a task; while any is
        outstanding, reading pauses and later answers queue behind it (`_answering`), so pipelined
        requests are still answered in order."""
        assert self.transport is not None
        keep = self._parser.should_keep_alive()
        method = self._parser.get_method()
        answer = api_routes.answer(EngineInventory(self.ctx), method.decode("latin-1"),
                                   self._url.decode("latin-1"), self._head.authorization_value(),
                                   secure=self.scheme == "https", body=bytes(self._local_body),
                                   source_ip=self.source_ip)
        self._local_body.clear()
        if isinstance(answer, api_routes.WatchRequest):
            if self._answering is not None:
                answer = api_routes.error(421, "a signaling stream needs a connection of its own")
            else:
                head = over_capacity(self.ctx) or self._watch_head(answer)
                if isinstance(head, bytes):
                    self._watching = H1Watch(self.ctx, answer, self.source_ip)
                    if self._idle_timer is not None:
                        self._idle_timer.cancel()
                    self._count_status(101 if answer.transport == "websocket" else 200)
                    self._failed = True  # this parser is done: bytes after the head belong to the watch
                    self._watching.take_over(self.transport, head)
                    return
                answer = head
        asked = _Asked(keep, method, self._url, self._started)
        if isinstance(answer, api_routes.ApiResponse) and self._answering is None:
            self._write_local(answer, asked)
            return
        previous, done = self._answering, self._loop.create_future()
        self._answering = done
        self._pause(_ANSWERING)
        self.ctx.spawn(self._answer_later(previous, done, answer, asked))

    async def _answer_later(self, previous: asyncio.Future[None] | None, done: asyncio.Future[None],
                            answer: api_routes.ApiResponse | api_routes.Pending, asked: _Asked) -> None:
        """Wait for the answers owed before this one, then for this one, and write it."""
        try:
            if previous is not None:
                await previous
            response = answer if isinstance(answer, api_routes.ApiResponse) else await answer
            if not self._closing and self.transport is not None and not self.transport.is_closing():
                self._write_local(response, asked)
        finally:
            if not isinstance(answer, api_routes.ApiResponse):
                answer.close()  # a no-op once awaited; spares a "never awaited" warning when cancelled first
            done.set_result(None)
            if self._answering is done:
                self._answering = None
                if self._deferred is not None:  # an error page that waited for these answers
                    self._write_and_close(self._deferred)
                elif self._eof:  # the visitor half-closed after its requests: all are answered now
                    self.close()
                else:
                    self._resume(_ANSWERING)

    def _write_local(self, answer: api_routes.ApiResponse, asked: _Asked) -> None:
        assert self.transport is not None
        extra = "".join(f"{name}: {value}\r\n" for name, value in answer.headers)
        page = response(answer.status, answer.body, answer.content_type, close=not asked.keep, extra=extra,
                        cache=answer.cache)
        self.transport.write(page)
        self._count_status(answer.status)
        self._log_line(asked.method, asked.url, answer.status, len(page), asked.started)
        self._rx_mark = self.bytes_in
        if not asked.keep:
            self.transport.close()

    def _watch_head(self, request: api_routes.WatchRequest) -> bytes | api_routes.ApiResponse:
        """The response head that starts a watch: SSE's 200, or the 101 of a valid WebSocket upgrade."""
        upgrade = (self._head.upgrade or b"").lower()
        if request.transport == "sse":
            return SSE_HEAD if not upgrade else api_routes.error(400, "an SSE stream is a plain GET")
        key = version = None
        for line in self._head.lines:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
            elif name.strip().lower() == b"sec-websocket-version":
                version = value.strip()
        if upgrade != b"websocket" or not key:
            return api_routes.error(426, "this endpoint needs a WebSocket upgrade", (("Upgrade", "websocket"),))
        if version != b"13":
            return api_routes.error(426, "only WebSocket version 13 is supported", (("Sec-WebSocket-Version", "13"),))
        return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: %s\r\nServer: portway\r\n\r\n" % h2rules.websocket_accept(key))

