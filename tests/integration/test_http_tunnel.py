"""Published HTTP tunnels end to end: real TLS, real engine, our SDK as the agent."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from portway import tls
from tests.conftest import EchoServer, EngineHandle, http_get


@contextlib.asynccontextmanager
async def http_tunnel(engine: EngineHandle) -> AsyncIterator[str]:
    """A published HTTP tunnel forwarding to a local echoing HTTP server; yields its hostname."""
    async with EchoServer(http=True) as upstream:
        control = await engine.client().connect()
        tunnel = await control.create_tunnel(protocol="http")
        forwarding = asyncio.ensure_future(tunnel.forward_to("127.0.0.1", upstream.port))
        hostname = tunnel.properties.hostname
        assert hostname is not None and hostname.endswith(".t.localhost")
        assert tunnel.forwarding_address == f"https://{hostname}:{engine.port}"
        try:
            yield hostname
        finally:
            forwarding.cancel()
            await control.close()


async def test_http_tunnel_serves_requests_with_forwarded_headers(engine: EngineHandle) -> None:
    async with http_tunnel(engine) as hostname:
        reader, writer = await engine.open_visitor(hostname)
        status, body = await http_get(reader, writer, hostname, "/a?b=1")
        assert status == 200
        assert body.startswith(b"GET /a?b=1 HTTP/1.1")
        assert b"X-Forwarded-For: 127.0.0.1" in body
        assert b"X-Forwarded-Proto: https" in body
        # keep-alive: a second request, with a body, on the same visitor connection
        status, body = await http_get(reader, writer, hostname, "/b", body=b"x" * 100_000)
        assert status == 200 and body.endswith(b"x" * 100_000)
        writer.close()


async def test_visitor_half_close_right_after_the_request_still_gets_the_response(engine: EngineHandle) -> None:
    """Request, then TLS close_notify at once (before the stream exists): the response still arrives."""
    async with http_tunnel(engine) as hostname:
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        transport, _ = await tls.connect(asyncio.get_running_loop(), lambda: protocol, "127.0.0.1", engine.port,
                                         context=engine.visitor_tls(), server_hostname=hostname, timeout_s=5)
        transport.write(f"GET /bye HTTP/1.1\r\nHost: {hostname}\r\nContent-Length: 0\r\n\r\n".encode())
        transport.write_eof()
        response = await asyncio.wait_for(reader.read(), 5)  # until the engine closes after the answer
        assert response.startswith(b"HTTP/1.1 200 OK")
        assert b"GET /bye HTTP/1.1" in response
        transport.close()
