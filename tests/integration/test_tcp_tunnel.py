"""Published TCP tunnels end to end: a public port on the engine, bytes relayed to the agent."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from portway.agent import ControlChannel, Tunnel
from portway.errors import EngineRejected
from tests.conftest import (
    UNIT_S,
    EchoServer,
    EngineHandle,
    EngineProcess,
    close_writer,
    read_until_closed,
    running_engine,
)

PORT_MIN, PORT_MAX = 20000, 20999


async def open_public(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5 * UNIT_S)


async def echo_once(port: int, payload: bytes) -> bytes:
    reader, writer = await open_public(port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(payload)), 5 * UNIT_S)
    finally:
        await close_writer(writer)


def free_port_in_range() -> int:
    """A port of the engine's TCP range that nothing on this machine listens on right now."""
    for _ in range(50):
        port = random.randint(PORT_MIN + 500, PORT_MAX)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in the tcp range")


@contextlib.asynccontextmanager
async def tcp_tunnel(engine: EngineHandle, upstream_port: int | None, token: str | None = None,
                     **fields: object) -> AsyncIterator[tuple[ControlChannel, Tunnel]]:
    control = await engine.client(token).connect()
    forwarding: asyncio.Future[None] | None = None
    try:
        tunnel = await control.create_tunnel(protocol="tcp", **fields)
        if upstream_port is not None:
            forwarding = asyncio.ensure_future(tunnel.forward_to("127.0.0.1", upstream_port))
        yield control, tunnel
    finally:
        if forwarding is not None:
            forwarding.cancel()
        await control.close()


async def test_tcp_tunnel_echoes_through_the_public_port(engine: EngineHandle) -> None:
    async with EchoServer() as upstream, tcp_tunnel(engine, upstream.port) as (_, tunnel):
        port = tunnel.properties.port
        assert port is not None
        assert PORT_MIN <= port <= PORT_MAX
        assert tunnel.properties.host == f"127.0.0.1:{port}"
        assert tunnel.properties.type == "bytestream"
        assert await echo_once(port, b"hello tcp") == b"hello tcp"
        # both directions on one connection, several exchanges
        reader, writer = await open_public(port)
        for i in range(3):
            writer.write(b"ping %d" % i)
            await writer.drain()
            assert await asyncio.wait_for(reader.readexactly(6), 5 * UNIT_S) == b"ping %d" % i
        await close_writer(writer)
        assert upstream.peers == ["127.0.0.1", "127.0.0.1"]


async def test_requested_port_is_honoured(engine: EngineHandle) -> None:
    for attempt in range(5):
        wanted = free_port_in_range()
        try:
            async with EchoServer() as upstream, tcp_tunnel(engine, upstream.port, port=wanted) as (_, tun):
                assert tun.properties.port == wanted
                assert tun.properties.host == f"127.0.0.1:{wanted}"
                assert await echo_once(wanted, b"on my port") == b"on my port"
                return
        except EngineRejected as error:  # someone else on this machine took the port meanwhile
            if attempt == 4 or "in use" not in error.detail:
                raise


async def test_port_held_by_another_credential_is_refused(engine: EngineHandle) -> None:
    async with EchoServer() as upstream, tcp_tunnel(engine, upstream.port) as (_, held):
        port = held.properties.port
        other = await engine.client(engine.token(subject="someone-else")).connect()
        try:
            with pytest.raises(EngineRejected) as refused:
                await other.create_tunnel(protocol="tcp", port=port)
            assert refused.value.code == 2000
            assert "port" in refused.value.detail
        finally:
            await other.close()
        # the holder is untouched
        assert not held.closed
        assert await echo_once(port, b"still mine") == b"still mine"


async def test_closing_the_tunnel_releases_the_port(engine: EngineHandle) -> None:
    async with EchoServer() as upstream, tcp_tunnel(engine, upstream.port) as (control, tunnel):
        port = tunnel.properties.port
        assert port is not None
        assert await echo_once(port, b"open") == b"open"
        await tunnel.close()
        assert tunnel.closed
        assert tunnel.id not in control.tunnels
        with pytest.raises(ConnectionRefusedError):
            await open_public(port)


async def test_one_mebibyte_round_trip_is_byte_exact(engine: EngineHandle) -> None:
    payload = os.urandom(1024 * 1024)
    async with EchoServer() as upstream, tcp_tunnel(engine, upstream.port) as (_, tunnel):
        assert tunnel.properties.port is not None
        reader, writer = await open_public(tunnel.properties.port)

        async def send() -> None:
            for offset in range(0, len(payload), 64 * 1024):
                writer.write(payload[offset : offset + 64 * 1024])
                await writer.drain()

        sending = asyncio.ensure_future(send())
        received = await asyncio.wait_for(reader.readexactly(len(payload)), 10 * UNIT_S)
        await sending
        assert received == payload
        await close_writer(writer)


async def accept_and_echo(tunnel: Tunnel) -> str | None:
    stream = await tunnel.accept()
    try:
        while data := await stream.read():
            stream.write(data)
            await stream.drain()
    finally:
        await stream.close()
    return stream.source_ip


async def test_visitor_source_ip_reaches_the_agent(engine: EngineHandle) -> None:
    async with tcp_tunnel(engine, None) as (control, tunnel):
        assert tunnel.properties.port is not None
        accepting = asyncio.ensure_future(accept_and_echo(tunnel))
        reader, writer = await open_public(tunnel.properties.port)
        writer.write(b"who am i")
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(8), 5 * UNIT_S) == b"who am i"
        await close_writer(writer)
        assert await asyncio.wait_for(accepting, 5 * UNIT_S) == "127.0.0.1"
        assert control.tunnels[tunnel.id].streams == 1


async def test_same_credential_reconnecting_takes_its_port_back(engine: EngineHandle) -> None:
    """What `keep_tunnel` does after a network blip: same token, new channel, the port it had."""
    token = engine.token(subject="agent-1")
    async with EchoServer() as upstream:
        first = await engine.client(token).connect()
        second: ControlChannel | None = None
        try:
            old = await first.create_tunnel(protocol="tcp")
            port = old.properties.port
            assert port is not None
            second = await engine.client(token).connect()
            new = await second.create_tunnel(protocol="tcp", port=port)
            forwarding = asyncio.ensure_future(new.forward_to("127.0.0.1", upstream.port))
            assert new.properties.port == port
            await asyncio.wait_for(old.wait_closed(), 5 * UNIT_S)
            assert await echo_once(port, b"moved") == b"moved"
            forwarding.cancel()
        finally:
            await first.close()
            if second is not None:
                await second.close()


async def test_unreachable_upstream_closes_the_visitor_promptly(engine: EngineHandle) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    async with tcp_tunnel(engine, dead_port) as (_, tunnel):
        assert tunnel.properties.port is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        reader, writer = await open_public(tunnel.properties.port)
        writer.write(b"anyone?")
        assert await read_until_closed(reader) == b""
        # the agent's refusal ends the stream at once, not after stream_request_seconds (5 s)
        assert loop.time() - started < 2 * UNIT_S
        await close_writer(writer)
        # the tunnel itself stays up
        assert not tunnel.closed


async def test_visitor_half_close_still_gets_the_reply(engine: EngineHandle) -> None:
    """`printf req | nc -N`: the visitor's FIN crosses the TLS hops and the reply still comes back."""
    async with EchoServer() as upstream, tcp_tunnel(engine, upstream.port) as (_, tunnel):
        assert tunnel.properties.port is not None
        reader, writer = await open_public(tunnel.properties.port)
        try:
            writer.write(b"request then EOF")
            writer.write_eof()
            assert await read_until_closed(reader, timeout=2) == b"request then EOF"
        finally:
            await close_writer(writer)


async def test_tcp_tunnel_through_the_engine_process(shared_engine_process: EngineProcess) -> None:
    """The same path on `portway engine` (uvloop, separate process): echo, then 1 MiB byte-exact."""
    payload = os.urandom(1024 * 1024)
    async with EchoServer() as upstream, tcp_tunnel(shared_engine_process, upstream.port) as (_, tunnel):
        port = tunnel.properties.port
        assert port is not None
        assert await echo_once(port, b"uvloop") == b"uvloop"
        reader, writer = await open_public(port)
        writer.write(payload)
        received = await asyncio.wait_for(reader.readexactly(len(payload)), 10 * UNIT_S)
        assert received == payload
        await close_writer(writer)


async def wait_until_unpublished(engine: EngineHandle, tunnel: Tunnel) -> None:
    """Until the engine has noticed the agent is gone and withdrawn `tunnel`."""
    assert engine.engine is not None and engine.engine.ctx is not None
    registry = engine.engine.ctx.registry
    for _ in range(200):
        if all(live.id != tunnel.id for live in registry.tunnels()):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"tunnel {tunnel.id} is still published")


async def test_a_vanished_agent_keeps_its_port_reserved(engine: EngineHandle) -> None:
    """The agent's connection drops without a goodbye: nobody else gets its port, and the same
    credential takes it back when it reconnects."""
    token = engine.token(subject="agent-1")
    async with EchoServer() as upstream:
        first = await engine.client(token).connect()
        tunnel = await first.create_tunnel(protocol="tcp")
        port = tunnel.properties.port
        assert port is not None and first.transport is not None
        first.transport.abort()  # no CloseControlChannelReq: the engine sees the connection die
        await wait_until_unpublished(engine, tunnel)

        other = await engine.client(engine.token(subject="someone-else")).connect()
        try:
            with pytest.raises(EngineRejected, match="reserved for another agent"):
                await other.create_tunnel(protocol="tcp", port=port)
            allocated = await other.create_tunnel(protocol="tcp")
            assert allocated.properties.port != port  # allocation skips the reserved port
            with pytest.raises(ConnectionRefusedError):
                await open_public(port)  # reserved, not listening
        finally:
            await other.close()

        async with tcp_tunnel(engine, upstream.port, token=token, port=port) as (_, back):
            assert back.properties.port == port
            assert await echo_once(port, b"back") == b"back"
        # a deliberate close releases it at once: anyone may take it now
        async with tcp_tunnel(engine, upstream.port, token=engine.token(subject="third"), port=port) as (_, taken):
            assert taken.properties.port == port
        await first.close()


async def test_no_reservation_when_disabled(tmp_path: Path) -> None:
    async with running_engine(tmp_path, "tcp:\n  reserve_seconds: 0\n") as engine:
        first = await engine.client(engine.token(subject="a")).connect()
        tunnel = await first.create_tunnel(protocol="tcp")
        port = tunnel.properties.port
        assert port is not None and first.transport is not None
        first.transport.abort()
        await wait_until_unpublished(engine, tunnel)
        async with tcp_tunnel(engine, None, token=engine.token(subject="b"), port=port) as (_, taken):
            assert taken.properties.port == port
        await first.close()
