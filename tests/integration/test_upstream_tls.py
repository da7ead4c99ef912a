"""`upstream_tls`: the engine speaks TLS to the tunnel's upstream through the agent's stream, for
HTTP/1.1 and HTTP/2 visitors alike; the agent only relays bytes."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator

import httpx
import pytest
import trustme

from portway.errors import EngineRejected
from portway.wire.codes import ErrorCode
from tests.conftest import UNIT_S, EngineHandle, forwarded_hostname, http_get

WAIT_S = 10 * UNIT_S


@contextlib.asynccontextmanager
async def https_upstream() -> AsyncIterator[tuple[int, list[str]]]:
    """A local HTTPS service with a self-signed certificate; answers every request with its TLS version."""
    cert = trustme.CA().issue_cert("localhost")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(ctx)
    seen: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                seen.append(head.split(b" ", 2)[1].decode())
                body = f"tls={writer.get_extra_info('ssl_object').version()} {head.split(b' ', 2)[1].decode()}"
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body.encode()))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()


def tls_upstream_tunnel(engine: EngineHandle, port: int) -> contextlib.AbstractAsyncContextManager[str]:
    return forwarded_hostname(engine, port, upstream_tls=True)


async def test_http1_visitor_reaches_an_https_upstream(engine: EngineHandle) -> None:
    async with https_upstream() as (port, seen), tls_upstream_tunnel(engine, port) as hostname:
        reader, writer = await engine.open_visitor(hostname)
        try:
            for path in ("/one", "/two"):
                status, body = await http_get(reader, writer, hostname, path)
                assert status == 200
                assert body == f"tls=TLSv1.3 {path}".encode()
        finally:
            writer.close()
        assert seen == ["/one", "/two"]


async def test_http2_visitor_reaches_an_https_upstream(engine: EngineHandle) -> None:
    async with https_upstream() as (port, _), tls_upstream_tunnel(engine, port) as hostname, \
            httpx.AsyncClient(http2=True, verify=engine.visitor_tls()) as client:
        responses = await asyncio.gather(*(
            client.get(f"https://127.0.0.1:{engine.port}/p{i}", headers={"host": hostname},
                       extensions={"sni_hostname": hostname}) for i in range(5)))
        assert [r.http_version for r in responses] == ["HTTP/2"] * 5
        assert sorted(r.text for r in responses) == [f"tls=TLSv1.3 /p{i}" for i in range(5)]


async def test_an_upstream_without_tls_is_502(engine: EngineHandle) -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")  # not a TLS server
        writer.close()

    server = await asyncio.start_server(plain, "127.0.0.1", 0)
    try:
        async with tls_upstream_tunnel(engine, server.sockets[0].getsockname()[1]) as hostname:
            reader, writer = await engine.open_visitor(hostname)
            try:
                status, body = await http_get(reader, writer, hostname, "/")
                assert status == 502 and b"TLS to the service" in body
            finally:
                writer.close()
            async with httpx.AsyncClient(http2=True, verify=engine.visitor_tls()) as client:
                response = await client.get(f"https://127.0.0.1:{engine.port}/", headers={"host": hostname},
                                            extensions={"sni_hostname": hostname})
                assert response.status_code == 502
    finally:
        server.close()


@pytest.mark.parametrize("fields", [{"protocol": "http", "publish": False}, {"protocol": "tls"}])
async def test_upstream_tls_is_refused_where_the_engine_does_not_parse_http(engine: EngineHandle,
                                                                         fields: dict[str, object]) -> None:
    control = await engine.client().connect()
    try:
        with pytest.raises(EngineRejected) as caught:
            await control.create_tunnel(upstream_tls=True, **fields)
        assert caught.value.code in (ErrorCode.FEATURE_NOT_AVAILABLE, ErrorCode.INVALID_REQUEST)
    finally:
        await control.close()


async def test_an_upstream_choosing_http2_by_alpn_gets_http2(engine: EngineHandle) -> None:
    """The HTTP/2 edge offers h2 to a TLS upstream; one that picks it is spoken to in HTTP/2 (pooled,
    multiplexed), while HTTP/1.1 visitors still reach it over http/1.1."""
    from tests.integration.test_h2c_upstream import H2cUpstream

    h2_upstream = H2cUpstream()
    cert = trustme.CA().issue_cert("localhost")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(ctx)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    h1_requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if writer.get_extra_info("ssl_object").selected_alpn_protocol() == "h2":
            await h2_upstream.handle(reader, writer)
            return
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            h1_requests.append(head.split(b"\r\n", 1)[0])
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nvia h1\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    try:
        async with tls_upstream_tunnel(engine, server.sockets[0].getsockname()[1]) as hostname, \
                httpx.AsyncClient(http2=True, verify=engine.visitor_tls()) as client:
            first = await client.get(f"https://127.0.0.1:{engine.port}/first", headers={"host": hostname},
                                     extensions={"sni_hostname": hostname})
            assert first.content == b"GET /first\n" and first.http_version == "HTTP/2"
            assert h2_upstream.requests[-1][b":scheme"] == b"https"
            responses = await asyncio.gather(*(
                client.get(f"https://127.0.0.1:{engine.port}/slow{i}", headers={"host": hostname},
                           extensions={"sni_hostname": hostname}) for i in range(6)))
            assert sorted(r.content for r in responses) == sorted(b"GET /slow%d\n" % i for i in range(6))
            assert h2_upstream.connections == 1  # six requests multiplexed on one upstream HTTP/2 connection
            reader, writer = await engine.open_visitor(hostname)
            try:
                status, body = await http_get(reader, writer, hostname, "/h1")
            finally:
                writer.close()
            assert (status, body) == (200, b"via h1\n")
            assert h1_requests == [b"GET /h1 HTTP/1.1"]
    finally:
        server.close()
