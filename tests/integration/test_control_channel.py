"""Control channels: concurrent creates, closing, hostnames, takeover and liveness (§2.4, §2.5, §2.9)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from portway.agent import ControlChannel, Tunnel
from portway.errors import EngineRejected
from portway.wire.messages import TunnelProperties
from tests.conftest import UNIT_S, EchoServer, EngineHandle, close_writer, read_frame, running_engine
from tests.integration.helpers import RawAgent, echo, visit


@contextlib.asynccontextmanager
async def http_tunnel(engine: EngineHandle, upstream: EchoServer, token: str | None = None,
                      **fields: object) -> AsyncIterator[tuple[ControlChannel, Tunnel]]:
    control = await engine.client(token).connect()
    forwarding: asyncio.Future[None] | None = None
    try:
        tunnel = await control.create_tunnel(protocol="http", **fields)
        forwarding = asyncio.ensure_future(tunnel.forward_to("127.0.0.1", upstream.port))
        yield control, tunnel
    finally:
        if forwarding is not None:
            forwarding.cancel()
        await control.close()


async def test_concurrent_creates_all_succeed(engine: EngineHandle) -> None:
    control = await engine.client().connect()
    try:
        tunnels = await asyncio.wait_for(asyncio.gather(
            *(control.create_tunnel(protocol="http", labels={"n": str(i)}) for i in range(5))), 5 * UNIT_S)
        assert len({t.id for t in tunnels}) == 5
        assert len({t.properties.hostname for t in tunnels}) == 5
        # each answer was matched to its own request
        assert [t.properties.labels["n"] for t in tunnels] == [str(i) for i in range(5)]
        assert set(control.tunnels) == {t.id for t in tunnels}
    finally:
        await control.close()


async def test_closed_tunnel_is_no_longer_served(engine: EngineHandle) -> None:
    async with EchoServer(http=True) as upstream, http_tunnel(engine, upstream) as (_, tunnel):
        hostname = tunnel.properties.hostname
        assert hostname is not None
        status, _ = await visit(engine, hostname)
        assert status == 200
        await tunnel.close()
        assert tunnel.closed
        status, body = await visit(engine, hostname)
        assert status == 404
        assert hostname.encode() in body


async def test_requested_hostname_is_honoured(engine: EngineHandle) -> None:
    async with EchoServer(http=True) as upstream, \
            http_tunnel(engine, upstream, hostname="mine.t.localhost") as (_, tunnel):
        assert tunnel.properties.hostname == "mine.t.localhost"
        assert tunnel.forwarding_address == f"https://mine.t.localhost:{engine.port}"
        status, body = await visit(engine, "mine.t.localhost", "/x")
        assert status == 200
        assert body.startswith(b"GET /x HTTP/1.1")


async def test_hostname_outside_the_engine_zone_is_refused(engine: EngineHandle) -> None:
    control = await engine.client().connect()
    try:
        with pytest.raises(EngineRejected) as refused:
            await control.create_tunnel(protocol="http", hostname="app.example.com")
        assert refused.value.code == 2000
        assert "app.example.com" in refused.value.detail
        # the channel survives a refused request
        tunnel = await control.create_tunnel(protocol="http")
        assert tunnel.properties.hostname is not None
    finally:
        await control.close()


async def test_hostname_held_by_another_credential_is_refused(engine: EngineHandle) -> None:
    async with EchoServer(http=True) as upstream, \
            http_tunnel(engine, upstream, hostname="mine.t.localhost") as (_, held):
        other = await engine.client(engine.token(subject="intruder")).connect()
        try:
            with pytest.raises(EngineRejected) as refused:
                await other.create_tunnel(protocol="http", hostname="mine.t.localhost")
            assert refused.value.code == 2000
            assert "hostname" in refused.value.detail
        finally:
            await other.close()
        assert not held.closed
        status, _ = await visit(engine, "mine.t.localhost")
        assert status == 200


async def test_same_token_reconnecting_takes_the_hostname_over(engine: EngineHandle) -> None:
    token = engine.token(subject="agent-1")
    async with EchoServer(http=True) as first_upstream, EchoServer(http=True) as second_upstream, \
            http_tunnel(engine, first_upstream, token, hostname="mine.t.localhost") as (old_control, old):
        status, _ = await visit(engine, "mine.t.localhost")
        assert status == 200
        assert len(first_upstream.peers) == 1
        # a new control channel with the same token while the old one is still open
        async with http_tunnel(engine, second_upstream, token, hostname="mine.t.localhost") as (_, new):
            assert new.properties.hostname == "mine.t.localhost"
            assert new.id != old.id
            await asyncio.wait_for(old.wait_closed(), 5 * UNIT_S)
            assert old.id not in old_control.tunnels
            assert not old_control.closed  # only the tunnel moved; the old channel stays up
            status, _ = await visit(engine, "mine.t.localhost")
            assert status == 200
            assert len(second_upstream.peers) == 1
            assert len(first_upstream.peers) == 1


async def test_liveness_is_negotiated_and_a_silent_agent_is_dropped(tmp_path: Path) -> None:
    async with running_engine(tmp_path, "  heartbeat_timeout_seconds: 1\n") as engine, \
            EchoServer(http=True) as upstream:
        loop = asyncio.get_running_loop()
        # An SDK agent heartbeating every 200 ms outlives the 1 s timeout.
        sdk_control = await engine.client(heartbeat_interval_s=0.2).connect()
        sdk_tunnel = await sdk_control.create_tunnel(protocol="http")
        sdk_forwarding = asyncio.ensure_future(sdk_tunnel.forward_to("127.0.0.1", upstream.port))
        started = loop.time()

        raw = await RawAgent.connect(engine)
        data_writers: list[asyncio.StreamWriter] = []
        visitor: asyncio.StreamWriter | None = None
        try:
            rsp = await raw.open_control(engine.token(), 200)
            assert rsp.WhichOneof("payload") == "ok"
            assert rsp.ok.HasField("liveness")
            assert rsp.ok.liveness.heartbeat_interval_ms == 200
            assert 200 <= rsp.ok.liveness.heartbeat_timeout_ms <= 900_000
            raw.heartbeat()
            ack = await read_frame(raw.reader)
            assert ack.WhichOneof("payload") == "heartbeat"
            assert ack.heartbeat.sequence == 0
            assert ack.heartbeat.acknowledgement == 1

            raw.start()
            raw.start_heartbeats(0.2)
            web = await raw.create("web", TunnelProperties(protocol="http"))
            tcp = await raw.create("tcp", TunnelProperties(protocol="tcp"))
            assert web.hostname is not None
            assert tcp.port is not None

            # the http tunnel serves while the channel is alive
            visiting = asyncio.ensure_future(visit(engine, web.hostname))
            req, data_reader, data_writer = await raw.accept()
            data_writers.append(data_writer)
            assert req.tunnel_id == web.id
            await asyncio.wait_for(data_reader.readuntil(b"\r\n\r\n"), 5 * UNIT_S)
            data_writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nraw")
            assert await asyncio.wait_for(visiting, 5 * UNIT_S) == (200, b"raw")

            # a TCP stream established before the channel dies
            visitor_reader, visitor = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", tcp.port), 5 * UNIT_S)
            visitor.write(b"before")
            req, data_reader, data_writer = await raw.accept()
            data_writers.append(data_writer)
            assert req.tunnel_id == tcp.id
            echoing = asyncio.ensure_future(echo(data_reader, data_writer))
            assert await asyncio.wait_for(visitor_reader.readexactly(6), 5 * UNIT_S) == b"before"
            assert raw.acks == list(range(2, raw.sequence + 1))[: len(raw.acks)]

            # silence: the engine closes the control channel after about a second
            raw.stop_heartbeats()
            silent_since = loop.time()
            assert await asyncio.wait_for(raw.frames.get(), 5 * UNIT_S) is None
            assert 0.5 <= loop.time() - silent_since <= 3.0 * UNIT_S

            # its routes are withdrawn...
            status, _ = await visit(engine, web.hostname)
            assert status == 404
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", tcp.port)
            # ...but the established stream keeps flowing on its own connection
            visitor.write(b"after")
            assert await asyncio.wait_for(visitor_reader.readexactly(5), 5 * UNIT_S) == b"after"

            # the heartbeating SDK agent is still alive well past the timeout
            await asyncio.sleep(max(0.0, started + 1.5 - loop.time()))
            assert not sdk_control.closed
            status, _ = await visit(engine, sdk_tunnel.properties.hostname or "")
            assert status == 200
            echoing.cancel()
        finally:
            if visitor is not None:
                await close_writer(visitor)
            for data_writer in data_writers:
                await close_writer(data_writer)
            await raw.close()
            sdk_forwarding.cancel()
            await sdk_control.close()
