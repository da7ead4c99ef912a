"""The first frame of an `rstrm/1` connection decides what it is (protocol facts §2.4):

- `OpenControlChannelReq` → a control channel (`AgentSession`);
- `ProxyReq` → an agent's data connection answering a `ProxyConnReq` (§2.6);
- `StreamReq` → a private dial of a tunnel by name or id (§2.7).

Anything else, a malformed frame, or silence past `timeouts.first_message_seconds` closes the
connection. Each refusal is logged once, without secrets.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from portway.engine.authorize import in_project, may
from portway.engine.broker import StreamFailed, new_stream_id
from portway.engine.context import EngineContext
from portway.engine.registry import Tunnel
from portway.engine.session import AgentSession
from portway.errors import AuthError
from portway.pipe import Pipe, splice
from portway.wire import messages
from portway.wire._pb import rstream_pb2 as pb
from portway.wire.codes import ErrorCode
from portway.wire.data import ControlRequested, DialRequested, FirstFrameReader, ProxyRequested
from portway.wire.errors import FrameError, WireError
from portway.wire.framing import encode_frame

log = logging.getLogger("portway.engine.agent")


def peer_ip(transport: asyncio.BaseTransport) -> str | None:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if peer else None


class AgentConnection(asyncio.Protocol):
    """Protocol of a fresh `rstrm/1` connection until its first frame is read."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self.transport: asyncio.Transport | None = None
        self._reader = FirstFrameReader()
        self._timer: asyncio.TimerHandle | None = None
        self._done = False
        self._peer = "?"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.transport = transport
        self._peer = peer_ip(transport) or "?"
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.ctx.config.timeouts.first_message_seconds, self._silent)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()

    def data_received(self, data: bytes) -> None:
        if self._done:
            return
        try:
            first = self._reader.receive_data(data)
        except FrameError as error:
            self._refuse(f"bad first frame: {error}")
            return
        except WireError as error:
            self._refuse(str(error))
            return
        if first is None:
            return
        self._finish()
        rest = self._reader.rest()
        match first:
            case ControlRequested():
                self._open_control(first, rest)
            case ProxyRequested():
                self._proxy(first, rest)
            case DialRequested():
                self._stream(first, rest)

    def eof_received(self) -> bool:
        if not self._done:
            self._refuse("closed before its first frame")
        return False

    def _finish(self) -> None:
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _silent(self) -> None:
        self._refuse(f"sent no frame within {self.ctx.config.timeouts.first_message_seconds}s")

    def _refuse(self, reason: str, reply: pb.Message | None = None) -> None:
        self._finish()
        self.ctx.counters.rejected_connections += 1
        log.warning("agent connection from %s refused: %s", self._peer, reason)
        assert self.transport is not None
        if reply is not None:
            self.transport.write(encode_frame(reply))
        self.transport.close()

    def _open_control(self, req: ControlRequested, rest: bytes) -> None:
        details = req.details
        if len(self.ctx.sessions) >= self.ctx.config.limits.max_control_channels:
            self._refuse("control channel limit reached", messages.open_control_channel_error(
                ErrorCode.CAPACITY_EXHAUSTED, "this engine serves no more control channels"))
            return
        try:
            principal = self.ctx.access.verify(details.token)
        except AuthError as error:
            self._refuse(f"control channel unauthorized: {error}",
                         messages.open_control_channel_error(ErrorCode.UNAUTHORIZED, str(error)))
            return
        assert self.transport is not None
        AgentSession(self.ctx, principal, details, self._peer).start(self.transport, req.heartbeat_interval_ms, rest)

    def _proxy(self, req: ProxyRequested, rest: bytes) -> None:
        zero_rtt = req.zero_rtt
        pending = self.ctx.broker.claim(req.stream_id, req.secret)
        if pending is None:
            reply = None if zero_rtt else messages.proxy_rsp((ErrorCode.INVALID_STREAM, "unknown or expired stream"))
            self._refuse(f"ProxyReq for unknown, expired or already used stream {req.stream_id[:32]!r}", reply)
            return
        assert self.transport is not None
        if not zero_rtt:
            self.transport.write(encode_frame(messages.proxy_rsp()))
        pipe = Pipe.adopt(self.transport, rest)
        if not self.ctx.broker.deliver(pending, pipe):
            log.info("stream %s: the visitor left before the agent connected", req.stream_id)
            pipe.close()

    def _stream(self, req: DialRequested, rest: bytes) -> None:
        zero_rtt = req.zero_rtt
        details = req.details

        def refuse(code: ErrorCode, text: str) -> None:
            self._refuse(f"private dial refused: {text}", None if zero_rtt else messages.stream_rsp_error(code, text))

        try:
            principal = self.ctx.access.verify(details.token)
        except AuthError as error:
            refuse(ErrorCode.UNAUTHORIZED, str(error))
            return
        if req.datagram_channel:
            refuse(ErrorCode.FEATURE_NOT_AVAILABLE, "datagram channels need the QUIC transport")
            return
        tunnel = self.ctx.registry.dial_target(req.tunnel)
        if tunnel is None or not in_project(principal, tunnel.project_id):  # other projects' tunnels: unknown
            refuse(ErrorCode.TUNNEL_NOT_FOUND, f"no tunnel named {req.tunnel[:128]!r}")
            return
        if not may(principal, "connect", tunnel):
            refuse(ErrorCode.UNAUTHORIZED, "the token may not connect to this tunnel")
            return
        assert self.transport is not None
        dialer = Pipe.adopt(self.transport, rest)
        if dialer.transport is not None:
            dialer.transport.pause_reading()
        stream_id = new_stream_id()
        self.ctx.spawn(self._connect_dialer(dialer, tunnel, stream_id, zero_rtt))

    async def _connect_dialer(self, dialer: Pipe, tunnel: Tunnel, stream_id: str, zero_rtt: bool) -> None:
        try:
            agent = await self.ctx.broker.open_stream(tunnel, self._peer, stream_id)
        except StreamFailed as error:
            log.info("private dial of tunnel %s failed: %s", tunnel.id, error.reason)
            if dialer.transport is not None and not zero_rtt:
                dialer.transport.write(encode_frame(messages.stream_rsp_error(error.code, error.reason)))
            dialer.close()
            return
        if dialer.transport is not None and not zero_rtt:
            dialer.transport.write(encode_frame(messages.stream_rsp_ok(stream_id)))
        splice(dialer, agent)
        self.ctx.streams.add(dialer, agent)
