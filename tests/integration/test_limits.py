"""Engine limits answer with CAPACITY_EXHAUSTED instead of growing without bound."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from portway.errors import EngineRejected
from portway.wire.codes import ErrorCode
from tests.conftest import EngineHandle, running_engine


@pytest.fixture
async def small_engine(tmp_path: Path) -> AsyncIterator[EngineHandle]:
    async with running_engine(tmp_path, "limits:\n  max_control_channels: 1\n  max_tunnels_per_agent: 2\n") as handle:
        yield handle


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
    async with running_engine(tmp_path, "  http_idle_seconds: 0.3\n") as handle:
        reader, writer = await handle.open_visitor("localhost")
        # Says nothing: closed after one to two idle periods.
        assert await asyncio.wait_for(reader.read(), 3) == b""
        writer.close()


async def test_tunnel_limit_holds_for_opens_in_flight(small_engine: EngineHandle) -> None:
    """Opens sent together cannot overshoot the limit while earlier ones are still being served."""
    control = await small_engine.client().connect()
    results = await asyncio.gather(*(control.create_tunnel(protocol="tcp") for _ in range(4)),
                                   return_exceptions=True)
    created = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, EngineRejected)]
    assert len(created) == 2
    assert len(refused) == 2 and all(r.code == ErrorCode.CAPACITY_EXHAUSTED for r in refused)
    await control.close()
