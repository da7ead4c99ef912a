"""HTTP/1.1 visitors share the tunnel's pooled agent streams: a visitor that leaves between requests
returns its stream (an upstream HTTP/1.1 connection at a message boundary) to the pool, and the next
visitor takes it instead of setting up a new stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from tests.conftest import UNIT_S, EchoServer, EngineHandle, forwarded_hostname, http_get, running_engine

WAIT_S = 10 * UNIT_S


@contextlib.asynccontextmanager
async def http_tunnel(engine: EngineHandle) -> AsyncIterator[tuple[str, EchoServer]]:
    async with EchoServer(http=True) as upstream, forwarded_hostname(engine, upstream.port) as hostname:
        yield hostname, upstream


async def one_visit(engine: EngineHandle, hostname: str, path: str, *, body: bytes = b"") -> bytes:
    reader, writer = await engine.open_visitor(hostname)
    try:
        status, answer = await http_get(reader, writer, hostname, path, body=body)
        assert status == 200
        return answer
    finally:
        writer.close()
        await writer.wait_closed()


async def settle() -> None:
    await asyncio.sleep(0.1)  # the engine notices the visitor's close


async def test_visitors_one_after_another_reuse_one_agent_stream(engine: EngineHandle) -> None:
    assert engine.engine is not None and engine.engine.ctx is not None
    broker = engine.engine.ctx.broker
    async with http_tunnel(engine) as (hostname, upstream):
        for i in range(4):
            answer = await one_visit(engine, hostname, f"/v{i}")
            assert answer.startswith(f"GET /v{i} HTTP/1.1".encode())
            assert b"X-Forwarded-For: 127.0.0.1" in answer
            await settle()
        assert upstream.peers == ["127.0.0.1"]  # one upstream connection for four visitors
        assert broker.streams_opened == 1


async def test_a_visitor_gone_mid_request_does_not_pool_its_stream(engine: EngineHandle) -> None:
    async with http_tunnel(engine) as (hostname, upstream):
        await one_visit(engine, hostname, "/first")
        await settle()
        _, writer = await engine.open_visitor(hostname)
        writer.write(f"POST /cut HTTP/1.1\r\nHost: {hostname}\r\nContent-Length: 100\r\n\r\nonly-part".encode())
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.close()  # leaves with the body unfinished: the upstream connection is mid-request
        await settle()
        answer = await one_visit(engine, hostname, "/after")
        assert answer.startswith(b"GET /after HTTP/1.1")
        assert len(upstream.peers) == 2  # a fresh stream, not the one left mid-request


async def test_pooled_streams_close_when_idle(tmp_path: Path) -> None:
    async with running_engine(tmp_path, "  http_idle_seconds: 0.3\n") as engine, \
            http_tunnel(engine) as (hostname, upstream):
        assert engine.engine is not None and engine.engine.ctx is not None
        await one_visit(engine, hostname, "/one")
        await settle()
        tunnel = engine.engine.ctx.registry.by_hostname(hostname)
        assert tunnel is not None
        assert engine.engine.ctx.upstreams.idle_count(tunnel) == 1
        for _ in range(40):
            if engine.engine.ctx.upstreams.idle_count(tunnel) == 0:
                break
            await asyncio.sleep(0.05)
        assert engine.engine.ctx.upstreams.idle_count(tunnel) == 0
        await one_visit(engine, hostname, "/two")
        assert len(upstream.peers) == 2
