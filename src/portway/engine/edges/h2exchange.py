"""One request of an HTTP/2 visitor on its way to the upstream: the exchange (the visitor's stream and the
upstream's response sink) and the leg that carries the request on one kind of upstream connection —
`H1Leg` for HTTP/1.1 here, `h2upstream.H2Leg` for HTTP/2. `H2Edge` (h2.py) owns the exchanges and
the HTTP/2 connection they share."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from portway.engine import summaries
from portway.engine.edges import h2rules
from portway.engine.edges.pool import UpstreamH1
from portway.engine.registry import Tunnel

if TYPE_CHECKING:
    from portway.engine.edges.h2 import H2Edge

# Response bytes held per request beyond the visitor's window before the upstream stops being read.
RESPONSE_BUFFER_BYTES = 256 * 1024


@dataclass(eq=False)
class H2Exchange:
    """One HTTP/2 stream ⇄ one request on an upstream connection; the upstream's response sink."""

    edge: H2Edge
    stream_id: int
    tunnel: Tunnel
    request: h2rules.H2Request
    head: bytes  # the HTTP/1.1 request head, for an HTTP/1.1 upstream
    chunked: bool
    started: float = field(default_factory=time.monotonic)
    leg: RequestLeg | None = None
    request_ended: bool = False
    queued: list[bytes] = field(default_factory=list)  # request body bytes before the upstream is there
    unacked: int = 0  # request body bytes not yet acknowledged to the visitor (flow control)
    writable: bool = True
    pending: list[bytes] = field(default_factory=list)  # response bytes waiting for the visitor's window
    pending_bytes: int = 0
    websocket_key: bytes | None = None  # an extended CONNECT relayed as an HTTP/1.1 WebSocket upgrade
    h2_headers: list[tuple[bytes, bytes]] | None = None  # the request for an h2c upstream
    status: int = 0
    response_bytes: int = 0
    trailers: list[tuple[bytes, bytes]] | None = None
    response_ended: bool = False
    finished: bool = False
    switched: bool = False  # a WebSocket/CONNECT the upstream accepted: the stream is a byte relay now
    draft: summaries.Draft | None = None  # its stream summary so far, while a watch wants summaries
    request_bytes: int = 0  # counted only for the summary (while `draft` is set)

    @property
    def holding(self) -> bool:
        """A WebSocket/CONNECT not yet accepted: its bytes wait (unacknowledged), and are dropped if the
        upstream refuses — they must never reach it as HTTP."""
        return (self.websocket_key is not None or self.request.connect) and not self.switched

    # ---- request side ----

    def request_body(self, data: bytes, flow_length: int) -> None:
        if self.draft is not None:
            self.request_bytes += len(data)
        if data:
            if self.leg is None or self.holding:
                self.queued.append(data)
            else:
                self.leg.body(data)
        self.unacked += flow_length
        self.edge.acknowledge(self)

    def end_request(self) -> None:
        self.request_ended = True
        if self.leg is not None and not self.holding:
            self.leg.end()

    def attach(self, leg: RequestLeg) -> None:
        self.leg = leg
        if self.draft is not None:
            self.draft.established = time.monotonic()
        leg.begin(self)
        if not self.holding:
            self._release_queued()
        self.edge.acknowledge(self)

    def _release_queued(self) -> None:
        assert self.leg is not None
        for data in self.queued:
            self.leg.body(data)
        self.queued.clear()
        if self.request_ended:
            self.leg.end()

    def _switch(self) -> None:
        """The upstream accepted the WebSocket/CONNECT: what the visitor sent meanwhile goes now."""
        self.switched = True
        self._release_queued()
        self.edge.acknowledge(self)

    # ---- ResponseSink ----

    def response_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        if self.draft is not None:
            self.draft.response_headers = summaries.header_subset(summaries.h2_headers(headers))
        if status == 101:
            accept = next((v.strip() for k, v in headers if k.lower() == b"sec-websocket-accept"), None)
            assert self.websocket_key is not None
            if accept != h2rules.websocket_accept(self.websocket_key):
                self.edge.fail_exchange(self, 502, "the service behind this tunnel answered the WebSocket "
                                        "handshake wrongly")
                return
            self.status = 200
            self.edge.send_head(self, h2rules.websocket_response_headers(headers))
            self._switch()
            return
        if self.websocket_key is not None and 200 <= status < 300:  # RFC 8441 would read it as accepted
            self.edge.fail_exchange(self, 502, "the service behind this tunnel answered the WebSocket upgrade "
                                    "without switching protocols")
            return
        self.status = status
        self.edge.send_head(self, h2rules.h2_response_headers(status, headers))
        if self.request.connect and 200 <= status < 300:
            self._switch()
        elif self.holding:
            self.queued.clear()  # refused: the held bytes are dropped (their credit is returned at the end)

    def response_body(self, data: bytes) -> None:
        self.pending.append(data)
        self.pending_bytes += len(data)
        self.response_bytes += len(data)
        self.edge.send_pending(self)
        if self.pending_bytes > RESPONSE_BUFFER_BYTES and self.leg is not None:
            self.leg.pause()

    def response_trailers(self, headers: list[tuple[bytes, bytes]]) -> None:
        """Trailers from an HTTP/2 upstream (gRPC status): sent after the last DATA, ending the stream."""
        self.trailers = [(k, v) for k, v in headers if not k.startswith(b":")]

    def response_end(self) -> None:
        self.response_ended = True
        self.edge.send_pending(self)

    def response_failed(self, reason: str) -> None:
        self.edge.fail_exchange(self, 502, reason)

    def upstream_writable(self, writable: bool) -> None:
        self.writable = writable
        self.edge.acknowledge(self)


class RequestLeg(Protocol):
    """An exchange's request as it travels to one kind of upstream connection."""

    def begin(self, exchange: H2Exchange) -> None: ...

    def body(self, data: bytes) -> None: ...

    def end(self) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def detach(self) -> None: ...


class H1Leg:
    """The request on an HTTP/1.1 upstream connection: the head, then the body (chunked when the
    visitor gave no length); for a WebSocket, raw bytes once the upstream switched protocols."""

    def __init__(self, upstream: UpstreamH1) -> None:
        self.upstream = upstream
        self.exchange: H2Exchange | None = None

    def begin(self, exchange: H2Exchange) -> None:
        self.exchange = exchange
        self.upstream.start(exchange, head_only=exchange.request.method == b"HEAD",
                            upgrade=exchange.websocket_key is not None, connect=exchange.request.connect)
        self.upstream.send(exchange.head)

    def body(self, data: bytes) -> None:
        assert self.exchange is not None
        self.upstream.send(h2rules.chunk(data) if self.exchange.chunked else data)

    def end(self) -> None:
        assert self.exchange is not None
        if self.exchange.chunked:
            self.upstream.send(h2rules.LAST_CHUNK)
        elif (self.exchange.websocket_key is not None or self.exchange.request.connect) and self.upstream.raw:
            self.upstream.send_eof()
        if self._serving():
            self.upstream.request_complete = True  # only then may the connection go back to the pool

    def _serving(self) -> bool:
        """Still this exchange's connection (it may be back in the pool, serving someone else)."""
        return self.upstream.sink is self.exchange

    def pause(self) -> None:
        if self._serving():
            self.upstream.pause()

    def resume(self) -> None:
        if self._serving():
            self.upstream.resume()

    def detach(self) -> None:
        if self._serving():
            self.upstream.detach()
