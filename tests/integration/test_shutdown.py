"""Engine shutdown in phases: stop accepting, end control channels, let established streams drain for
`timeouts.shutdown_grace_seconds` (1 s in the test configuration), then close what is left."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from portway.errors import ClosedError, TransportError
from tests.conftest import UNIT_S, EchoServer, close_writer, read_until_closed, running_engine


async def test_established_stream_drains_then_is_closed(tmp_path: Path) -> None:
    async with EchoServer() as upstream, running_engine(tmp_path) as engine:
        assert engine.engine is not None
        client = engine.client()
        control = await client.connect()
        tunnel = await control.create_tunnel(protocol="tcp")
        forwarding = asyncio.ensure_future(tunnel.forward_to("127.0.0.1", upstream.port))
        assert tunnel.properties.port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", tunnel.properties.port)
        try:
            writer.write(b"before")
            assert await asyncio.wait_for(reader.readexactly(6), 5 * UNIT_S) == b"before"
            loop = asyncio.get_running_loop()
            started = loop.time()
            stopping = asyncio.ensure_future(engine.engine.stop())
            # the control channel ends at once, and no new agent connection is accepted
            with pytest.raises(ClosedError):
                await asyncio.wait_for(control.wait_closed(), 2 * UNIT_S)
            with pytest.raises(TransportError):
                await client.connect()
            # the established stream still flows during the grace period
            writer.write(b"during")
            assert await asyncio.wait_for(reader.readexactly(6), 2 * UNIT_S) == b"during"
            await asyncio.wait_for(stopping, 5 * UNIT_S)
            assert 0.8 <= loop.time() - started <= 3 * UNIT_S
            # after it, the stream was closed
            assert await read_until_closed(reader, timeout=2) == b""
        finally:
            await close_writer(writer)
            forwarding.cancel()
            await control.close()


async def test_stop_returns_early_when_streams_end_within_the_grace(tmp_path: Path) -> None:
    async with EchoServer() as upstream, running_engine(tmp_path) as engine:
        assert engine.engine is not None
        control = await engine.client().connect()
        tunnel = await control.create_tunnel(protocol="tcp")
        forwarding = asyncio.ensure_future(tunnel.forward_to("127.0.0.1", upstream.port))
        assert tunnel.properties.port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", tunnel.properties.port)
        try:
            writer.write(b"x")
            assert await asyncio.wait_for(reader.readexactly(1), 5 * UNIT_S) == b"x"
            loop = asyncio.get_running_loop()
            started = loop.time()
            stopping = asyncio.ensure_future(engine.engine.stop())
            await asyncio.sleep(0.1)
            await close_writer(writer)  # the visitor finishes on its own
            await asyncio.wait_for(stopping, 5 * UNIT_S)
            assert loop.time() - started < 0.8
        finally:
            await close_writer(writer)
            forwarding.cancel()
            await control.close()
