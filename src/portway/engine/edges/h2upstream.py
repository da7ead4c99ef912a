"""`http_version: h2c`: HTTP/2 in cleartext to the tunnel's upstream, many requests on one agent stream.

One `UpstreamH2` is an HTTP/2 client connection (h2, prior knowledge) over an agent stream; each visitor
request becomes one of its streams (`H2Leg`). A tunnel keeps its connections in `H2UpstreamPool` and
puts new requests on one with room (the upstream's MAX_CONCURRENT_STREAMS), opening another agent
stream only when all are full. Trailers pass through (gRPC needs them). Flow control bounds memory:
request bytes wait for the upstream's windows, response bytes are acknowledged only while the
visitor's side keeps up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

from portway.engine.broker import StreamBroker
from portway.engine.edges.h2shell import H2Shell
from portway.engine.registry import Tunnel
from portway.pipe import Pipe

log = logging.getLogger("portway.engine.http")

# Request bytes queued for one upstream stream beyond its window before the visitor is slowed down.
QUEUED_BODY_BYTES = 256 * 1024
IDLE_CONNECTIONS_PER_TUNNEL = 4


class H2Sink(Protocol):
    """Where an upstream HTTP/2 stream delivers its response (see pool.ResponseSink)."""

    def response_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None: ...

    def response_body(self, data: bytes) -> None: ...

    def response_trailers(self, headers: list[tuple[bytes, bytes]]) -> None: ...

    def response_end(self) -> None: ...

    def response_failed(self, reason: str) -> None: ...

    def upstream_writable(self, writable: bool) -> None: ...


class H2Leg:
    """One request as a stream of an `UpstreamH2`."""

    def __init__(self, upstream: UpstreamH2, headers: list[tuple[bytes, bytes]], end_on_head: bool) -> None:
        self.upstream = upstream
        self.headers = headers
        self.end_on_head = end_on_head
        self.stream_id = 0
        self.sink: H2Sink | None = None
        self.queued: list[bytes] = []
        self.queued_bytes = 0
        self.ending = False
        self.end_sent = False
        self.paused = False
        self.unacked = 0
        self.done = False

    # ---- RequestLeg ----

    def begin(self, sink: H2Sink) -> None:
        self.sink = sink
        if self.end_on_head:
            self.ending = self.end_sent = True
        self.upstream.open(self, self.headers, end_stream=self.end_on_head)

    def body(self, data: bytes) -> None:
        if self.done:
            return  # the upstream already ended this stream: nothing more goes to it, nothing is kept
        self.queued.append(data)
        self.queued_bytes += len(data)
        self.upstream.send_queued(self)

    def end(self) -> None:
        if not self.ending:
            self.ending = True
            self.upstream.send_queued(self)

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self.upstream.acknowledge(self)

    def detach(self) -> None:
        """The visitor gave up: cancel the upstream stream; the connection goes on for the others."""
        self.sink = None
        self.upstream.cancel(self)


class UpstreamH2(H2Shell):
    """An HTTP/2 client connection to the upstream over one agent stream."""

    def __init__(self, tunnel: Tunnel, pool: H2UpstreamPool) -> None:
        super().__init__(client_side=True)
        self.tunnel = tunnel
        self.pool = pool
        self.legs: dict[int, H2Leg] = {}
        self.going_away = False

    @classmethod
    def take(cls, agent: Pipe, tunnel: Tunnel, pool: H2UpstreamPool) -> UpstreamH2:
        """Speak HTTP/2 on a fresh agent stream (a lost one is never offered: has_room is false)."""
        upstream = cls(tunnel, pool)
        upstream.take_over(agent)
        return upstream

    @property
    def has_room(self) -> bool:
        if self.going_away or self.closed or self.transport is None or self.transport.is_closing():
            return False
        return self.conn.open_outbound_streams < self.conn.remote_settings.max_concurrent_streams

    # ---- used by legs ----

    def open(self, leg: H2Leg, headers: list[tuple[bytes, bytes]], *, end_stream: bool) -> None:
        """Start `leg`'s stream; a head HTTP/2 cannot carry fails the leg (502), not the connection."""
        stream_id = self.conn.get_next_available_stream_id()
        try:
            self.conn.send_headers(stream_id, headers, end_stream=end_stream)
        except h2.exceptions.ProtocolError as error:
            log.info("tunnel %s: request not relayable to the HTTP/2 upstream: %s", self.tunnel.id, error)
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            leg.stream_id = stream_id
            self._fail_leg(leg, "the request could not be relayed to the service behind this tunnel")
            return
        leg.stream_id = stream_id
        self.legs[stream_id] = leg
        self.flush()

    def send_queued(self, leg: H2Leg) -> None:
        """Send a leg's body within the upstream's windows, then its end; tell the visitor side to hold
        back while too much is waiting."""
        if leg.done or leg.stream_id == 0:
            return
        sid = leg.stream_id
        try:
            while leg.queued:
                window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
                if window <= 0:
                    break
                data = leg.queued[0]
                if len(data) > window:
                    leg.queued[0], data = data[window:], data[:window]
                else:
                    leg.queued.pop(0)
                leg.queued_bytes -= len(data)
                self.conn.send_data(sid, data)
            if leg.ending and not leg.queued and not leg.end_sent:
                leg.end_sent = True
                self.conn.end_stream(sid)
        except h2.exceptions.StreamClosedError:
            leg.queued.clear()
        except h2.exceptions.ProtocolError as error:
            log.info("tunnel %s: request not relayable to the HTTP/2 upstream: %s", self.tunnel.id, error)
            self._fail_leg(leg, "the request could not be relayed to the service behind this tunnel")
        if leg.sink is not None:
            leg.sink.upstream_writable(leg.queued_bytes <= QUEUED_BODY_BYTES)
        self.flush()

    def acknowledge(self, leg: H2Leg) -> None:
        if leg.unacked and not leg.paused and not leg.done:
            self._credit(leg)

    def _credit(self, leg: H2Leg) -> None:
        """Give back the window of response bytes taken for `leg`. Called when a leg ends in any way too:
        h2 then credits the connection window even though the stream is closed, and without that a leg
        that ended paused would drain the connection window for every other request on it."""
        if leg.unacked:
            self.conn.acknowledge_received_data(leg.unacked, leg.stream_id)
            leg.unacked = 0
            self.flush()

    def cancel(self, leg: H2Leg) -> None:
        if leg.done:
            return
        leg.done = True
        self._credit(leg)
        self.legs.pop(leg.stream_id, None)
        if leg.stream_id:
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self.conn.reset_stream(leg.stream_id, h2.errors.ErrorCodes.CANCEL)
            self.flush()
        self.pool.settle(self)

    # ---- transport events ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.conn.initiate_connection()
        self.flush()

    def protocol_error(self, error: h2.exceptions.ProtocolError) -> None:
        log.info("tunnel %s: HTTP/2 protocol error from the upstream: %s", self.tunnel.id, error)
        self._fail_all("the service behind this tunnel broke the HTTP/2 protocol")

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._fail_all("the connection to the service behind this tunnel was lost")
        self.pool.forget(self)

    def pause_writing(self) -> None:
        for leg in self.legs.values():
            if leg.sink is not None:
                leg.sink.upstream_writable(False)

    def resume_writing(self) -> None:
        for leg in list(self.legs.values()):
            self.send_queued(leg)

    # ---- events ----

    def dispatch(self, event: h2.events.Event) -> None:
        leg = self.legs.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.ResponseReceived) and leg is not None and leg.sink is not None:
            headers = list(event.headers or ())
            status = int(next((v for k, v in headers if k == b":status"), b"502"))
            leg.sink.response_head(status, [(k, v) for k, v in headers if not k.startswith(b":")])
        elif isinstance(event, h2.events.DataReceived):
            if leg is not None and leg.sink is not None and event.data:
                leg.sink.response_body(event.data)
                leg.unacked += event.flow_controlled_length or 0
                self.acknowledge(leg)
            else:
                self.conn.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id or 0)
        elif isinstance(event, h2.events.TrailersReceived) and leg is not None and leg.sink is not None:
            leg.sink.response_trailers(list(event.headers or ()))
        elif isinstance(event, h2.events.StreamEnded) and leg is not None:
            self._end_leg(leg)
        elif isinstance(event, h2.events.StreamReset) and leg is not None:
            self._fail_leg(leg, "the service behind this tunnel reset the stream")
        elif isinstance(event, h2.events.WindowUpdated):
            targets = list(self.legs.values()) if not event.stream_id else [leg] if leg is not None else []
            for target in targets:
                self.send_queued(target)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.going_away = True
            last = event.last_stream_id or 0
            for sid, other in list(self.legs.items()):
                if sid > last:  # never processed: the visitor may retry
                    self._fail_leg(other, "the service behind this tunnel is going away")
            self.pool.settle(self)

    def _end_leg(self, leg: H2Leg) -> None:
        leg.done = True
        self._credit(leg)
        if not leg.end_sent:  # answered before the whole request was sent: cancel the rest, free the slot
            leg.queued.clear()
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.conn.reset_stream(leg.stream_id, h2.errors.ErrorCodes.NO_ERROR)
            if leg.sink is not None:
                leg.sink.upstream_writable(True)
        self.legs.pop(leg.stream_id, None)
        sink, leg.sink = leg.sink, None
        if sink is not None:
            sink.response_end()
        self.pool.settle(self)

    def _fail_leg(self, leg: H2Leg, reason: str) -> None:
        leg.done = True
        if not self.closed and leg.stream_id:
            self._credit(leg)
        self.legs.pop(leg.stream_id, None)
        sink, leg.sink = leg.sink, None
        if sink is not None:
            sink.response_failed(reason)
        self.pool.settle(self)

    def _fail_all(self, reason: str) -> None:
        for leg in list(self.legs.values()):
            self._fail_leg(leg, reason)


async def h2c_connection(broker: StreamBroker, pool: H2UpstreamPool, tunnel: Tunnel, source_ip: str | None,
                         track: Callable[[Pipe], None]) -> UpstreamH2:
    """A pooled upstream HTTP/2 connection with room for one more stream, opening one (an agent stream,
    given to `track` so shutdown knows it) when all are full. Requests that arrive while a connection is
    being opened wait for it rather than each opening their own. Raises StreamFailed."""
    while True:
        upstream = pool.with_room(tunnel)
        if upstream is not None:
            return upstream
        opening = pool.opening.get(tunnel)
        if opening is None:
            break
        await asyncio.shield(opening)  # then look again: it may be full already, or have failed
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    pool.opening[tunnel] = done
    try:
        agent = await broker.open_stream(tunnel, source_ip)
        upstream = UpstreamH2.take(agent, tunnel, pool)
        pool.add(upstream)
        track(upstream)
        return upstream
    finally:
        del pool.opening[tunnel]
        done.set_result(None)


class H2UpstreamPool:
    """A tunnel's HTTP/2 upstream connections; idle ones close after `idle_s`."""

    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        self._connections: dict[Tunnel, list[UpstreamH2]] = {}
        self._idle_timers: dict[UpstreamH2, asyncio.TimerHandle] = {}
        self.opening: dict[Tunnel, asyncio.Future[None]] = {}  # a connection being opened, per tunnel

    def with_room(self, tunnel: Tunnel) -> UpstreamH2 | None:
        for upstream in self._connections.get(tunnel, ()):
            if upstream.has_room:
                timer = self._idle_timers.pop(upstream, None)
                if timer is not None:
                    timer.cancel()
                return upstream
        return None

    def add(self, upstream: UpstreamH2) -> None:
        self._connections.setdefault(upstream.tunnel, []).append(upstream)

    def settle(self, upstream: UpstreamH2) -> None:
        """A stream ended: an idle connection starts its idle clock; one going away closes when empty."""
        if upstream.legs:
            return
        if upstream.closed or upstream not in self._connections.get(upstream.tunnel, ()):
            return  # gone (forgotten) or never pooled: no idle clock for it
        if upstream.going_away:
            upstream.close()
            return
        idle = [u for u in self._connections.get(upstream.tunnel, ()) if not u.legs]
        if len(idle) > IDLE_CONNECTIONS_PER_TUNNEL:
            upstream.close()
            return
        if upstream not in self._idle_timers:
            self._idle_timers[upstream] = asyncio.get_running_loop().call_later(self.idle_s, upstream.close)

    def forget(self, upstream: UpstreamH2) -> None:
        timer = self._idle_timers.pop(upstream, None)
        if timer is not None:
            timer.cancel()
        connections = self._connections.get(upstream.tunnel)
        if connections is not None and upstream in connections:
            connections.remove(upstream)
            if not connections:
                del self._connections[upstream.tunnel]

    def close(self) -> None:
        for connections in list(self._connections.values()):
            for upstream in list(connections):
                if not upstream.legs:
                    upstream.close()
