"""Shared pieces of the integration tests: a hand-written agent and a one-shot visitor."""

from __future__ import annotations

import asyncio
import contextlib

from portway import __version__
from portway.agent import Tunnel
from portway.wire import messages
from portway.wire._pb import rstream_pb2 as pb
from portway.wire.messages import ClientDetails, TunnelProperties
from tests.conftest import UNIT_S, EngineHandle, close_writer, http_get, open_agent_connection, read_frame, send_frame


async def visit(engine: EngineHandle, hostname: str, path: str = "/") -> tuple[int, bytes]:
    """One HTTP request through the engine's TLS port, on its own connection."""
    reader, writer = await asyncio.wait_for(engine.open_visitor(hostname), 5 * UNIT_S)
    try:
        return await http_get(reader, writer, hostname, path)
    finally:
        await close_writer(writer)


class RawAgent:
    """A hand-written agent: frames built with portway.wire, read by one task, heartbeats by another."""

    def __init__(self, engine: EngineHandle, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.engine = engine
        self.reader = reader
        self.writer = writer
        self.frames: asyncio.Queue[pb.Message | None] = asyncio.Queue()
        self.sequence = 0
        self.acks: list[int] = []
        self.reading: asyncio.Task[None] | None = None
        self.beating: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, engine: EngineHandle) -> RawAgent:
        return cls(engine, *await open_agent_connection(engine))

    async def open_control(self, token: str | None, interval_ms: int | None = None) -> pb.OpenControlChannelRsp:
        """Send OpenControlChannelReq and read its answer (call before `start`)."""
        send_frame(self.writer, messages.open_control_channel_req(
            ClientDetails.local(token, version=__version__), interval_ms))
        frame = await read_frame(self.reader)
        assert frame.WhichOneof("payload") == "open_control_channel_rsp"
        return frame.open_control_channel_rsp

    def start(self) -> None:
        self.reading = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            while True:
                frame = await read_frame(self.reader, timeout=30)
                if frame.WhichOneof("payload") == "heartbeat":
                    assert frame.heartbeat.sequence == 0
                    self.acks.append(frame.heartbeat.acknowledgement)
                    continue
                await self.frames.put(frame)
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.frames.put(None)

    async def expect(self, kind: str) -> pb.Message:
        frame = await asyncio.wait_for(self.frames.get(), 5 * UNIT_S)
        assert frame is not None, f"control channel closed while waiting for {kind}"
        assert frame.WhichOneof("payload") == kind
        return frame

    def heartbeat(self) -> None:
        self.sequence += 1
        send_frame(self.writer, messages.heartbeat(self.sequence))

    def start_heartbeats(self, interval_s: float) -> None:
        async def beat() -> None:
            while True:
                await asyncio.sleep(interval_s)
                self.heartbeat()

        self.beating = asyncio.ensure_future(beat())

    def stop_heartbeats(self) -> None:
        if self.beating is not None:
            self.beating.cancel()

    async def create(self, request_id: str, props: TunnelProperties) -> TunnelProperties:
        send_frame(self.writer, messages.open_tunnel_req(request_id, props))
        rsp = (await self.expect("open_tunnel_rsp")).open_tunnel_rsp
        assert rsp.request_id == request_id
        assert rsp.WhichOneof("payload") == "tunnel_properties"
        return TunnelProperties.from_pb(rsp.tunnel_properties)

    async def accept(self) -> tuple[pb.ProxyConnReq, asyncio.StreamReader, asyncio.StreamWriter]:
        """Answer the next ProxyConnReq with a zero-RTT data connection."""
        req = (await self.expect("proxy_conn_req")).proxy_conn_req
        reader, writer = await open_agent_connection(self.engine)
        details = ClientDetails.local(req.secret.value, version=__version__)
        send_frame(writer, messages.proxy_req(details, req.stream_id, zero_rtt=True))
        send_frame(self.writer, messages.proxy_conn_rsp(req.stream_id))
        return req, reader, writer

    async def close(self) -> None:
        self.stop_heartbeats()
        await close_writer(self.writer)
        for task in (self.reading, self.beating):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()




async def close_streams(tunnel: Tunnel) -> None:
    """Accept and close every stream of `tunnel` until it closes (for tests that only look at handshakes)."""
    async for stream in tunnel:
        await stream.close()
