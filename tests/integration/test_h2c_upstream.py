"""`http_version: h2c`: the engine speaks HTTP/2 in cleartext to the upstream, multiplexing visitor
requests on pooled upstream connections, with trailers passed through (gRPC)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.settings
import httpx

from tests.conftest import UNIT_S, EngineHandle

WAIT_S = 10 * UNIT_S


@dataclass
class H2cUpstream:
    """An HTTP/2 (prior knowledge) service on the h2 library: echoes method, path and body, with a
    `grpc-status` trailer; `/slow` answers after 0.2 s. An extended CONNECT (RFC 8441 WebSocket) is
    accepted with 200 and its bytes are echoed upper-cased until the client ends the stream."""

    connections: int = 0
    requests: list[dict[bytes, bytes]] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        conn.local_settings = h2.settings.Settings(
            client=False, initial_values={h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1})
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        bodies: dict[int, bytearray] = {}
        heads: dict[int, dict[bytes, bytes]] = {}
        window_opened = asyncio.Event()
        answers: set[asyncio.Task[None]] = set()

        def spawn(sid: int) -> None:
            task = asyncio.ensure_future(answer(sid))
            answers.add(task)
            task.add_done_callback(answers.discard)

        async def answer(sid: int) -> None:
            head = heads[sid]
            if head[b":path"].startswith(b"/slow"):
                await asyncio.sleep(0.2)
            payload = b"%s %s\n" % (head[b":method"], head[b":path"]) + bytes(bodies[sid])
            conn.send_headers(sid, [(b":status", b"200"), (b"content-type", b"application/grpc")])
            while payload:  # within the engine's windows
                window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                if window <= 0:
                    writer.write(conn.data_to_send())
                    window_opened.clear()
                    await asyncio.wait_for(window_opened.wait(), WAIT_S)
                    continue
                conn.send_data(sid, payload[:window])
                payload = payload[window:]
            conn.send_headers(sid, [(b"grpc-status", b"0"), (b"grpc-message", b"ok")], end_stream=True)
            writer.write(conn.data_to_send())

        try:
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        heads[event.stream_id] = dict(event.headers)  # type: ignore[arg-type]
                        self.requests.append(heads[event.stream_id])
                        bodies[event.stream_id] = bytearray()  # answered at StreamEnded (h2 sends one for
                        # END_STREAM on the headers too)
                        if heads[event.stream_id].get(b":protocol") == b"websocket":
                            conn.send_headers(event.stream_id, [(b":status", b"200")])
                    elif isinstance(event, h2.events.DataReceived):
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                        if heads[event.stream_id].get(b":protocol") == b"websocket":
                            conn.send_data(event.stream_id, event.data.upper())
                        else:
                            bodies[event.stream_id] += event.data
                    elif isinstance(event, h2.events.StreamEnded):
                        if heads[event.stream_id].get(b":protocol") == b"websocket":
                            conn.end_stream(event.stream_id)
                        else:
                            spawn(event.stream_id)
                    elif isinstance(event, h2.events.WindowUpdated):
                        window_opened.set()
                writer.write(conn.data_to_send())
        except ConnectionError:
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def h2c_tunnel(engine: EngineHandle) -> AsyncIterator[tuple[str, H2cUpstream]]:
    upstream = H2cUpstream()
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    upstream.port = server.sockets[0].getsockname()[1]
    control = await engine.client().connect()
    tunnel = await control.create_tunnel(protocol="http", http_version="h2c")
    assert tunnel.properties.http_version == "h2c" and tunnel.properties.hostname is not None
    forwarding = asyncio.ensure_future(tunnel.forward_to("127.0.0.1", upstream.port))
    try:
        yield tunnel.properties.hostname, upstream
    finally:
        forwarding.cancel()
        await control.close()
        server.close()


async def test_http2_visitors_multiplex_onto_one_h2c_upstream_connection(engine: EngineHandle) -> None:
    async with h2c_tunnel(engine) as (hostname, upstream), \
            httpx.AsyncClient(http2=True, verify=engine.visitor_tls()) as client:

        async def get(path: str, body: bytes = b"") -> httpx.Response:
            return await asyncio.wait_for(client.request(
                "POST" if body else "GET", f"https://127.0.0.1:{engine.port}{path}", content=body or None,
                headers={"host": hostname, "te": "trailers"}, extensions={"sni_hostname": hostname}), WAIT_S)

        first = await get("/hello?x=1")
        assert first.status_code == 200 and first.http_version == "HTTP/2"
        assert first.content == b"GET /hello?x=1\n"
        head = upstream.requests[-1]
        assert head[b":authority"] == hostname.encode() and head[b":scheme"] == b"http"
        assert head[b"x-forwarded-for"] == b"127.0.0.1" and head[b"x-forwarded-proto"] == b"https"
        assert head[b"te"] == b"trailers"
        responses = await asyncio.gather(*(get(f"/slow{i}") for i in range(10)))
        assert sorted(r.content for r in responses) == sorted(b"GET /slow%d\n" % i for i in range(10))
        big = bytes(range(256)) * 4096  # 1 MiB: beyond every default window
        echoed = await get("/upload", big)
        assert echoed.content == b"POST /upload\n" + big
        assert upstream.connections == 1  # every request, concurrent ones included, on one upstream connection


async def test_trailers_reach_an_http2_visitor(engine: EngineHandle) -> None:
    async with h2c_tunnel(engine) as (hostname, _):
        ctx = engine.visitor_tls()
        ctx.set_alpn_protocols(["h2"])
        reader, writer = await asyncio.open_connection("127.0.0.1", engine.port, ssl=ctx, server_hostname=hostname)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        conn.initiate_connection()
        conn.send_headers(1, [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", hostname.encode()),
                              (b":path", b"/pkg.Service/Call"), (b"te", b"trailers"),
                              (b"content-type", b"application/grpc")])
        conn.send_data(1, b"\x00\x00\x00\x00\x02hi", end_stream=True)
        writer.write(conn.data_to_send())
        trailers: dict[bytes, bytes] = {}
        ended = False
        try:
            while not ended:
                data = await asyncio.wait_for(reader.read(65536), WAIT_S)
                assert data
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.TrailersReceived):
                        trailers = dict(event.headers)  # type: ignore[arg-type]
                    elif isinstance(event, h2.events.StreamEnded):
                        ended = True
                writer.write(conn.data_to_send())
        finally:
            writer.close()
        assert trailers == {b"grpc-status": b"0", b"grpc-message": b"ok"}


async def test_http1_visitors_are_translated_to_the_h2c_upstream(engine: EngineHandle) -> None:
    async with h2c_tunnel(engine) as (hostname, upstream), \
            httpx.AsyncClient(http1=True, http2=False, verify=engine.visitor_tls()) as client:

        async def call(path: str, body: bytes = b"") -> httpx.Response:
            return await asyncio.wait_for(client.request(
                "POST" if body else "GET", f"https://127.0.0.1:{engine.port}{path}", content=body or None,
                headers={"host": hostname}, extensions={"sni_hostname": hostname}), WAIT_S)

        response = await call("/one?a=b")
        assert response.http_version == "HTTP/1.1" and response.status_code == 200
        assert response.content == b"GET /one?a=b\n"
        assert response.headers["transfer-encoding"] == "chunked"  # the upstream gave no length
        head = upstream.requests[-1]
        assert head[b":authority"] == hostname.encode() and head[b"x-forwarded-proto"] == b"https"
        upload = b"u" * 300_000
        response = await call("/up", upload)
        assert response.content == b"POST /up\n" + upload
        assert (await call("/two")).content == b"GET /two\n"  # same visitor connection, same upstream one
        assert upstream.connections == 1


async def test_http1_connect_to_an_h2c_upstream_is_refused_clearly(engine: EngineHandle) -> None:
    async with h2c_tunnel(engine) as (hostname, upstream):
        reader, writer = await engine.open_visitor(hostname)
        try:
            writer.write(b"CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(4096), WAIT_S)
            assert answer.startswith(b"HTTP/1.1 501 ")
        finally:
            writer.close()
        assert upstream.requests == []


async def test_a_burst_on_a_cold_tunnel_opens_one_upstream_connection(engine: EngineHandle) -> None:
    async with h2c_tunnel(engine) as (hostname, upstream), \
            httpx.AsyncClient(http2=True, verify=engine.visitor_tls()) as client:
        responses = await asyncio.gather(*(asyncio.wait_for(client.get(
            f"https://127.0.0.1:{engine.port}/b{i}", headers={"host": hostname}, extensions={"sni_hostname": hostname}),
            WAIT_S) for i in range(8)))
        assert sorted(r.content for r in responses) == sorted(b"GET /b%d\n" % i for i in range(8))
        assert upstream.connections == 1


async def test_websocket_over_http2_to_an_h2c_upstream(engine: EngineHandle) -> None:
    """Extended CONNECT end to end: visitor and upstream both speak RFC 8441; the stream carries the bytes."""
    async with h2c_tunnel(engine) as (hostname, upstream):
        ctx = engine.visitor_tls()
        ctx.set_alpn_protocols(["h2"])
        reader, writer = await asyncio.open_connection("127.0.0.1", engine.port, ssl=ctx, server_hostname=hostname)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        conn.initiate_connection()
        conn.send_headers(1, [(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"https"),
                              (b":authority", hostname.encode()), (b":path", b"/ws"),
                              (b"sec-websocket-version", b"13")])
        writer.write(conn.data_to_send())
        status, echoed, ended = 0, bytearray(), False
        sent = False
        try:
            while not ended:
                data = await asyncio.wait_for(reader.read(65536), WAIT_S)
                assert data
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        status = int(dict(event.headers)[b":status"])  # type: ignore[arg-type]
                    elif isinstance(event, h2.events.DataReceived):
                        echoed += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        ended = True
                if status == 200 and not sent:
                    conn.send_data(1, b"frame-bytes", end_stream=True)
                    sent = True
                writer.write(conn.data_to_send())
        finally:
            writer.close()
        assert status == 200 and bytes(echoed) == b"FRAME-BYTES"
        assert upstream.requests[-1][b":protocol"] == b"websocket"
        assert upstream.requests[-1][b":method"] == b"CONNECT"


async def test_http1_websocket_upgrade_to_an_h2c_upstream(engine: EngineHandle) -> None:
    """An HTTP/1.1 Upgrade becomes an extended CONNECT upstream; the visitor gets a proper 101."""
    async with h2c_tunnel(engine) as (hostname, upstream):
        reader, writer = await engine.open_visitor(hostname)
        try:
            key = "dGhlIHNhbXBsZSBub25jZQ=="
            writer.write(f"GET /ws HTTP/1.1\r\nHost: {hostname}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
            assert head.startswith(b"HTTP/1.1 101 ")
            assert b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head  # RFC 6455 example key
            writer.write(b"raw websocket bytes")
            assert await asyncio.wait_for(reader.readexactly(19), WAIT_S) == b"RAW WEBSOCKET BYTES"
        finally:
            writer.close()
        assert upstream.requests[-1][b":method"] == b"CONNECT"
        assert upstream.requests[-1][b":protocol"] == b"websocket"


async def test_pipelined_http1_requests_get_their_responses_in_order(engine: EngineHandle) -> None:
    """The upstream answers the second request first (the first is slow): the visitor still reads them in
    request order, the later one held meanwhile."""
    async with h2c_tunnel(engine) as (hostname, _):
        reader, writer = await engine.open_visitor(hostname)
        try:
            writer.write(f"GET /slow-first HTTP/1.1\r\nHost: {hostname}\r\n\r\n"
                         f"GET /fast-second HTTP/1.1\r\nHost: {hostname}\r\n\r\n".encode())
            received = b""
            while received.count(b"0\r\n\r\n") < 2:
                chunk = await asyncio.wait_for(reader.read(65536), WAIT_S)
                assert chunk
                received += chunk
        finally:
            writer.close()
        assert received.index(b"GET /slow-first") < received.index(b"GET /fast-second")
