"""No event is lost: deliveries pending at a receiver that is down survive a SIGKILL of the engine and
arrive, signed, once the engine is restarted on the same state directory and the receiver comes up.

Two ways of being down: refusing connections (attempts fail at once), and a black hole that accepts
nothing (attempts hang until the timeout, so deliveries are leased in flight when the engine dies and
must come back when their lease expires)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import pytest

from portway.agent.control import ControlChannel
from tests.conftest import UNIT_S, start_engine_process, stop_engine_process
from tests.integration.webhook_helpers import Receiver, api, create, deliveries, until_deliveries

pytestmark = pytest.mark.store  # on SQLite and PostgreSQL (tests/conftest.py)

# A fast schedule for the test: retries within 0.5 s, leases of a killed engine expire after 2 s.
CONFIG = ("webhooks:\n  retry_base_seconds: 0.1\n  retry_cap_seconds: 0.5\n  timeout_seconds: 1\n"
          "  lease_seconds: 2\n")
CLIENTS = 3
TUNNELS_PER_CLIENT = 2


@pytest.mark.parametrize("down", ["refusing", "black-hole"])
async def test_pending_events_survive_a_crash_and_arrive(tmp_path: Path, down: str) -> None:
    receiver = Receiver()  # down: bound, not listening
    if down == "black-hole":
        receiver.black_hole()
    controls: list[ControlChannel] = []
    first = start_engine_process(tmp_path, CONFIG)
    try:
        async with api(first) as client:
            hook = await create(client, url=receiver.url)
            for _ in range(CLIENTS):
                control = await first.client().connect()
                controls.append(control)
                for _ in range(TUNNELS_PER_CLIENT):
                    await control.create_tunnel(protocol="http")
            closing = controls.pop()
            await closing.close()
            expected_count = CLIENTS * (1 + TUNNELS_PER_CLIENT) + TUNNELS_PER_CLIENT + 1
            # Failing attempts are being made (connection refused) and retried: the receiver is down.
            pending = await until_deliveries(client, hook["id"], lambda ds: len(ds) == expected_count and all(
                d["attempts"] for d in ds))
            assert all(d["status"] == "pending" for d in pending), pending
            assert all(a["status_code"] is None and a["error"] for d in pending for a in d["attempts"])
            if down == "black-hole":
                assert any("no answer within" in a["error"] for d in pending for a in d["attempts"])
        expected = {d["event_id"]: d["event_type"] for d in pending}
        assert len(expected) == expected_count
        assert first.process is not None
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10 * UNIT_S)
    finally:
        for control in controls:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(control.close(), 5 * UNIT_S)
        stop_engine_process(first)

    (tmp_path / "engine.stderr").rename(tmp_path / "first.stderr")
    second = start_engine_process(tmp_path, CONFIG)
    try:
        await receiver.start()
        received = await receiver.wait_for(
            lambda got: set(expected) <= {r.headers["rstream-event-id"] for r in got}, timeout=30 * UNIT_S)
        for item in received:
            event = item.verified(hook["secret"])
            assert event.id in expected and expected[event.id] == event.type
        async with api(second) as client:
            final = await until_deliveries(client, hook["id"], lambda ds: all(d["status"] == "delivered"
                                                                              for d in ds))
            assert {d["event_id"] for d in final} == set(expected)
            assert await deliveries(client, hook["id"]) == final
    finally:
        receiver.close()
        stop_engine_process(second)
