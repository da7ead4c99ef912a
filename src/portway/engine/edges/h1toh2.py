"""HTTP/1.1 visitors of an h2c tunnel: a stand-in for the agent stream that speaks HTTP/1.1 on one side
and HTTP/2 to the upstream on the other.

`HttpEdge` relays a visitor's (already checked and rewritten) HTTP/1.1 requests to "the agent" and
follows the HTTP/1.1 responses that come back. For an h2c tunnel that agent stream is an
`H1OverH2Transport`: each request it is written becomes a stream of a pooled upstream HTTP/2 connection
(h2upstream), and each response is written back as HTTP/1.1 — in request order, chunked when the
upstream gave no length. The edge itself does not know the difference.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import httptools

from portway.engine.broker import StreamBroker, StreamFailed
from portway.engine.edges import h2rules
from portway.engine.edges.h2upstream import H2Leg, H2UpstreamPool, h2c_connection
from portway.engine.edges.pages import REASONS
from portway.engine.registry import Tunnel
from portway.pipe import Pipe

log = logging.getLogger("portway.engine.http")


class _Response:
    """One request's response, serialised as HTTP/1.1; held until the ones before it are written."""

    def __init__(self, bridge: H1OverH2Transport, headers: list[tuple[bytes, bytes]], *, head_only: bool) -> None:
        self.bridge = bridge
        self.headers = headers  # the request, as HTTP/2 headers
        self.head_only = head_only
        self.leg: H2Leg | None = None
        self.held: list[bytes] = []
        self.chunked = False
        self.websocket_key: bytes | None = None  # an HTTP/1.1 WebSocket upgrade, relayed as extended CONNECT
        self.done = False

    def emit(self, data: bytes) -> None:
        if self.bridge.responses and self.bridge.responses[0] is self:
            self.bridge.deliver(data)
        else:
            # Waiting behind an earlier response: stop acknowledging the upstream's DATA, so its HTTP/2
            # window (not this buffer) bounds what is held.
            self.held.append(data)
            if self.leg is not None:
                self.leg.pause()

    # ---- H2Sink ----

    def response_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        if self.websocket_key is not None and status == 200:  # RFC 8441 accepted: the HTTP/1.1 switch
            lines = [b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n",
                     b"sec-websocket-accept: %s\r\n" % h2rules.websocket_accept(self.websocket_key)]
            lines += [b"%s: %s\r\n" % (k, v) for k, v in headers if k.startswith(b"sec-websocket-")]
            self.emit(b"".join(lines) + b"\r\n")
            return
        names = {name for name, _ in headers}
        self.chunked = not self.head_only and status not in (204, 304) and b"content-length" not in names
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, "Status").encode())]
        lines += [b"%s: %s\r\n" % (name, value) for name, value in headers if name not in h2rules.HOP_BY_HOP]
        if self.chunked:
            lines.append(b"transfer-encoding: chunked\r\n")
        self.emit(b"".join(lines) + b"\r\n")

    def response_body(self, data: bytes) -> None:
        if not self.head_only and data:
            self.emit(h2rules.chunk(data) if self.chunked else data)

    def response_trailers(self, headers: list[tuple[bytes, bytes]]) -> None:
        """Trailers have no safe HTTP/1.1 form for every client: dropped (RFC 9110 §6.5.1 allows it)."""

    def response_end(self) -> None:
        if self.chunked:
            self.emit(h2rules.LAST_CHUNK)
        self.done = True
        self.bridge.advance()
        if self.websocket_key is not None:  # the upstream ended the WebSocket: so does the connection
            self.bridge.close()

    def response_failed(self, reason: str) -> None:
        log.info("tunnel %s: h2c upstream: %s", self.bridge.tunnel.id, reason)
        self.bridge.close()  # the edge sees its agent stream end and answers 502 or cuts the response

    def upstream_writable(self, writable: bool) -> None:
        self.bridge.writable(writable)


class H1OverH2Transport(asyncio.Transport):
    """The transport `HttpEdge` writes HTTP/1.1 requests into; see the module docstring."""

    def __init__(self, broker: StreamBroker, pool: H2UpstreamPool, tunnel: Tunnel, source_ip: str | None,
                 track: Callable[[Pipe], None]) -> None:
        super().__init__()
        self.broker, self.pool, self.tunnel, self.source_ip, self.track = broker, pool, tunnel, source_ip, track
        self.protocol: asyncio.Protocol | None = None
        self.responses: deque[_Response] = deque()
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._current: _Response | None = None
        # Request events not yet given to an upstream leg, in order: (response, "head"/"body"/"end", data).
        self._pending: deque[tuple[_Response, str, bytes]] = deque()
        self._connecting: asyncio.Task[None] | None = None
        self._switched: _Response | None = None  # the WebSocket this connection became
        self._closing = False
        self._paused = False

    # ---- asyncio.Transport ----

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def is_closing(self) -> bool:
        return self._closing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing:
            return
        if self._switched is not None:  # WebSocket frames, after the 101
            self._queue(self._switched, "body", bytes(data))
            return
        try:
            self._parser.feed_data(bytes(data))
        except httptools.HttpParserUpgrade as upgrade:
            response = self._current
            if response is None or response.websocket_key is None:
                self._refuse_upgrade()
                return
            self._switched = response
            rest = bytes(data)[int(upgrade.args[0]) if upgrade.args else len(data):]
            if rest:
                self._queue(response, "body", rest)
        except httptools.HttpParserError:
            self._refuse_upgrade()

    def _refuse_upgrade(self) -> None:
        # The edge only sends checked requests: what fails here is an upgrade HTTP/2 cannot carry (CONNECT, or
        # an Upgrade other than websocket).
        self._answer_locally(501, b"this tunnel's upstream speaks HTTP/2 only: this upgrade cannot be relayed")

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        self.close()

    def pause_reading(self) -> None:
        self._paused = True
        for response in self.responses:
            if response.leg is not None:
                response.leg.pause()

    def resume_reading(self) -> None:
        self._paused = False
        head = self.responses[0] if self.responses else None  # held ones resume in turn (advance)
        if head is not None and head.leg is not None:
            head.leg.resume()

    def is_reading(self) -> bool:
        return not self._paused

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass  # request bodies are bounded by the upstream legs' queues (h2upstream.QUEUED_BODY_BYTES)

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._connecting is not None:
            self._connecting.cancel()
        for response in self.responses:
            if response.leg is not None and not response.done:
                response.leg.detach()
        self.responses.clear()
        if self.protocol is not None:
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    # ---- httptools callbacks (the edge's rewritten requests) ----

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        method = self._parser.get_method()
        if method == b"CONNECT":  # no HTTP/2 translation here: refused (501) when the parser stops after it
            self._current = None
            return
        headers, websocket_key = h2rules.h2_request_from_h1(method, self._url, self._headers,
                                                            upgrade=self._parser.should_upgrade())
        response = _Response(self, headers, head_only=method == b"HEAD")
        response.websocket_key = websocket_key
        self.responses.append(response)
        self._current = response
        self._queue(response, "head", b"")

    def on_body(self, body: bytes) -> None:
        if self._current is not None:
            self._queue(self._current, "body", bytes(body))

    def on_message_complete(self) -> None:
        # A WebSocket's stream stays open for its frames.
        if self._current is not None and self._current.websocket_key is None:
            self._queue(self._current, "end", b"")

    # ---- toward the upstream ----

    def _queue(self, response: _Response, kind: str, data: bytes) -> None:
        self._pending.append((response, kind, data))
        self._drain()

    def _drain(self) -> None:
        """Hand request events to upstream legs in order; a new request waits for a connection with room."""
        while self._pending and not self._closing:
            response, kind, data = self._pending[0]
            if kind == "head":
                upstream = self.pool.with_room(self.tunnel)
                if upstream is None:
                    if self._connecting is None:
                        self._connecting = asyncio.get_running_loop().create_task(self._connect())
                    return
                response.leg = H2Leg(upstream, response.headers, end_on_head=False)
                response.leg.begin(response)
            elif response.leg is not None:
                if kind == "body":
                    response.leg.body(data)
                else:
                    response.leg.end()
            self._pending.popleft()

    async def _connect(self) -> None:
        try:
            await h2c_connection(self.broker, self.pool, self.tunnel, self.source_ip, self.track)
        except StreamFailed as error:
            log.info("tunnel %s: no h2c upstream for %s: %s", self.tunnel.id, self.source_ip, error.reason)
            self._connecting = None
            self.close()
            return
        self._connecting = None
        self._drain()

    # ---- toward the edge ----

    def deliver(self, data: bytes) -> None:
        if self.protocol is not None and not self._closing:
            self.protocol.data_received(data)

    def advance(self) -> None:
        """Write out held responses in request order once the one before them is complete."""
        while self.responses and self.responses[0].done:
            self.responses.popleft()
            if self.responses:
                nxt = self.responses[0]
                for data in nxt.held:
                    self.deliver(data)
                nxt.held.clear()
                if nxt.leg is not None and not self._paused:
                    nxt.leg.resume()

    def writable(self, writable: bool) -> None:
        if self.protocol is not None:
            (self.protocol.resume_writing if writable else self.protocol.pause_writing)()

    def _answer_locally(self, status: int, detail: bytes) -> None:
        body = detail + b"\n"
        self.deliver(b"HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
                     % (status, REASONS.get(status, "Error").encode(), len(body), body))
        self.close()


def bridge(broker: StreamBroker, pool: H2UpstreamPool, tunnel: Tunnel, source_ip: str | None,
           track: Callable[[Pipe], None]) -> Pipe:
    """A `Pipe` on an `H1OverH2Transport`, ready for `HttpEdge` to take over like an agent stream."""
    pipe = Pipe()
    transport = H1OverH2Transport(broker, pool, tunnel, source_ip, track)
    transport.set_protocol(pipe)
    pipe.transport = transport
    return pipe
