"""Engine limits answer with CAPACITY_EXHAUSTED instead of growing without bound."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from portway.engine import Engine
from portway.engine.config import load_config
from portway.engine.state import EngineState
from portway.errors import EngineRejected
from portway.wire.codes import ErrorCode
from tests.conftest import EngineHandle, engine_yaml


@pytest.fixture
async def small_engine(tmp_path: Path) -> AsyncIterator[EngineHandle]:
    config_file = tmp_path / "engine.yaml"
    config_file.write_text(engine_yaml("limits:\n  max_control_channels: 1\n  max_tunnels_per_agent: 2\n"))
    state = EngineState.open(tmp_path / "state", engine_host="localhost", jwt_secret=None)
    server = Engine(load_config(str(config_file), {}), state)
    await server.start()
    try:
        yield EngineHandle(server.port, state.ca_path, state.jwt_secret, server)
    finally:
        await server.stop()


async def test_control_channel_limit(small_engine: EngineHandle) -> None:
    first = await small_engine.client().connect()
    with pytest.raises(EngineRejected) as refused:
        await small_engine.client().connect()
    assert refused.value.code == ErrorCode.CAPACITY_EXHAUSTED
    await first.close()
    again = await small_engine.client().connect()  # the slot is free again
    await again.close()


async def test_tunnels_per_agent_limit(small_engine: EngineHandle) -> None:
    control = await small_engine.client().connect()
    for name in ("a", "b"):
        await control.create_tunnel(publish=False, name=name)
    with pytest.raises(EngineRejected) as refused:
        await control.create_tunnel(publish=False, name="c")
    assert refused.value.code == ErrorCode.CAPACITY_EXHAUSTED
    await control.close()


async def test_idle_visitor_connection_is_closed(tmp_path: Path) -> None:
    config_file = tmp_path / "engine.yaml"
    config_file.write_text(engine_yaml("  http_idle_seconds: 0.3\n"))
    state = EngineState.open(tmp_path / "state", engine_host="localhost", jwt_secret=None)
    server = Engine(load_config(str(config_file), {}), state)
    await server.start()
    try:
        handle = EngineHandle(server.port, state.ca_path, state.jwt_secret, server)
        reader, writer = await handle.open_visitor("localhost")
        # Says nothing: closed after one to two idle periods.
        assert await asyncio.wait_for(reader.read(), 3) == b""
        writer.close()
    finally:
        await server.stop()
