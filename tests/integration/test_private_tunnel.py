"""Private tunnels: reached by name or id with a StreamReq, never published (protocol facts §2.7, §2.8)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from portway.agent import ControlChannel, DatagramStream, Tunnel
from portway.errors import ClosedError, EngineRejected
from tests.conftest import UNIT_S, EchoServer, EngineHandle, EngineProcess, log_count


def refusals(engine: EngineHandle, caplog: pytest.LogCaptureFixture) -> int:
    """Private-dial refusals the engine logged so far (its stderr when it runs as a process)."""
    if isinstance(engine, EngineProcess):
        return engine.logs().count("private dial refused")
    return log_count(caplog, "portway.engine.agent", "private dial refused")


@pytest.fixture
async def private_echo(any_engine: EngineHandle) -> AsyncIterator[Tunnel]:
    """A private tunnel named "svc" forwarding to a local echo server."""
    async with EchoServer() as upstream:
        control = await any_engine.client().connect()
        tunnel = await control.create_tunnel(publish=False, name="svc")
        forwarding = asyncio.ensure_future(tunnel.forward_to("127.0.0.1", upstream.port))
        try:
            yield tunnel
        finally:
            forwarding.cancel()
            await control.close()


async def test_private_tunnel_properties(private_echo: Tunnel) -> None:
    props = private_echo.properties
    assert props.publish is False
    assert props.name == "svc"
    assert props.hostname is None
    assert props.port is None
    assert private_echo.forwarding_address == "rstrm://svc (unpublished)"


@pytest.mark.parametrize("zero_rtt", [True, False])
async def test_dial_by_name(any_engine: EngineHandle, private_echo: Tunnel, zero_rtt: bool) -> None:
    client = any_engine.client()
    stream = await client.dial("svc", zero_rtt=zero_rtt)
    async with stream:
        stream.write(b"hello private")
        await stream.drain()
        assert await asyncio.wait_for(stream.readexactly(13), 5 * UNIT_S) == b"hello private"
        stream.write(b"again")
        await stream.drain()
        assert await asyncio.wait_for(stream.readexactly(5), 5 * UNIT_S) == b"again"


async def test_dial_by_id(any_engine: EngineHandle, private_echo: Tunnel) -> None:
    stream = await any_engine.client().dial(private_echo.id, zero_rtt=False)
    async with stream:
        stream.write(b"by id")
        await stream.drain()
        assert await asyncio.wait_for(stream.readexactly(5), 5 * UNIT_S) == b"by id"


async def test_dial_missing_name_is_refused(any_engine: EngineHandle, private_echo: Tunnel,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="portway.engine")
    before = refusals(any_engine, caplog)
    with pytest.raises(EngineRejected) as refused:
        await any_engine.client().dial("nope", zero_rtt=False)
    assert refused.value.code == 3000
    assert "nope" in refused.value.detail
    assert refusals(any_engine, caplog) - before == 1


async def test_dial_missing_name_zero_rtt_closes_without_bytes(any_engine: EngineHandle, private_echo: Tunnel,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="portway.engine")
    before = refusals(any_engine, caplog)
    stream = await any_engine.client().dial("nope", zero_rtt=True)
    async with stream:
        assert await asyncio.wait_for(stream.read(), 5 * UNIT_S) == b""
    assert refusals(any_engine, caplog) - before == 1
    # the real tunnel is still reachable
    async with await any_engine.client().dial("svc") as stream:
        stream.write(b"ok")
        await stream.drain()
        assert await asyncio.wait_for(stream.readexactly(2), 5 * UNIT_S) == b"ok"


async def serve_datagrams(tunnel: Tunnel) -> int:
    """Accept one stream of a datagram tunnel and echo its packets until it ends; returns the count."""
    packets = DatagramStream(await tunnel.accept())
    count = 0
    try:
        while True:
            try:
                packet = await packets.recv()
            except ClosedError:
                return count
            count += 1
            await packets.send(packet)
    finally:
        await packets.close()


async def test_private_datagram_tunnel_round_trip(any_engine: EngineHandle) -> None:
    control: ControlChannel = await any_engine.client().connect()
    try:
        tunnel = await control.create_tunnel(publish=False, type="datagram", name="dg")
        assert tunnel.properties.type == "datagram"
        assert tunnel.properties.publish is False
        serving = asyncio.ensure_future(serve_datagrams(tunnel))
        dialer = await any_engine.client().dial_datagram("dg")
        packets = [b"one", b"", b"\x00" * 1200]
        for packet in packets:
            await dialer.send(packet)
        received = [await asyncio.wait_for(dialer.recv(), 5 * UNIT_S) for _ in packets]
        assert received == packets
        await dialer.close()
        assert await asyncio.wait_for(serving, 5 * UNIT_S) == len(packets)
    finally:
        await control.close()


async def test_dialer_half_close_reaches_the_agent_and_the_reply_comes_back(engine: EngineHandle) -> None:
    """A dialer that finishes sending (TLS close_notify) still reads the agent's answer."""
    control = await engine.client().connect()
    tunnel = await control.create_tunnel(publish=False, name="halfclose")

    async def serve() -> None:
        stream = await tunnel.accept()
        received = b""
        while data := await stream.read():
            received += data
        stream.write(b"got %d bytes" % len(received))  # answered only after end-of-stream
        await stream.drain()
        await stream.close()

    server = asyncio.ensure_future(serve())
    stream = await engine.client().dial("halfclose")
    stream.write(b"x" * 100_000)
    await stream.drain()
    stream.write_eof()
    reply = b""
    while data := await asyncio.wait_for(stream.read(), 5):
        reply += data
    assert reply == b"got 100000 bytes"
    await stream.close()
    await asyncio.wait_for(server, 5)
    await control.close()


async def test_agent_connections_resume_the_tls_session(engine: EngineHandle) -> None:
    """After the first connection, dials resume the engine's TLS session (no certificate work)."""
    client = engine.client()
    control = await client.connect()
    tunnel = await control.create_tunnel(publish=False, name="resume")

    async def serve() -> None:
        while True:
            stream = await tunnel.accept()
            stream.write(await stream.read())
            await stream.drain()
            await stream.close()

    server = asyncio.ensure_future(serve())
    reused = []
    for _ in range(2):
        stream = await client.dial("resume")
        stream.write(b"ping")
        await stream.drain()
        assert await asyncio.wait_for(stream.read(), 5) == b"ping"
        reused.append(stream.writer.get_extra_info("ssl_object").session_reused)
        await stream.close()
    assert reused[-1] is True
    server.cancel()
    await asyncio.gather(server, return_exceptions=True)
    await control.close()
