"""The I/O shell both HTTP/2 ends share: the visitor-facing edge (server) and the h2c upstream
connection (client). h2 (sans-IO) holds the protocol; this turns bytes into its events and sends what it
queues — once per loop iteration, so that a response's head, body and end, and other streams' frames,
leave in one write rather than one per frame."""

from __future__ import annotations

import asyncio
import logging

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from portway.pipe import Pipe

log = logging.getLogger("portway.engine.http")


class H2Shell(Pipe):
    """A `Pipe` whose bytes are HTTP/2 frames handled by `self.conn`; subclasses handle the events."""

    def __init__(self, *, client_side: bool) -> None:
        super().__init__()
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=client_side, header_encoding=None))
        self._flush_scheduled = False

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as error:
            self.protocol_error(error)
            self.flush_now()  # h2 has queued a GOAWAY
            self.close()
            return
        for event in events:
            self.dispatch(event)
        self.flush()

    def eof_received(self) -> bool:
        return False

    def flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush_now)

    def flush_now(self) -> None:
        self._flush_scheduled = False
        out = self.conn.data_to_send()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)

    # ---- for subclasses ----

    def dispatch(self, event: h2.events.Event) -> None:
        raise NotImplementedError

    def protocol_error(self, error: h2.exceptions.ProtocolError) -> None:
        """The peer broke HTTP/2; the connection is closed after this returns."""
