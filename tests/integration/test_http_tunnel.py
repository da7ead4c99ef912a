"""Published HTTP tunnels end to end: real TLS, real engine, our SDK as the agent."""

from __future__ import annotations

import asyncio

from tests.conftest import EchoServer, EngineHandle, http_get


async def test_http_tunnel_serves_requests_with_forwarded_headers(engine: EngineHandle) -> None:
    async with EchoServer(http=True) as upstream:
        control = await engine.client().connect()
        tunnel = await control.create_tunnel(protocol="http")
        forwarding = asyncio.ensure_future(tunnel.forward_to("127.0.0.1", upstream.port))
        hostname = tunnel.properties.hostname
        assert hostname is not None and hostname.endswith(".t.localhost")
        assert tunnel.forwarding_address == f"https://{hostname}:{engine.port}"
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
        forwarding.cancel()
        await control.close()
