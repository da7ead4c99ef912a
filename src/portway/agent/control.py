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
from typing import Any, cast

from portway import __version__
from portway.agent.stream import EngineDialer, UpstreamUnreachable, open_pipe, open_stream, open_upstream
from portway.agent.tunnel import Tunnel
from portway.errors import ClosedError, EngineRejected, PortwayError
from portway.pipe import splice
from portway.wire import liveness, messages
from portway.wire._pb import rstream_pb2 as pb
from portway.wire.codes import ErrorCode
from portway.wire.errors import ProtocolViolation, WireError
from portway.wire.framing import FrameDecoder, encode_frame
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
        self._decoder = FrameDecoder()
        self._opened: asyncio.Future[pb.Message] = asyncio.get_running_loop().create_future()
        self._pending: dict[str, asyncio.Future[pb.Message]] = {}
        self._closing: dict[str, asyncio.Future[None]] = {}
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks = liveness.AckTracker(negotiated=False)
        self._timeout_s = 0.0
        self._last_seen = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._queue: collections.deque[pb.ProxyConnReq] = collections.deque()
        self._active = 0

    # ---- opening ----

    async def _open(self, token: str | None) -> None:
        interval_ms = round(self.options.heartbeat_interval_s * 1000) if self.options.heartbeat_interval_s else None
        assert self.transport is not None
        self.transport.write(encode_frame(messages.open_control_channel_req(
            ClientDetails.local(token, version=__version__), interval_ms)))
        frame = await asyncio.wait_for(asyncio.shield(self._opened), self.options.operation_timeout_s)
        rsp = frame.open_control_channel_rsp
        if rsp.WhichOneof("payload") == "error":
            raise EngineRejected(*messages.error_from_pb(rsp.error))
        self.client_id = rsp.ok.client_id
        self.server = ServerDetails.from_pb(rsp.ok.server_details)
        lv = rsp.ok.liveness
        answered = (lv.heartbeat_interval_ms, lv.heartbeat_timeout_ms) if rsp.ok.HasField("liveness") else None
        self._timeout_s = liveness.check_answer(interval_ms, answered)
        self._acks = liveness.AckTracker(negotiated=answered is not None)
        self._last_seen = asyncio.get_running_loop().time()
        if interval_ms:
            self._spawn(self._heartbeats())

    # ---- public API ----

    async def create_tunnel(self, properties: TunnelProperties | None = None, **fields: Any) -> Tunnel:
        """Ask the engine for a tunnel; returns it with the effective properties.

        Pass a `TunnelProperties` or its fields as keywords (name, protocol, publish, labels, hostname,
        port, type, …). Raises `EngineRejected` with the engine's code and reason.
        """
        props = properties or TunnelProperties(**fields)
        request_id = str(uuid.uuid4())
        future: asyncio.Future[pb.Message] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            self._send(messages.open_tunnel_req(request_id, props))
            rsp = (await asyncio.wait_for(future, self.options.operation_timeout_s)).open_tunnel_rsp
        finally:
            self._pending.pop(request_id, None)
        if rsp.WhichOneof("payload") == "error":
            raise EngineRejected(*messages.error_from_pb(rsp.error))
        tunnel = Tunnel(self, TunnelProperties.from_pb(rsp.tunnel_properties))
        if not tunnel.properties.id:
            raise ProtocolViolation("engine returned a tunnel without an id")
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
            self._send(messages.close_tunnel_req(tunnel_id))
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
                self._send(messages.close_control_channel_req())
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
            frames = self._decoder.feed(data)
        except WireError as error:
            self._finish(error)
            return
        self._last_seen = asyncio.get_running_loop().time()
        for frame in frames:
            try:
                self._handle(frame)
            except WireError as error:
                self._finish(error)
                return

    def _handle(self, frame: pb.Message) -> None:
        which = frame.WhichOneof("payload")
        if which == "open_control_channel_rsp":
            if not self._opened.done():
                self._opened.set_result(frame)
        elif which == "open_tunnel_rsp":
            pending = self._pending.get(frame.open_tunnel_rsp.request_id)
            if pending is not None and not pending.done():
                pending.set_result(frame)
        elif which == "close_tunnel_rsp":
            tunnel = self.tunnels.pop(frame.close_tunnel_rsp.tunnel_id, None)
            if tunnel is not None:
                tunnel.mark_closed()
            closing = self._closing.pop(frame.close_tunnel_rsp.tunnel_id, None)
            if closing is not None and not closing.done():
                closing.set_result(None)
        elif which == "proxy_conn_req":
            self._schedule(frame.proxy_conn_req)
        elif which == "heartbeat":
            self._acks.acknowledgement(frame.heartbeat.sequence, frame.heartbeat.acknowledgement)
        elif which == "close_control_channel_rsp":
            self._finish(None)
        elif which == "server_message":
            log.info("engine says: %s", frame.server_message.message[:512])
        else:
            raise ProtocolViolation(f"unexpected {which} on the control channel")

    def _send(self, message: pb.Message) -> None:
        if self.closed or self.transport is None or self.transport.is_closing():
            raise ClosedError("control channel is closed")
        self.transport.write(encode_frame(message))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _heartbeats(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.closed:
            await asyncio.sleep(self.options.heartbeat_interval_s)
            if self._timeout_s and loop.time() - self._last_seen > self._timeout_s:
                self._finish(ClosedError("engine stopped answering heartbeats"))
                return
            with contextlib.suppress(ClosedError):
                sequence = self._acks.next_sequence()
                self._send(messages.heartbeat(sequence))

    # ---- streams ----

    def _schedule(self, req: pb.ProxyConnReq) -> None:
        if self._active < self.options.max_active_streams:
            self._active += 1
            self._spawn(self._serve_stream(req))
        elif len(self._queue) < self.options.max_queued_streams:
            copy = pb.ProxyConnReq()
            copy.CopyFrom(req)
            self._queue.append(copy)
        else:
            self._reply(req.stream_id, (ErrorCode.CAPACITY_EXHAUSTED, "agent is at its stream limit"))

    def _reply(self, stream_id: str, error: tuple[ErrorCode, str] | None = None) -> None:
        with contextlib.suppress(ClosedError):
            self._send(messages.proxy_conn_rsp(stream_id, error))

    async def _serve_stream(self, req: pb.ProxyConnReq) -> None:
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

    async def _open_stream(self, req: pb.ProxyConnReq) -> None:
        tunnel = self.tunnels.get(req.tunnel_id)
        if tunnel is None or tunnel.closed:
            self._reply(req.stream_id, (ErrorCode.TUNNEL_NOT_FOUND, "tunnel is not open on this agent"))
            return
        secret = req.secret.value if req.HasField("secret") else None
        details = ClientDetails.local(secret, version=__version__)
        first = messages.proxy_req(details, req.stream_id, self.options.zero_rtt)
        target = tunnel.target
        reply = None if self.options.zero_rtt else "proxy_rsp"
        if target is not None:
            # Reach the local service first: if it is down, say so instead of opening a dead stream.
            upstream = await open_upstream(target.host, target.port, self.options.connect_timeout_s)
            try:
                data = await open_pipe(self.dialer, first, reply)
            except BaseException:
                upstream.close()
                raise
            splice(upstream, data)
            tunnel.streams += 1
            self._reply(req.stream_id)
            return
        stream = await open_stream(self.dialer, first, reply)
        stream.stream_id = req.stream_id
        stream.source_ip = messages.ip_from_pb(req.source_ip) if req.HasField("source_ip") else None
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
