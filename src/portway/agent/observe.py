"""An optional observer of the streams `Tunnel.forward_to` relays: opened, closed (with byte counts), and for
http tunnels the first request line and response status line of each stream.

Cost on the relay: the pipes count bytes anyway; the sniffers see only the first chunks of each direction,
up to one bounded line (`httphead.MAX_LINE_BYTES`), and then unhook themselves, so the rest of the stream runs
exactly as an unobserved one. Later requests on a kept-alive stream are not parsed (that would mean following
HTTP framing through every byte); HTTP/2 (h2c) and TLS upstreams show as streams without requests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

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
        self.request: RequestLine | None = None
        self.requested_at: float | None = None
        self.status: StatusLine | None = None
        self.duration_s: float | None = None  # request line seen → status line seen
        self._visitor = visitor
        self._upstream = upstream

    @property
    def bytes_in(self) -> int:
        return self._visitor.bytes_in

    @property
    def bytes_out(self) -> int:
        return self._upstream.bytes_in


class StreamObserver:
    """Override what you need. Methods run on the event loop in the relay's path: keep them quick and
    non-raising (an exception is logged and the observer is otherwise ignored for that event)."""

    def stream_opened(self, stream: ForwardedStream) -> None:
        """A visitor's stream reached the local service."""

    def request_seen(self, stream: ForwardedStream) -> None:
        """`stream.request` was parsed (http tunnels)."""

    def response_seen(self, stream: ForwardedStream) -> None:
        """`stream.status` and `stream.duration_s` were parsed (http tunnels)."""

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
        _sniff_request(observer, stream, visitor, loop)
        _sniff_response(observer, stream, upstream, loop)
    visitor.notify_close(ended)
    upstream.notify_close(ended)


def _sniff_request(observer: StreamObserver, stream: ForwardedStream, pipe: Pipe,
                   loop: asyncio.AbstractEventLoop) -> None:
    first = FirstLine()

    def tap(data: bytes) -> None:
        if not first.feed(data):
            return
        pipe.set_tap(None)
        request = parse_request_line(first.line) if first.line is not None else None
        if request is not None:
            stream.request, stream.requested_at = request, loop.time()
            _call(observer.request_seen, stream)

    pipe.set_tap(tap)


def _sniff_response(observer: StreamObserver, stream: ForwardedStream, pipe: Pipe,
                    loop: asyncio.AbstractEventLoop) -> None:
    first = FirstLine()

    def tap(data: bytes) -> None:
        if not first.feed(data):
            return
        pipe.set_tap(None)
        status = parse_status_line(first.line) if first.line is not None else None
        if status is not None and stream.request is not None:
            stream.status = status
            stream.duration_s = loop.time() - (stream.requested_at or stream.opened_at)
            _call(observer.response_seen, stream)

    pipe.set_tap(tap)


def _call(method: Callable[[ForwardedStream], None], stream: ForwardedStream) -> None:
    try:
        method(stream)
    except Exception:
        log.exception("stream observer failed")  # an observer's bug must not break the relay
