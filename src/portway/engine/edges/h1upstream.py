"""The agent's end of an HTTP/1.1 stream (`HttpEdge`'s peer): relays responses to the visitor as raw
bytes and follows them with httptools — heads only, no per-field callbacks, so the cost is one C call
and two small callbacks per response — telling the edge where each response starts and ends.

The parser is replaced after a response that ends at its head (HEAD): httptools cannot be told that
such a response has no body, and nothing else is on the stream then (see h1exchanges).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httptools

from portway.pipe import Pipe

if TYPE_CHECKING:
    from .http1 import HttpEdge


class Upstream(Pipe):
    """The agent's end of an HTTP stream: relays responses to the visitor unchanged and follows them
    with httptools (heads only: no per-field callbacks), telling the edge where each one ends."""

    def __init__(self, edge: HttpEdge) -> None:
        super().__init__()
        self.edge = edge
        self.peer = edge
        self.raw = False
        self._parser = httptools.HttpResponseParser(self)
        self._status = 0
        self._ended = False  # the current response was accounted for at its head (HEAD, switch)
        self.keep_alive = False  # the last complete response left the connection open (it can be pooled)

    def start(self, out: list[bytes]) -> None:
        """Right after `hand_over`: send what the visitor already asked, then read the agent."""
        transport = self.transport
        if out and transport is not None:
            transport.write(b"".join(out))
            out.clear()
        held = b"".join(self._backlog)
        self._backlog.clear()
        self._backlog_bytes = 0
        if held:
            self.bytes_in -= len(held)
            self.data_received(held)
        if self.closed:
            self.edge.peer_lost(self)
        elif self._eof:
            if not self.eof_received() and transport is not None:
                transport.close()
        elif transport is not None and not transport.is_closing():
            transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        transport = self.edge.transport
        if transport is not None:
            transport.write(data)
        if self.raw:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # a 101: acted on at its head
        except httptools.HttpParserError as error:
            if not self._ended:
                self.edge.bad_response(str(error))
        if self._ended:
            self._ended = False
            self._parser = httptools.HttpResponseParser(self)

    def on_headers_complete(self) -> None:
        if self._ended:
            return
        status = self._status = self._parser.get_status_code()
        if status >= 200 or status == 101:  # else 1xx interim: the final response follows
            self._ended = self.edge.response_head(status)

    def on_message_complete(self) -> None:
        if not self._ended and self._status >= 200:
            self.keep_alive = self._parser.should_keep_alive()
            self.edge.response_done()

    def eof_received(self) -> bool:
        if self.raw:
            return super().eof_received()
        self.edge.upstream_ended()
        return False

    def pause_writing(self) -> None:
        self._writing_paused = True
        self.edge.backpressure(True)

    def resume_writing(self) -> None:
        self._writing_paused = False
        self.edge.backpressure(False)
