"""An optional observer of the streams `Tunnel.forward_to` relays: opened, closed (with byte counts), and for
http tunnels the request line and response status line of each exchange.

Cost on the relay: the pipes count bytes anyway. The sniffers look only at the first chunks of each message
head — one bounded line (`httphead.MAX_LINE_BYTES`) — and unhook themselves in between: a request tap until
the request line is read, then a response tap until the status line is read, then a request tap again for
the next exchange (the engine keeps upstream streams alive and reuses them, so looking at the start of the
stream alone would miss most requests). Bodies are never scanned. A line that is not HTTP/1.x (h2c, TLS
upstreams, a body that was not where a head was expected) ends the sniffing for that stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from portway.agent.httphead import FirstLine, RequestLine, StatusLine, parse_request_line, parse_status_line
from portway.pipe import Pipe

log = logging.getLogger("portway.agent.observe")


class ForwardedStream:
    """One relayed stream as an observer sees it. `bytes_in` (visitor → service) and `bytes_out` (service →
    visitor) are live counters while the stream runs."""

    def __init__(self, stream_id: str, source_ip: str | None, visitor: Pipe, upstream: Pipe, now: float) -> None:
        self.id = stream_id
        self.source_ip = source_ip
        self.opened_at = now
        self.exchanges = 0
        self._visitor = visitor
        self._upstream = upstream

    @property
    def bytes_in(self) -> int:
        return self._visitor.bytes_in

    @property
    def bytes_out(self) -> int:
        return self._upstream.bytes_in


@dataclass(slots=True)
class HttpExchange:
    """One request on a stream: its request line, then (once seen) the status line and how long it took."""

    request: RequestLine
    started_at: float
    status: StatusLine | None = None
    duration_s: float | None = None  # request line seen → status line seen


class StreamObserver:
    """Override what you need. Methods run on the event loop in the relay's path: keep them quick and
    non-raising (an exception is logged and the observer is otherwise ignored for that event)."""

    def stream_opened(self, stream: ForwardedStream) -> None:
        """A visitor's stream reached the local service."""

    def request_seen(self, stream: ForwardedStream, exchange: HttpExchange) -> None:
        """A request line was read (http tunnels); `exchange` is updated in place when its response comes."""

    def response_seen(self, stream: ForwardedStream, exchange: HttpExchange) -> None:
        """`exchange.status` and `exchange.duration_s` were set (http tunnels)."""

    def stream_closed(self, stream: ForwardedStream) -> None:
        """Both directions ended; the byte counters are final."""


def watch(observer: StreamObserver, stream_id: str, source_ip: str | None, visitor: Pipe, upstream: Pipe, *,
          http: bool) -> None:
    """Report the spliced pair `visitor` (the engine data connection) ⇄ `upstream` to `observer`."""
    loop = asyncio.get_running_loop()
    stream = ForwardedStream(stream_id, source_ip, visitor, upstream, loop.time())
    _call(observer.stream_opened, stream)
    open_ends = [visitor, upstream]

    def ended(pipe: Pipe) -> None:
        if pipe in open_ends:
            open_ends.remove(pipe)
            if not open_ends:
                _call(observer.stream_closed, stream)

    if http:
        _HttpTaps(observer, stream, visitor, upstream, loop)
    visitor.notify_close(ended)
    upstream.notify_close(ended)


class _HttpTaps:
    """Alternating request and response taps for one stream (see the module docstring)."""

    def __init__(self, observer: StreamObserver, stream: ForwardedStream, visitor: Pipe, upstream: Pipe,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.observer, self.stream, self.loop = observer, stream, loop
        self.visitor, self.upstream = visitor, upstream
        self.exchange: HttpExchange | None = None
        self.line = FirstLine()
        visitor.set_tap(self.request_data)

    def request_data(self, data: bytes) -> None:
        if not self.line.feed(data):
            return
        self.visitor.set_tap(None)
        request = parse_request_line(self.line.line) if self.line.line is not None else None
        if request is None:
            return
        self.exchange = HttpExchange(request, self.loop.time())
        self.stream.exchanges += 1
        _call(self.observer.request_seen, self.stream, self.exchange)
        self.line = FirstLine()
        self.upstream.set_tap(self.response_data)

    def response_data(self, data: bytes) -> None:
        if not self.line.feed(data):
            return
        self.upstream.set_tap(None)
        status = parse_status_line(self.line.line) if self.line.line is not None else None
        if status is None or self.exchange is None:
            return
        self.line = FirstLine()
        if status.status < 200:  # interim (100 Continue): the final status line is still to come
            self.upstream.set_tap(self.response_data)
            return
        self.exchange.status, self.exchange.duration_s = status, self.loop.time() - self.exchange.started_at
        _call(self.observer.response_seen, self.stream, self.exchange)
        self.visitor.set_tap(self.request_data)


def _call(method: Callable[..., None], *args: object) -> None:
    try:
        method(*args)
    except Exception:
        log.exception("stream observer failed")  # an observer's bug must not break the relay
