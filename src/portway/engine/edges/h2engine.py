"""The engine's own host on an HTTP/2 visitor connection (`H2Edge`'s part, as a mixin): the Engine API
(api/routes.py) on its own stream, a body bounded by `MAX_BODY_BYTES`, and signaling watches (SSE, WebSocket
over extended CONNECT) that share the connection with tunnel exchanges. An async route's answer is awaited in a
task while the connection's other streams go on. The attributes and methods declared below are `H2Edge`'s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import h2.connection
import h2.errors
import h2.events
import h2.exceptions

from portway.engine import summaries
from portway.engine.api import routes as api_routes
from portway.engine.api.inventory import EngineInventory
from portway.engine.context import EngineContext
from portway.engine.edges import h2rules
from portway.engine.edges.watchstream import H2Watch, over_capacity

access_log = logging.getLogger("portway.access")


class H2EngineHost:
    """Answering for the engine's own host; mixed into `H2Edge`."""

    ctx: EngineContext
    conn: h2.connection.H2Connection
    scheme: bytes
    source_ip: str | None
    transport: asyncio.Transport | None
    closed: bool
    _local: dict[int, tuple[h2rules.H2Request, bytearray]]
    _watches: dict[int, H2Watch]

    if TYPE_CHECKING:  # H2Edge's and H2Shell's; stubs here would shadow them at run time
        def flush(self) -> None: ...
        def _answer(self, stream_id: int, status: int, detail: str, accept: bytes | None, host: str | None = None,
                    ) -> None: ...
        def _respond(self, stream_id: int, status: int, body: bytes, content_type: str,
                     extra: list[tuple[bytes, bytes]] | None, *, cache: str = "no-store") -> None: ...

    def _local_data(self, event: h2.events.DataReceived) -> None:
        """Body bytes of an engine API request, bounded; past the bound the stream gets a 413."""
        self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        request, body = self._local[event.stream_id]
        body += event.data or b""
        if len(body) > api_routes.MAX_BODY_BYTES:
            del self._local[event.stream_id]
            self._answer(event.stream_id, 413, "the request body is too large for the engine API",
                         request.header(b"accept"))

    def _answer_locally(self, stream_id: int, request: h2rules.H2Request, body: bytes) -> None:
        """The Engine API on its own stream; an async route's answer (`Pending`) is awaited in a task and
        sent on the stream when ready, while the connection's other streams go on (multiplexing)."""
        started = time.monotonic()
        websocket = request.protocol == b"websocket"  # RFC 8441: an extended CONNECT stands for the GET
        method = "GET" if websocket else request.method.decode("latin-1")
        answer = api_routes.answer(EngineInventory(self.ctx), method, request.path.decode("latin-1"),
                                   request.header(b"authorization"), secure=self.scheme == b"https", body=body,
                                   source_ip=self.source_ip)
        if isinstance(answer, api_routes.WatchRequest):
            full = over_capacity(self.ctx)
            if full is None and (answer.transport == "websocket") == websocket and \
                    (websocket or request.method == b"GET"):
                self._start_watch(stream_id, answer)
                return
            answer = full or api_routes.error(426 if answer.transport == "websocket" else 400,
                                      "use an extended CONNECT with :protocol websocket" if not websocket
                                      else "an SSE stream is a plain GET")
        asked = (method, request.path, started)
        if not isinstance(answer, api_routes.ApiResponse):
            self.ctx.spawn(self._answer_later(stream_id, answer, asked))
            return
        self._send_answer(stream_id, answer, asked)

    async def _answer_later(self, stream_id: int, pending: api_routes.Pending,
                            asked: tuple[str, bytes, float]) -> None:
        try:
            answer = await pending
        finally:
            pending.close()  # a no-op once awaited; spares a "never awaited" warning when cancelled first
        if not self.closed and self.transport is not None and not self.transport.is_closing():
            self._send_answer(stream_id, answer, asked)  # a stream reset meanwhile is skipped by _respond

    def _send_answer(self, stream_id: int, answer: api_routes.ApiResponse, asked: tuple[str, bytes, float]) -> None:
        extra = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in answer.headers]
        self._respond(stream_id, answer.status, answer.body, answer.content_type, extra, cache=answer.cache)
        self.ctx.counters.count(self.ctx.counters.http_responses, answer.status)
        method, path, started = asked  # the engine's own API, as HTTP/1.1 logs it (a query token redacted)
        access_log.info("tunnel=- src=%s proto=h2 %s %s status=%d bytes_out=%d ms=%.1f", self.source_ip, method,
                        summaries.redact_target(path)[:256].decode("latin-1"), answer.status, len(answer.body),
                        (time.monotonic() - started) * 1000)

    def _start_watch(self, stream_id: int, request: api_routes.WatchRequest) -> None:
        headers = [(b":status", b"200"), (b"cache-control", b"no-store"), (b"server", b"portway")]
        if request.transport == "sse":
            headers.append((b"content-type", b"text/event-stream; charset=utf-8"))
        self.conn.send_headers(stream_id, headers)
        self.ctx.counters.count(self.ctx.counters.http_responses, 200)
        watch = self._watches[stream_id] = H2Watch(self.ctx, request, stream_id, self._watch_send, self._watch_end)
        watch.start()
        self.flush()

    def _watch_send(self, stream_id: int, data: bytes) -> int:
        """Send what the windows allow of a watch's bytes; returns how many went."""
        sent = 0
        try:
            while sent < len(data):
                window = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
                if window <= 0:
                    break
                self.conn.send_data(stream_id, data[sent:sent + window])
                sent += min(window, len(data) - sent)
        except h2.exceptions.ProtocolError:
            return len(data)  # the stream is gone: drop what it would have carried
        self.flush()
        return sent

    def _watch_end(self, stream_id: int) -> None:
        self._watches.pop(stream_id, None)
        try:
            self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.NO_ERROR)
        except h2.exceptions.ProtocolError:
            return
        self.flush()
