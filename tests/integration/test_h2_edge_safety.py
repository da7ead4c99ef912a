"""Regression tests from the review of the HTTP/2 edge: no request smuggling through pooled HTTP/1.1
upstream connections, and no flow-control window that leaks until a connection freezes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import pytest

from tests.conftest import UNIT_S, EchoServer, EngineHandle, forwarded_hostname

WAIT_S = 5 * UNIT_S
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Client:
    """A bare HTTP/2 client (h2) over real TLS to the engine, for frames httpx would never send."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, window: int | None = None) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        if window is not None:
            self.conn.local_settings = h2.settings.Settings(
                client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.conn.initiate_connection()
        self.events: list[h2.events.Event] = []
        self.flush()

    @classmethod
    async def open(cls, engine: EngineHandle, hostname: str, window: int | None = None) -> Client:
        ctx = engine.visitor_tls()
        ctx.set_alpn_protocols(["h2"])
        reader, writer = await asyncio.open_connection("127.0.0.1", engine.port, ssl=ctx, server_hostname=hostname)
        return cls(reader, writer, window)

    def flush(self) -> None:
        self.writer.write(self.conn.data_to_send())

    async def pump(self, until: Callable[[], bool], timeout: float = WAIT_S) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not until():
            try:
                data = await asyncio.wait_for(self.reader.read(65536), max(deadline - loop.time(), 0.01))
            except TimeoutError:
                return False
            if not data:
                return until()
            for event in self.conn.receive_data(data):
                self.events.append(event)
                if isinstance(event, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            self.flush()
        return True

    def ended(self, sid: int) -> bool:
        return any(isinstance(e, h2.events.StreamEnded | h2.events.StreamReset) and e.stream_id == sid
                   for e in self.events)

    def status(self, sid: int) -> bytes | None:
        for e in self.events:
            if isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid:
                return dict(e.headers)[b":status"]  # type: ignore[arg-type]
        return None

    def head(self, sid: int, method: bytes, path: bytes, hostname: str, *extra: tuple[bytes, bytes],
             end: bool = False) -> None:
        self.conn.send_headers(sid, [(b":method", method), (b":scheme", b"https"), (b":authority", hostname.encode()),
                                     (b":path", path), *extra], end_stream=end)
        self.flush()

    def close(self) -> None:
        self.writer.close()


def answering_first(seen: list[str]) -> Handler:
    """An HTTP/1.1 upstream that answers as soon as a head is in (as many frameworks do), then reads
    the declared body; `seen` gets each request line."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                seen.append(lines[0])
                length = sum(int(line.split(":", 1)[1]) for line in lines[1:]
                             if line.lower().startswith("content-length:"))
                status = "404 Not Found" if "upgrade: websocket" in head.decode("latin-1").lower() else "200 OK"
                writer.write(f"HTTP/1.1 {status}\r\ncontent-length: 2\r\n\r\nok".encode())
                await writer.drain()
                if length:
                    await reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return handle


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


SMUGGLED = b"GET /admin HTTP/1.1\r\nhost: internal\r\nx-forwarded-for: 6.6.6.6\r\n\r\n"


async def test_a_length_announced_on_a_bodiless_head_is_refused(engine: EngineHandle) -> None:
    seen: list[str] = []
    async with serve(answering_first(seen)) as port, forwarded_hostname(engine, port) as hostname:
        attacker = await Client.open(engine, hostname)
        try:
            attacker.head(1, b"GET", b"/p1", hostname, (b"content-length", b"%d" % len(SMUGGLED)), end=True)
            assert await attacker.pump(lambda: attacker.ended(1))
            assert attacker.status(1) == b"400"
            attacker.head(3, b"GET", b"/p3", hostname, end=True)
            assert await attacker.pump(lambda: attacker.ended(3))
        finally:
            attacker.close()
    assert seen == ["GET /p3 HTTP/1.1"]


async def test_an_upload_answered_early_never_returns_its_connection_to_the_pool(engine: EngineHandle) -> None:
    seen: list[str] = []
    async with serve(answering_first(seen)) as port, forwarded_hostname(engine, port) as hostname:
        client = await Client.open(engine, hostname)
        try:
            client.head(1, b"POST", b"/upload", hostname, (b"content-length", b"%d" % len(SMUGGLED)))
            assert await client.pump(lambda: client.status(1) is not None)  # answered before the body
            client.conn.send_data(1, SMUGGLED, end_stream=True)
            client.flush()
            assert await client.pump(lambda: client.ended(1))
            await asyncio.sleep(0.1)
            client.head(3, b"GET", b"/next", hostname, end=True)
            assert await client.pump(lambda: client.ended(3))
        finally:
            client.close()
    assert "GET /admin HTTP/1.1" not in seen
    assert seen[-1] == "GET /next HTTP/1.1"


async def test_bytes_sent_before_a_refused_websocket_upgrade_never_reach_the_upstream(engine: EngineHandle) -> None:
    seen: list[str] = []
    async with serve(answering_first(seen)) as port, forwarded_hostname(engine, port) as hostname:
        client = await Client.open(engine, hostname)
        try:
            await client.pump(lambda: False, timeout=0.2)  # the engine's SETTINGS (extended CONNECT on)
            client.head(1, b"CONNECT", b"/ws", hostname, (b":protocol", b"websocket"))
            client.conn.send_data(1, SMUGGLED)
            client.flush()
            assert await client.pump(lambda: client.ended(1))
            assert client.status(1) == b"404"
            await asyncio.sleep(0.2)
        finally:
            client.close()
    assert seen == ["GET /ws HTTP/1.1"]


@pytest.mark.parametrize("cancelled", [1, 3])
async def test_cancelled_uploads_give_back_the_connection_window(engine: EngineHandle, cancelled: int) -> None:
    """A browser cancelling uploads must not leave the visitor's connection window at zero."""
    async with EchoServer(http=True) as upstream, forwarded_hostname(engine, upstream.port) as hostname:
        client = await Client.open(engine, hostname)
        try:
            await client.pump(lambda: False, timeout=0.2)
            sid = 1
            for _ in range(cancelled):
                client.head(sid, b"POST", b"/gone", hostname)
                client.conn.send_data(sid, b"a" * 15000)
                client.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
                client.flush()
                sid += 2
            await client.pump(lambda: False, timeout=0.3)
            body = b"b" * 60000
            client.head(sid, b"POST", b"/ok", hostname, (b"content-length", b"%d" % len(body)))
            while body:
                window = min(client.conn.local_flow_control_window(sid), client.conn.max_outbound_frame_size)
                if window <= 0:
                    assert await client.pump(lambda: client.conn.local_flow_control_window(sid) > 0), "window stuck"
                    continue
                client.conn.send_data(sid, body[:window], end_stream=len(body) <= window)
                body = body[window:]
                client.flush()
            assert await client.pump(lambda: client.ended(sid))
            assert client.status(sid) == b"200"
        finally:
            client.close()


async def test_an_error_page_larger_than_the_visitors_window_arrives_whole(engine: EngineHandle) -> None:
    async with EchoServer(http=True) as upstream, forwarded_hostname(engine, upstream.port) as hostname:
        client = await Client.open(engine, hostname, window=64)  # a stream window smaller than any page
        try:
            client.head(1, b"GET", b"/", "nobody.t.localhost", end=True)
            assert await client.pump(lambda: client.ended(1))
            body = b"".join(e.data for e in client.events
                            if isinstance(e, h2.events.DataReceived) and e.stream_id == 1)
            assert client.status(1) == b"404" and body.endswith(b"</html>") and len(body) > 64
        finally:
            client.close()
