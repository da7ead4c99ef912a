"""Edge TLS options on published http tunnels: the engine terminates their visitors with a context of the
tunnel's own — mTLS with the tunnel's CA, a minimum TLS version — for HTTP/1.1 and HTTP/2 alike, and
never serves such a tunnel on a connection another context ended."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trustme

from tests.conftest import UNIT_S, EchoServer, EngineHandle, forwarded_hostname, http_get, running_engine

WAIT_S = 10 * UNIT_S


@contextlib.asynccontextmanager
async def http_tunnel(engine: EngineHandle, **fields: object) -> AsyncIterator[tuple[str, EchoServer]]:
    async with EchoServer(http=True) as upstream, forwarded_hostname(engine, upstream.port, **fields) as hostname:
        yield hostname, upstream


def visitor_tls(engine: EngineHandle, cert: trustme.LeafCert | None = None, **options: object) -> ssl.SSLContext:
    ctx = engine.visitor_tls()
    if cert is not None:
        cert.configure_cert(ctx)
    for name, value in options.items():
        setattr(ctx, name, value)
    return ctx


async def get(engine: EngineHandle, hostname: str, ctx: ssl.SSLContext, *, sni: str | None = None) -> int:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(
        "127.0.0.1", engine.port, ssl=ctx, server_hostname=sni or hostname), WAIT_S)
    try:
        status, _ = await http_get(reader, writer, hostname, "/")
        return status
    finally:
        writer.close()


async def test_mtls_on_an_http_tunnel(engine: EngineHandle) -> None:
    ca = trustme.CA()
    async with http_tunnel(engine, mtls_auth=True, mtls_cacert_pem=ca.cert_pem.bytes().decode()) as (host, upstream):
        good = ca.issue_cert("visitor@example.com")
        assert await get(engine, host, visitor_tls(engine, good)) == 200
        for cert in (None, trustme.CA().issue_cert("intruder@example.com")):
            with pytest.raises((ConnectionError, ssl.SSLError, asyncio.IncompleteReadError)):
                await get(engine, host, visitor_tls(engine, cert))  # TLS 1.3: refused at the first read
        # The shared edge (SNI of the engine) must not be a way around the tunnel's client certificates.
        assert await get(engine, host, visitor_tls(engine), sni="localhost") == 421
        async with httpx.AsyncClient(http2=True, verify=visitor_tls(engine, good)) as client:
            response = await client.get(f"https://127.0.0.1:{engine.port}/h2", headers={"host": host},
                                        extensions={"sni_hostname": host})
            assert response.http_version == "HTTP/2" and response.status_code == 200
        assert upstream.peers  # reached only by the admitted visitors
    assert engine.engine is not None and engine.engine.ctx is not None
    assert engine.engine.ctx.counters.policy_denials.get(("http", "mtls_auth")) == 2


async def test_minimum_tls_version_on_an_http_tunnel(engine: EngineHandle) -> None:
    async with http_tunnel(engine, tls_min_version="tls1.3") as (host, _):
        assert await get(engine, host, visitor_tls(engine)) == 200
        with pytest.raises((ConnectionError, ssl.SSLError)):
            await get(engine, host, visitor_tls(engine, maximum_version=ssl.TLSVersion.TLSv1_2))


async def test_cleartext_listener_does_not_serve_an_mtls_tunnel(tmp_path: Path) -> None:
    ca = trustme.CA()
    serve = "http:\n  enabled: true\n  listen_addr: 127.0.0.1:0\n  serve_tunnels: true\n"
    async with running_engine(tmp_path, serve) as engine, \
            http_tunnel(engine, mtls_auth=True, mtls_cacert_pem=ca.cert_pem.bytes().decode()) as (host, upstream):
        assert engine.engine is not None and engine.engine.http_port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", engine.engine.http_port)
        try:
            status, _ = await http_get(reader, writer, host, "/")
        finally:
            writer.close()
        assert status == 421
        assert upstream.peers == []
