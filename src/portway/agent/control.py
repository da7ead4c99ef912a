"""`ControlChannel`: the agent side of a control connection (protocol facts §2.4–§2.9).

An asyncio protocol: the read path decodes frames and never awaits; each `ProxyConnReq` becomes a
task (at most `max_active_streams` at once, `max_queued_streams` waiting, the rest refused) that
dials the engine back, so one slow dial never stalls the channel.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any, cast

from portway import __version__
from portway.agent import udprelay
from portway.agent.observe import watch
from portway.agent.stream import EngineDialer, UpstreamUnreachable, open_pipe, open_stream, open_upstream
from portway.agent.tunnel import Tunnel
from portway.errors import ClosedError, EngineRejected, PortwayError
from portway.pipe import splice
from portway.wire import events, messages
from portway.wire.codes import ErrorCode
from portway.wire.control import AgentControlConnection
from portway.wire.errors import WireError
from portway.wire.messages import ClientDetails, ServerDetails, TunnelProperties

log = logging.getLogger("portway.agent")

# Bound on each wait of an orderly close: the engine's CloseControlChannelRsp, then the TLS close.
CLOSE_TIMEOUT_S = 5.0


class ControlChannel(asyncio.Protocol):
    """Open with `Client.connect()`; create tunnels with `create_tunnel()`; `close()` when done."""

    def __init__(self, dialer: EngineDialer) -> None:
        self.dialer = dialer
        self.options = dialer.options
        self.client_id: str | None = None
        self.server: ServerDetails | None = None
        self.transport: asyncio.Transport | None = None
        self.tunnels: dict[str, Tunnel] = {}
        interval_ms = round(self.options.heartbeat_interval_s * 1000) if self.options.heartbeat_interval_s else None
        self._conn = AgentControlConnection(heartbeat_interval_ms=interval_ms,
                                            now=asyncio.get_running_loop().time())
        self._opened: asyncio.Future[events.ControlOpened] = asyncio.get_running_loop().create_future()
        self._pending: dict[str, asyncio.Future[events.TunnelOpened]] = {}
        self._closing: dict[str, asyncio.Future[None]] = {}
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tasks: set[asyncio.Task[None]] = set()
        self._queue: collections.deque[events.StreamRequested] = collections.deque()
        self._active = 0

    # ---- opening ----

    async def _open(self, token: str | None) -> None:
        self._conn.opening(ClientDetails.local(token, version=__version__))
        self._flush()
        opened = await asyncio.wait_for(asyncio.shield(self._opened), self.options.operation_timeout_s)
        self.client_id, self.server = opened.client_id, opened.server
        if self._conn.heartbeat_interval_ms:
            self._spawn(self._heartbeats())

    # ---- public API ----

    async def create_tunnel(self, properties: TunnelProperties | None = None, **fields: Any) -> Tunnel:
        """Ask the engine for a tunnel; returns it with the effective properties.

        Pass a `TunnelProperties` or its fields as keywords (name, protocol, publish, labels, hostname,
        port, type, …). Raises `EngineRejected` with the engine's code and reason.
        """
        props = properties or TunnelProperties(**fields)
        request_id = str(uuid.uuid4())
        future: asyncio.Future[events.TunnelOpened] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            self._write(lambda conn: conn.open_tunnel(request_id, props))
            opened = await asyncio.wait_for(future, self.options.operation_timeout_s)
        finally:
            self._pending.pop(request_id, None)
        tunnel = Tunnel(self, opened.properties)
        self.tunnels[tunnel.id] = tunnel
        return tunnel

    async def close_tunnel(self, tunnel_id: str) -> None:
        """Close one tunnel; concurrent calls share one request."""
        if tunnel_id not in self.tunnels or self.closed:
            return
        future = self._closing.get(tunnel_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._closing[tunnel_id] = future
            self._write(lambda conn: conn.close_tunnel(tunnel_id))
        await asyncio.wait_for(asyncio.shield(future), self.options.operation_timeout_s)

    @property
    def closed(self) -> bool:
        return self._done.done()

    async def wait_closed(self) -> None:
        """Wait until the channel ends; raises the error that ended it, if any."""
        await asyncio.shield(self._done)

    async def close(self) -> None:
        """Orderly close: CloseControlChannelReq, then wait (bounded) for the engine's answer and for
        the connection to be gone (a TLS close is a round trip; returning earlier would leak it)."""
        if not self.closed:
            with contextlib.suppress(PortwayError):
                self._write(lambda conn: conn.closing())
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._done), CLOSE_TIMEOUT_S)
            self._finish(None)
        if self.transport is not None and not self._lost.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._lost), CLOSE_TIMEOUT_S)
            except TimeoutError:
                self.transport.abort()

    async def __aenter__(self) -> ControlChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- protocol ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._lost.done():
            self._lost.set_result(None)
        self._finish(ClosedError("control channel closed by the engine"))

    def data_received(self, data: bytes) -> None:
        try:
            found = self._conn.receive_data(data, asyncio.get_running_loop().time())
        except WireError as error:
            self._finish(error)
            return
        for event in found:
            self._handle(event)

    def _handle(self, event: events.AgentEvent) -> None:
        match event:
            case events.StreamRequested():
                self._schedule(event)
            case events.TunnelOpened(request_id) | events.TunnelRefused(request_id):
                pending = self._pending.get(request_id)
                if pending is None or pending.done():
                    return
                if isinstance(event, events.TunnelOpened):
                    pending.set_result(event)
                else:
                    pending.set_exception(EngineRejected(event.code, event.reason))
            case events.TunnelClosed(tunnel_id):
                tunnel = self.tunnels.pop(tunnel_id, None)
                if tunnel is not None:
                    tunnel.mark_closed()
                closing = self._closing.pop(tunnel_id, None)
                if closing is not None and not closing.done():
                    closing.set_result(None)
            case events.ControlOpened():
                if not self._opened.done():
                    self._opened.set_result(event)
            case events.ControlRefused(code, reason):
                if not self._opened.done():
                    self._opened.set_exception(EngineRejected(code, reason))
            case events.ChannelClosed():
                self._finish(None)
            case events.ServerSaid(text):
                log.info("engine says: %s", text[:512])

    def _write(self, queue: Callable[[AgentControlConnection], None]) -> None:
        """Queue a frame on the protocol core and send it; raises `ClosedError` once the channel ended."""
        if self.closed or self.transport is None or self.transport.is_closing():
            raise ClosedError("control channel is closed")
        queue(self._conn)
        self._flush()

    def _flush(self) -> None:
        data = self._conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _heartbeats(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.closed:
            await asyncio.sleep(self.options.heartbeat_interval_s)
            if self._conn.expired(loop.time()):
                self._finish(ClosedError("engine stopped answering heartbeats"))
                return
            with contextlib.suppress(ClosedError):
                self._write(lambda conn: conn.heartbeat())

    # ---- streams ----

    def _schedule(self, req: events.StreamRequested) -> None:
        if self._active < self.options.max_active_streams:
            self._active += 1
            self._spawn(self._serve_stream(req))
        elif len(self._queue) < self.options.max_queued_streams:
            self._queue.append(req)
        else:
            self._reply(req.stream_id, (ErrorCode.CAPACITY_EXHAUSTED, "agent is at its stream limit"))

    def _reply(self, stream_id: str, error: tuple[ErrorCode, str] | None = None) -> None:
        with contextlib.suppress(ClosedError):
            self._write(lambda conn: conn.stream_answered(stream_id, error))

    async def _serve_stream(self, req: events.StreamRequested) -> None:
        try:
            await self._open_stream(req)
        except asyncio.CancelledError:
            raise
        except PortwayError as error:
            log.info("stream %s: %s", req.stream_id, error)
            reason = ("the agent could not reach its upstream" if isinstance(error, UpstreamUnreachable)
                      else "the agent could not open the stream")
            self._reply(req.stream_id, (ErrorCode.SERVICE_UNAVAILABLE, reason))
        except Exception:
            log.exception("stream %s failed", req.stream_id)
            self._reply(req.stream_id, (ErrorCode.INTERNAL, "agent error"))
        finally:
            self._active -= 1
            if self._queue and not self.closed:
                self._active += 1
                self._spawn(self._serve_stream(self._queue.popleft()))

    async def _open_stream(self, req: events.StreamRequested) -> None:
        tunnel = self.tunnels.get(req.tunnel_id)
        if tunnel is None or tunnel.closed:
            self._reply(req.stream_id, (ErrorCode.TUNNEL_NOT_FOUND, "tunnel is not open on this agent"))
            return
        details = ClientDetails.local(req.secret, version=__version__)
        first = messages.proxy_req(details, req.stream_id, self.options.zero_rtt)
        target = tunnel.target
        reply = None if self.options.zero_rtt else "proxy_rsp"
        if target is not None and tunnel.properties.type == "datagram":
            stream = await open_stream(self.dialer, first, reply)
            stream.stream_id = req.stream_id
            try:
                udp = await udprelay.open_udp(stream, target.host, target.port)
            except BaseException:
                await stream.close()
                raise
            udprelay.relay(stream, udp)
            tunnel.streams += 1
            self._reply(req.stream_id)
            return
        if target is not None:
            # Reach the local service first: if it is down, say so instead of opening a dead stream.
            upstream = await open_upstream(target.host, target.port, self.options.connect_timeout_s)
            try:
                data = await open_pipe(self.dialer, first, reply)
            except BaseException:
                upstream.close()
                raise
            if tunnel.observer is not None:  # before the splice, so the taps see bytes already held
                watch(tunnel.observer, req.stream_id, req.source_ip, data, upstream,
                      http=tunnel.properties.protocol == "http")
            splice(upstream, data)
            tunnel.streams += 1
            self._reply(req.stream_id)
            return
        stream = await open_stream(self.dialer, first, reply)
        stream.stream_id = req.stream_id
        stream.source_ip = req.source_ip
        if not tunnel.deliver(stream):
            await stream.close()
            self._reply(req.stream_id, (ErrorCode.INVALID_STREAM, "tunnel is not accepting streams"))
            return
        tunnel.streams += 1
        self._reply(req.stream_id)

    def _finish(self, error: BaseException | None) -> None:
        if self._done.done():
            return
        if error is None:
            self._done.set_result(None)
        else:
            self._done.set_exception(error)
            self._done.exception()  # retrieved: ending is normal control flow for the owner
        waiters: list[asyncio.Future[Any]] = [*self._pending.values(), *self._closing.values()]
        for future in waiters:
            if not future.done():
                future.set_exception(ClosedError("control channel closed"))
                future.exception()
        if not self._opened.done():
            self._opened.set_exception(error or ClosedError("control channel closed"))
            self._opened.exception()
        for tunnel in self.tunnels.values():
            tunnel.mark_closed()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current and not task.get_coro().__qualname__.endswith("_serve_stream"):  # type: ignore[union-attr]
                task.cancel()
        if self.transport is not None:
            self.transport.close()
