"""HTTP/1.1 connections to a tunnel's upstream, over agent streams, reused between requests.

An HTTP/2 visitor multiplexes many requests on one connection, while the upstream speaks HTTP/1.1:
each request needs an upstream connection of its own, and opening one costs a stream (a new agent
connection and TLS handshake). Idle ones are therefore pooled per tunnel and reused, and closed
after `timeouts.http_idle_seconds`. Each connection parses responses (httptools) so it knows where
one ends and whether the upstream keeps the connection open.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import httptools

from portway.engine.registry import Tunnel
from portway.pipe import Pipe

log = logging.getLogger("portway.engine.http")

MAX_IDLE_PER_TUNNEL = 32
MAX_RESPONSE_HEAD_BYTES = 64 * 1024
MAX_RESPONSE_HEADERS = 200


class ResponseSink(Protocol):
    """Where an upstream connection delivers the response to the request it is serving."""

    def response_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None: ...

    def response_body(self, data: bytes) -> None: ...

    def response_end(self) -> None: ...

    def response_failed(self, reason: str) -> None: ...

    def upstream_writable(self, writable: bool) -> None: ...


class UpstreamH1(Pipe):
    """One agent stream carrying HTTP/1.1 to the upstream, serving one request at a time."""

    def __init__(self, tunnel: Tunnel, pool: UpstreamPool) -> None:
        super().__init__()
        self.tunnel = tunnel
        self.pool = pool
        self.sink: ResponseSink | None = None
        self.idle_timer: asyncio.TimerHandle | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._head_only = False
        self._done = True
        self._until_close = False
        self._upgrade = False  # the request asked to switch protocols (WebSocket)
        self._connect = False  # the request is a CONNECT: a 2xx turns the connection into a tunnel
        self.raw = False  # switched: bytes relayed as they are, both ways, until either side closes
        self.request_complete = False  # the whole request was written (set by the request's leg)
        self.reusable = False

    @classmethod
    def take(cls, agent: Pipe, tunnel: Tunnel, pool: UpstreamPool) -> UpstreamH1:
        """Become the protocol of a fresh agent stream (nothing has been sent on it yet)."""
        upstream = cls(tunnel, pool)
        upstream.take_over(agent)
        return upstream

    # ---- one exchange ----

    def start(self, sink: ResponseSink, *, head_only: bool, upgrade: bool = False, connect: bool = False) -> None:
        """Serve a new request: responses now go to `sink`. With `upgrade`, a 101 switches to raw bytes;
        with `connect`, a 2xx does (RFC 9110 §9.3.6)."""
        self.sink = sink
        self._upgrade = upgrade
        self._connect = connect
        self._parser = httptools.HttpResponseParser(self)
        self._headers = []
        self._head_bytes = 0
        self._head_only = head_only
        self._done = False
        self._until_close = False
        self.request_complete = False
        self.reusable = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send_eof(self) -> None:
        """The visitor finished sending on a switched connection: half-close toward the upstream."""
        if self.transport is not None and not self.transport.is_closing():
            if self.transport.can_write_eof():
                self.transport.write_eof()
            else:
                self.transport.close()

    def pause(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def detach(self) -> None:
        """The request was abandoned (visitor reset): this connection's framing is now unknown."""
        self.sink = None
        self.close()

    # ---- transport events ----

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        if self.raw:
            if self.sink is not None:
                self.sink.response_body(data)
            return
        if self._done or self._parser is None:
            log.info("tunnel %s: upstream sent bytes outside a response; closing it", self.tunnel.id)
            self.abort()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._switched(data[int(upgrade.args[0]) if upgrade.args else len(data):])
        except httptools.HttpParserError:
            self._fail("the service behind this tunnel sent an invalid HTTP/1.1 response")

    def eof_received(self) -> bool:
        if self.raw:
            self._finish(reusable=False)
            return False
        if not self._done:
            if self._until_close and self.sink is not None:
                self._finish(reusable=False)
            else:
                self._fail("the service behind this tunnel closed the connection before responding in full")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.pool.forget(self)
        if not self._done:
            self._fail("the connection to the service behind this tunnel was lost")

    def pause_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_writable(False)

    def resume_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_writable(True)

    # ---- httptools callbacks ----

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value)
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        if self._done:  # a second response in the same read, with no request for it: a broken upstream
            log.info("tunnel %s: upstream sent a response nobody asked for; closing it", self.tunnel.id)
            self.abort()
            return
        status = self._parser.get_status_code()
        if self._head_bytes > MAX_RESPONSE_HEAD_BYTES or len(self._headers) > MAX_RESPONSE_HEADERS:
            self._fail("the service behind this tunnel sent a response head that is too large")
            return
        if status == 101:
            if not self._upgrade:
                self._fail("the service behind this tunnel switched protocols unasked")
                return
            self.raw = True
            if self.sink is not None:
                self.sink.response_head(status, self._headers)
            return
        if 100 <= status < 200:
            self._headers = []  # interim response (100 Continue, 103 Early Hints): not relayed
            return
        if self._connect and 200 <= status < 300:
            self.raw = True  # what follows the head is the tunnel's bytes (on_body passes them on)
            if self.sink is not None:
                self.sink.response_head(status, self._headers)
            return
        names = {name.lower() for name, _ in self._headers}
        self._until_close = b"content-length" not in names and b"transfer-encoding" not in names
        if self.sink is not None:
            self.sink.response_head(status, self._headers)
        if self._head_only or status in (204, 304):
            self._finish(reusable=self._parser.should_keep_alive() and not self._until_close)

    def on_body(self, body: bytes) -> None:
        # After a 2xx to CONNECT the parser takes the tunnel's bytes for a close-delimited body: pass them on.
        if self.sink is not None and not self._done:
            self.sink.response_body(bytes(body))

    def on_message_complete(self) -> None:
        assert self._parser is not None
        if self._done or self.raw or 100 <= self._parser.get_status_code() < 200:
            return
        self._finish(reusable=self._parser.should_keep_alive())

    # ---- helpers ----

    def _switched(self, first: bytes) -> None:
        """The parser stopped after a 101: what follows the head is the new protocol's."""
        if not self.raw:  # set by on_headers_complete only when the request asked to upgrade
            self._fail("the service behind this tunnel switched protocols unasked")
        elif first and self.sink is not None:
            self.sink.response_body(first)

    def _finish(self, *, reusable: bool) -> None:
        self._done = True
        # Reusable only at a clean boundary both ways: an upstream that answered before reading the whole
        # request (a 401 to an upload, a smuggling attempt) still expects its bytes, and a refused upgrade
        # or CONNECT leaves the connection in an unknown state.
        self.reusable = (reusable and not self.closed and self.request_complete
                         and not self._upgrade and not self._connect)
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.response_end()
        self.pool.release(self)

    def _fail(self, reason: str) -> None:
        self._done = True
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.response_failed(reason)
        self.abort()


class UpstreamPool:
    """Idle upstream connections per tunnel, most recently used first."""

    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        self._idle: dict[Tunnel, list[UpstreamH1]] = {}

    def take_idle(self, tunnel: Tunnel) -> UpstreamH1 | None:
        idle = self._idle.get(tunnel)
        while idle:
            upstream = idle.pop()
            if upstream.idle_timer is not None:
                upstream.idle_timer.cancel()
                upstream.idle_timer = None
            if not upstream.closed and upstream.transport is not None and not upstream.transport.is_closing():
                return upstream
        return None

    def release(self, upstream: UpstreamH1) -> None:
        """Keep `upstream` for the next request of its tunnel, or close it if it cannot serve one."""
        if not upstream.reusable or upstream.closed:
            upstream.close()
            return
        idle = self._idle.setdefault(upstream.tunnel, [])
        if upstream in idle:
            return
        upstream.resume()  # a response paused for a slow visitor may have left reading off
        if len(idle) >= MAX_IDLE_PER_TUNNEL:
            upstream.close()
            return
        # Reading stays on while idle: an upstream that closes is noticed (and forgotten) at once, and one
        # that sends bytes out of turn is closed (see data_received).
        upstream.idle_timer = asyncio.get_running_loop().call_later(self.idle_s, upstream.close)
        idle.append(upstream)

    def forget(self, upstream: UpstreamH1) -> None:
        if upstream.idle_timer is not None:
            upstream.idle_timer.cancel()
            upstream.idle_timer = None
        idle = self._idle.get(upstream.tunnel)
        if idle is not None and upstream in idle:
            idle.remove(upstream)
            if not idle:
                del self._idle[upstream.tunnel]

    def idle_count(self, tunnel: Tunnel) -> int:
        return len(self._idle.get(tunnel, ()))

    def close(self) -> None:
        """Shutdown: idle connections are not streams worth draining."""
        for idle in list(self._idle.values()):
            for upstream in list(idle):
                upstream.close()
        self._idle.clear()
