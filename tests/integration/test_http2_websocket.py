"""WebSocket over HTTP/2 (RFC 8441 extended CONNECT) to an HTTP/1.1 WebSocket upstream: the engine
turns the CONNECT into the HTTP/1.1 upgrade handshake, checks the upstream's accept key, and relays
the WebSocket frames unchanged both ways."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import struct
from collections.abc import AsyncIterator

import h2.config
import h2.connection
import h2.events
import h2.settings
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from tests.conftest import UNIT_S, EngineHandle, forwarded_hostname

WAIT_S = 10 * UNIT_S


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (RFC 6455 §5.2)."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_parse(buffer: bytearray) -> tuple[int, bytes] | None:
    """One unmasked server frame from the front of `buffer`, or None if incomplete."""
    if len(buffer) < 2:
        return None
    opcode, size = buffer[0] & 0x0F, buffer[1] & 0x7F
    offset = 2
    if size == 126:
        if len(buffer) < 4:
            return None
        size, offset = struct.unpack("!H", buffer[2:4])[0], 4
    elif size == 127:
        if len(buffer) < 10:
            return None
        size, offset = struct.unpack("!Q", buffer[2:10])[0], 10
    if len(buffer) < offset + size:
        return None
    payload = bytes(buffer[offset:offset + size])
    del buffer[:offset + size]
    return opcode, payload


class H2WebSocket:
    """A minimal RFC 8441 client on the h2 library over real TLS."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.stream_id = 1
        self.status: int | None = None
        self.headers: dict[bytes, bytes] = {}
        self.data = bytearray()
        self.ended = False
        self.connect_protocol = False

    def flush(self) -> None:
        self.writer.write(self.conn.data_to_send())

    async def pump(self) -> None:
        """Read until at least one event arrived."""
        data = await asyncio.wait_for(self.reader.read(65536), WAIT_S)
        assert data, "engine closed the connection"
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.RemoteSettingsChanged):
                setting = event.changed_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL)
                self.connect_protocol = self.connect_protocol or bool(setting and setting.new_value)
            elif isinstance(event, h2.events.ResponseReceived):
                self.headers = dict(event.headers)  # type: ignore[arg-type]
                self.status = int(self.headers[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                self.data += event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self.ended = True
        self.flush()

    async def open(self, hostname: str, path: str) -> None:
        self.conn.initiate_connection()
        self.flush()
        while not self.connect_protocol:
            await self.pump()
        self.conn.send_headers(self.stream_id, [
            (b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"https"), (b":path", path.encode()),
            (b":authority", hostname.encode()), (b"sec-websocket-version", b"13"),
            (b"sec-websocket-protocol", b"chat")])
        self.flush()
        while self.status is None:
            await self.pump()

    async def send(self, opcode: int, payload: bytes, *, end: bool = False) -> None:
        """Send a frame within the engine's flow-control windows (waiting for WINDOW_UPDATEs)."""
        data = ws_frame(opcode, payload)
        while data:
            window = min(self.conn.local_flow_control_window(self.stream_id), self.conn.max_outbound_frame_size)
            if window <= 0:
                await self.pump()
                continue
            piece, data = data[:window], data[window:]
            self.conn.send_data(self.stream_id, piece, end_stream=end and not data)
            self.flush()

    async def receive(self) -> tuple[int, bytes]:
        while (frame := ws_parse(self.data)) is None:
            await self.pump()
        return frame


@contextlib.asynccontextmanager
async def websocket_tunnel(engine: EngineHandle) -> AsyncIterator[str]:
    async def echo_upper(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message.upper() if isinstance(message, str) else message[::-1])

    def refuse(ws: ServerConnection, request: Request) -> Response | None:
        if request.path == "/forbidden":
            return Response(403, "Forbidden", Headers([("Content-Length", "2")]), b"no")
        return None

    async with serve(echo_upper, "127.0.0.1", 0, subprotocols=["chat"], process_request=refuse) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with forwarded_hostname(engine, port) as hostname:
            yield hostname


async def h2_connect(engine: EngineHandle, hostname: str) -> H2WebSocket:
    ctx = engine.visitor_tls()
    ctx.set_alpn_protocols(["h2"])
    reader, writer = await asyncio.open_connection("127.0.0.1", engine.port, ssl=ctx, server_hostname=hostname)
    ssl_object = writer.get_extra_info("ssl_object")
    assert isinstance(ssl_object, ssl.SSLObject) and ssl_object.selected_alpn_protocol() == "h2"
    return H2WebSocket(reader, writer)


async def test_websocket_over_http2_to_an_http1_upstream(engine: EngineHandle) -> None:
    async with websocket_tunnel(engine) as hostname:
        client = await h2_connect(engine, hostname)
        try:
            await client.open(hostname, "/ws")
            assert client.status == 200
            assert client.headers.get(b"sec-websocket-protocol") == b"chat"
            assert b"sec-websocket-accept" not in client.headers and b"upgrade" not in client.headers
            await client.send(0x1, b"hello")
            assert await client.receive() == (0x1, b"HELLO")
            big = os.urandom(200_000)
            await client.send(0x2, big)
            assert await client.receive() == (0x2, big[::-1])
            await client.send(0x8, struct.pack("!H", 1000), end=True)  # close frame, then end of our side
            opcode, payload = await client.receive()
            assert opcode == 0x8 and payload[:2] == struct.pack("!H", 1000)
            while not client.ended:
                await client.pump()
        finally:
            client.writer.close()


async def test_a_refused_websocket_upgrade_is_relayed_as_a_response(engine: EngineHandle) -> None:
    async with websocket_tunnel(engine) as hostname:
        client = await h2_connect(engine, hostname)
        try:
            await client.open(hostname, "/forbidden")
            assert client.status == 403
            while not client.ended:
                await client.pump()
            assert bytes(client.data) == b"no"
        finally:
            client.writer.close()


async def test_plain_connect_over_http2_is_relayed_to_the_upstream(engine: EngineHandle) -> None:
    """RFC 9113 §8.5 CONNECT from an HTTP/2 visitor becomes `CONNECT host:port` upstream; a 2xx turns the
    stream into a byte relay, anything else is relayed as a response."""
    seen: list[bytes] = []

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head.split(b"\r\n", 1)[0])
        if b"forbidden" in head.split(b"\r\n", 1)[0]:
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno")
        else:
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            while data := await reader.read(65536):
                writer.write(data[::-1])
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    try:
        async with forwarded_hostname(engine, server.sockets[0].getsockname()[1]) as hostname:
            for target, expected in ((b"db.internal:5432", 200), (b"forbidden.internal:1", 403)):
                client = await h2_connect(engine, hostname)
                try:
                    client.conn.initiate_connection()
                    client.conn.send_headers(1, [(b":method", b"CONNECT"), (b":authority", target)])
                    client.flush()
                    while client.status is None:
                        await client.pump()
                    assert client.status == expected
                    if expected == 200:
                        client.conn.send_data(1, b"hello", end_stream=True)
                        client.flush()
                        while not client.ended:
                            await client.pump()
                        assert bytes(client.data) == b"olleh"
                finally:
                    client.writer.close()
            assert seen == [b"CONNECT db.internal:5432 HTTP/1.1", b"CONNECT forbidden.internal:1 HTTP/1.1"]
    finally:
        server.close()
