"""HTTP/2 visitors (ALPN h2) in front of HTTP/1.1 upstreams: requests multiplexed on one connection,
bodies streamed both ways under HTTP/2 flow control, upstream connections pooled and reused, and
every error a visitor can meet answered on its own stream."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

import h11
import httpx
import pytest

from portway.agent import ControlChannel, Tunnel
from tests.conftest import UNIT_S, EngineHandle, running_engine

WAIT_S = 10 * UNIT_S


@dataclass
class Upstream:
    """An HTTP/1.1 service (h11) with routes that exercise framing: sized, chunked, until-close,
    HEAD, 204, echo of any request body, and a broken response."""

    port: int = 0
    connections: int = 0
    open_connections: int = 0
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_connections += 1
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    conn.receive_data(data)
                    if not data and conn.their_state is not h11.DONE:
                        return
                    continue
                if isinstance(event, h11.ConnectionClosed):
                    return
                assert isinstance(event, h11.Request), event
                target = event.target.decode()
                headers = {k.decode(): v.decode() for k, v in event.headers}
                self.requests.append((target, headers))
                body = bytearray()
                while True:
                    part = conn.next_event()
                    if part is h11.NEED_DATA:
                        conn.receive_data(await reader.read(65536))
                    elif isinstance(part, h11.Data):
                        body += part.data
                    elif isinstance(part, h11.EndOfMessage):
                        break
                if not await self.respond(conn, writer, event.method.decode(), target, bytes(body)):
                    return
                await writer.drain()
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (ConnectionError, h11.RemoteProtocolError):
            pass
        finally:
            self.open_connections -= 1
            writer.close()

    async def respond(self, conn: h11.Connection, writer: asyncio.StreamWriter, method: str, target: str,
                      body: bytes) -> bool:
        path, _, query = target.partition("?")
        params = dict(parse_qsl(query))

        def send(*events: h11.Event) -> None:
            for event in events:
                writer.write(conn.send(event) or b"")

        if path == "/big":
            size = int(params["n"])
            payload = os.urandom(16) * (size // 16)
            send(h11.Response(status_code=200, headers=[("content-length", str(len(payload)))]),
                 h11.Data(data=payload), h11.EndOfMessage())
        elif path == "/chunked":
            send(h11.Response(status_code=200, headers=[("transfer-encoding", "chunked")]))
            for i in range(5):
                send(h11.Data(data=b"part%d;" % i))
                await writer.drain()
            send(h11.EndOfMessage())
        elif path == "/until-close":
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
            await writer.drain()
            return False
        elif path == "/nocontent":
            send(h11.Response(status_code=204, headers=[]), h11.EndOfMessage())
        elif path == "/broken":
            writer.write(b"this is not HTTP\r\n\r\n")
            await writer.drain()
            return False
        elif path == "/slow":
            await asyncio.sleep(float(params["s"]))
            send(h11.Response(status_code=200, headers=[("content-length", "4")]), h11.Data(data=b"slow"),
                 h11.EndOfMessage())
        else:  # echo: method, target, and the body back
            payload = f"{method} {target}\n".encode() + body
            headers = [("content-length", str(len(payload))), ("x-echo", "1"), ("connection", "keep-alive, x-hop"),
                       ("x-hop", "hop-by-hop")]
            if method == "HEAD":
                send(h11.Response(status_code=200, headers=headers), h11.EndOfMessage())
            else:
                send(h11.Response(status_code=200, headers=headers), h11.Data(data=payload), h11.EndOfMessage())
        return True

    async def __aenter__(self) -> Upstream:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


@dataclass
class H2Site:
    engine: EngineHandle
    tunnel: Tunnel
    upstream: Upstream
    client: httpx.AsyncClient

    @property
    def hostname(self) -> str:
        assert self.tunnel.properties.hostname is not None
        return self.tunnel.properties.hostname

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.engine.port}{path}"

    async def request(self, method: str, path: str, host: str | None = None, **kwargs: object) -> httpx.Response:
        headers = {"host": host or self.hostname, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        return await asyncio.wait_for(self.client.request(  # type: ignore[arg-type]
            method, self.url(path), headers=headers, extensions={"sni_hostname": self.hostname}, **kwargs), WAIT_S)


@contextlib.asynccontextmanager
async def h2_site(engine: EngineHandle, **fields: object) -> AsyncIterator[H2Site]:
    async with Upstream() as upstream:
        control: ControlChannel = await engine.client().connect()
        tunnel = await control.create_tunnel(protocol="http", **fields)
        forwarding = asyncio.ensure_future(tunnel.forward_to("127.0.0.1", upstream.port))
        try:
            async with httpx.AsyncClient(http2=True, verify=engine.visitor_tls()) as client:
                yield H2Site(engine, tunnel, upstream, client)
        finally:
            forwarding.cancel()
            await control.close()


async def test_requests_and_bodies_over_http2_reuse_one_upstream_connection(engine: EngineHandle) -> None:
    async with h2_site(engine) as site:
        response = await site.request("GET", "/hello?x=1", headers={"cookie": "a=1", "x-forwarded-proto": "ftp"})
        assert response.http_version == "HTTP/2"
        assert response.status_code == 200
        assert response.content == b"GET /hello?x=1\n"
        assert response.headers["x-echo"] == "1"
        assert "x-hop" not in response.headers  # named by the upstream's Connection header: hop-by-hop
        target, headers = site.upstream.requests[-1]
        assert target == "/hello?x=1"
        assert headers["host"] == site.hostname
        assert headers["x-forwarded-for"] == "127.0.0.1"
        assert headers["x-forwarded-proto"] == "https"  # the visitor's own value is not trusted
        assert headers["x-forwarded-host"] == site.hostname
        assert headers["cookie"] == "a=1"

        upload = os.urandom(1 << 20)
        response = await site.request("POST", "/up", content=upload)  # with content-length
        assert response.content == b"POST /up\n" + upload

        async def stream_body() -> AsyncIterator[bytes]:
            for _ in range(8):
                yield b"z" * 100_000

        response = await site.request("PUT", "/chunks", content=stream_body())  # no length: chunked upstream
        assert response.content == b"PUT /chunks\n" + b"z" * 800_000
        assert site.upstream.requests[-1][1]["transfer-encoding"] == "chunked"
        assert site.upstream.connections == 1  # sequential requests share one pooled upstream connection


async def test_large_response_respects_flow_control(engine: EngineHandle) -> None:
    async with h2_site(engine) as site:
        response = await site.request("GET", "/big?n=8388608")
        assert response.status_code == 200 and len(response.content) == 8 * 1024 * 1024


async def test_concurrent_streams_each_get_their_own_upstream_then_are_pooled(engine: EngineHandle) -> None:
    async with h2_site(engine) as site:
        responses = await asyncio.gather(*(site.request("GET", f"/slow?s=0.2&i={i}") for i in range(12)))
        assert [r.status_code for r in responses] == [200] * 12
        assert [r.content for r in responses] == [b"slow"] * 12
        assert site.upstream.connections == 12  # one HTTP/1.1 connection per request in flight
        await asyncio.gather(*(site.request("GET", f"/again{i}") for i in range(12)))
        assert site.upstream.connections == 12  # the second wave reused the pool


@pytest.mark.parametrize(("path", "method", "status", "body"), [
    ("/chunked", "GET", 200, b"part0;part1;part2;part3;part4;"),
    ("/until-close", "GET", 200, b"all of it"),
    ("/nocontent", "GET", 204, b""),
    ("/head", "HEAD", 200, b""),
])
async def test_response_framings(engine: EngineHandle, path: str, method: str, status: int, body: bytes) -> None:
    async with h2_site(engine) as site:
        response = await site.request(method, path)
        assert (response.status_code, response.content) == (status, body)
        again = await site.request("GET", "/after")  # the connection and the pool are still sound
        assert again.content == b"GET /after\n"


async def test_errors_are_answered_per_stream(engine: EngineHandle) -> None:
    async with h2_site(engine) as site:
        broken = await site.request("GET", "/broken", headers={"accept": "application/json"})
        assert broken.status_code == 502
        assert broken.json()["host"] == site.hostname
        unknown = await site.request("GET", "/", host="nobody.t.localhost")
        assert unknown.status_code == 404
        ok = await site.request("GET", "/still-fine")
        assert ok.status_code == 200


async def test_unreachable_upstream_is_502(engine: EngineHandle) -> None:
    control = await engine.client().connect()
    tunnel = await control.create_tunnel(protocol="http")
    forwarding = asyncio.ensure_future(tunnel.forward_to("127.0.0.1", 9))  # nothing listens on port 9
    try:
        async with httpx.AsyncClient(http2=True, verify=engine.visitor_tls()) as client:
            hostname = tunnel.properties.hostname
            assert hostname is not None
            response = await client.get(f"https://127.0.0.1:{engine.port}/", headers={"host": hostname},
                                        extensions={"sni_hostname": hostname})
            assert response.http_version == "HTTP/2"
            assert response.status_code == 502
    finally:
        forwarding.cancel()
        await control.close()


async def test_a_reset_stream_leaves_the_others_working(engine: EngineHandle) -> None:
    async with h2_site(engine) as site:
        slow = asyncio.ensure_future(site.request("GET", "/slow?s=1"))
        await asyncio.sleep(0.2)
        slow.cancel()  # httpx resets the stream
        with contextlib.suppress(asyncio.CancelledError):
            await slow
        responses = await asyncio.gather(*(site.request("GET", f"/n{i}") for i in range(3)))
        assert all(r.status_code == 200 for r in responses)


async def test_idle_pooled_upstreams_are_closed(tmp_path: Path) -> None:
    async with running_engine(tmp_path, "  http_idle_seconds: 0.3\n") as engine, h2_site(engine) as site:
        assert (await site.request("GET", "/one")).status_code == 200
        assert site.upstream.open_connections == 1
        for _ in range(50):
            if site.upstream.open_connections == 0:
                break
            await asyncio.sleep(0.05)
        assert site.upstream.open_connections == 0
        assert (await site.request("GET", "/two")).status_code == 200  # a fresh stream is opened
        assert site.upstream.connections == 2


async def test_edge_policy_over_http2(engine: EngineHandle) -> None:
    async with h2_site(engine, token_auth=True) as site:
        assert (await site.request("GET", "/")).status_code == 401
        response = await site.request("GET", f"/q?rstream.token={engine.token()}&k=v")
        assert response.status_code == 200 and response.content == b"GET /q?k=v\n"
        response = await site.request("GET", "/h", headers={"authorization": f"Bearer {engine.token()}"})
        assert response.status_code == 200
        assert "authorization" not in site.upstream.requests[-1][1]
    async with h2_site(engine, trusted_ips=["10.0.0.0/8"]) as site:
        assert (await site.request("GET", "/")).status_code == 403
        assert site.upstream.connections == 0


async def test_http1_visitors_still_get_http1(engine: EngineHandle) -> None:
    async with h2_site(engine) as site:
        async with httpx.AsyncClient(http2=False, verify=engine.visitor_tls()) as client:
            response = await client.get(site.url("/h1"), headers={"host": site.hostname},
                                        extensions={"sni_hostname": site.hostname})
        assert response.http_version == "HTTP/1.1" and response.content == b"GET /h1\n"
