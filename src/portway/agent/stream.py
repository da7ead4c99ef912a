"""Connections to the engine that carry a stream: a `Stream` for application code, and pipe-based
data connections for `forward_to` (no per-chunk await on the hot path)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from portway import tls
from portway.agent.options import AgentOptions
from portway.errors import ClosedError, TransportError
from portway.pipe import Pipe
from portway.wire._pb import rstream_pb2 as pb
from portway.wire.codes import MAX_FRAME_BYTES
from portway.wire.data import check_reply
from portway.wire.errors import FrameTooLarge, WireError
from portway.wire.framing import FrameDecoder, PacketDecoder, decode_message, encode_frame, encode_packet

P = TypeVar("P", bound=asyncio.Protocol)


class UpstreamUnreachable(TransportError):
    """The local service a tunnel forwards to refused or did not answer."""


class Stream:
    """One tunnel stream as a byte stream: `read`, `write` + `drain`, `close`.

    `source_ip` is the visitor's address for accepted streams; `stream_id` names the stream.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 stream_id: str | None = None, source_ip: str | None = None) -> None:
        self.reader = reader
        self.writer = writer
        self.stream_id = stream_id
        self.source_ip = source_ip

    async def read(self, n: int = 65536) -> bytes:
        """Up to `n` bytes; b"" at end of stream. A TLS close without close_notify counts as EOF."""
        try:
            return await self.reader.read(n)
        except (ssl.SSLError, ConnectionResetError):
            return b""

    async def readexactly(self, n: int) -> bytes:
        try:
            return await self.reader.readexactly(n)
        except asyncio.IncompleteReadError as error:
            raise ClosedError("stream ended early") from error

    def write(self, data: bytes) -> None:
        if self.writer.is_closing():
            raise ClosedError("stream is closed")
        self.writer.write(data)

    def write_eof(self) -> None:
        """Half-close: the peer reads end-of-stream, and can still answer."""
        if not self.writer.is_closing():
            self.writer.write_eof()

    async def drain(self) -> None:
        try:
            await self.writer.drain()
        except (ConnectionError, ssl.SSLError) as error:
            raise ClosedError("stream closed by peer") from error

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
            await self.writer.wait_closed()

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class DatagramStream:
    """Packets over a stream of a datagram tunnel: each is framed with a 4-byte length (§2.8)."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self._decoder = PacketDecoder()
        self._ready: list[bytes] = []

    async def send(self, packet: bytes) -> None:
        self.stream.write(encode_packet(packet))
        await self.stream.drain()

    async def recv(self) -> bytes:
        """The next packet; raises `ClosedError` at end of stream."""
        while not self._ready:
            data = await self.stream.read()
            if not data:
                raise ClosedError("datagram stream closed")
            self._ready.extend(self._decoder.feed(data))
        return self._ready.pop(0)

    async def close(self) -> None:
        await self.stream.close()


@dataclass(slots=True)
class EngineDialer:
    """How this agent reaches its engine: address and timings, TLS context, resumable sessions.
    Every connection to the engine (control, data, dial) is made here."""

    options: AgentOptions
    context: ssl.SSLContext
    sessions: tls.SessionCache = field(default_factory=tls.SessionCache)

    async def connect(self, factory: Callable[[], P]) -> tuple[tls.TLSTransport, P]:
        host, port = self.options.host_port
        try:
            return await tls.connect(asyncio.get_running_loop(), factory, host, port, context=self.context,
                                     server_hostname=self.options.tls.server_name or host,
                                     timeout_s=self.options.connect_timeout_s, sessions=self.sessions)
        except (OSError, TimeoutError, ssl.SSLError) as error:
            raise TransportError(f"cannot reach engine {self.options.engine}: {error}") from error


async def open_stream(dialer: EngineDialer, first: pb.Message, reply: str | None) -> Stream:
    """Dial the engine, send `first`, and if `reply` names a response kind, read and check it."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=256 * 1024)
    protocol = asyncio.StreamReaderProtocol(reader)
    # Our TLS transport, so `write_eof()` sends close_notify and the stream can half-close.
    transport, _ = await dialer.connect(lambda: protocol)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    stream = Stream(reader, writer)
    try:
        writer.write(encode_frame(first))
        if reply is not None:
            frame = await asyncio.wait_for(_read_frame(reader), dialer.options.operation_timeout_s)
            check_reply(frame, reply)
    except BaseException:
        await stream.close()
        raise
    return stream


async def _read_frame(reader: asyncio.StreamReader) -> pb.Message:
    """Read exactly one frame, leaving whatever follows it in the reader."""
    try:
        header = await reader.readexactly(4)
        length = int.from_bytes(header, "big")
        if length > MAX_FRAME_BYTES:
            raise FrameTooLarge(f"engine sent a frame of {length} bytes")
        return decode_message(await reader.readexactly(length))
    except asyncio.IncompleteReadError as error:
        raise ClosedError("engine closed the connection") from error



class _ReplyPipe(Pipe):
    """A data connection that reads one reply frame before relaying (handshakes without zero-RTT)."""

    def __init__(self) -> None:
        super().__init__()
        self.reply: asyncio.Future[pb.Message] = asyncio.get_running_loop().create_future()
        self._decoder = FrameDecoder()
        self.expect_reply = False

    def data_received(self, data: bytes) -> None:
        if not self.expect_reply or self.reply.done():
            super().data_received(data)
            return
        try:
            frames = self._decoder.feed(data, limit=1)
        except WireError as error:
            self.reply.set_exception(error)
            self.abort()
            return
        if frames:
            self.reply.set_result(frames[0])
            rest = self._decoder.take_rest()
            if rest:
                super().data_received(rest)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.expect_reply and not self.reply.done():
            self.reply.set_exception(ClosedError("engine closed the connection"))
        super().connection_lost(exc)


async def open_pipe(dialer: EngineDialer, first: pb.Message, reply: str | None = None) -> Pipe:
    """Dial the engine for a data connection and return it as a pipe (not yet spliced).

    With `reply` (non-zero-RTT), wait for that response frame and raise `EngineRejected` on an error.
    """
    _, pipe = await dialer.connect(_ReplyPipe)
    assert pipe.transport is not None
    pipe.expect_reply = reply is not None
    pipe.transport.write(encode_frame(first))
    if reply is not None:
        try:
            check_reply(await asyncio.wait_for(pipe.reply, dialer.options.operation_timeout_s), reply)
        except BaseException:
            pipe.abort()
            raise
    return pipe


async def open_upstream(host: str, port: int, timeout_s: float) -> Pipe:
    """Connect to the local service a tunnel forwards to."""
    loop = asyncio.get_running_loop()
    try:
        _, pipe = await asyncio.wait_for(loop.create_connection(Pipe, host, port), timeout_s)
    except (OSError, TimeoutError) as error:
        raise UpstreamUnreachable(f"cannot reach {host}:{port}: {error}") from error
    return pipe
