"""Engines sharing one PostgreSQL apply each other's control-plane changes at once (LISTEN/NOTIFY), not at
their periodic refresh — set to an hour here, so only the notification can explain what is seen: a PAT
revoked on engine A closes its control channel on engine B, and a webhook endpoint created on A hears an
event that happens on B."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from portway.agent.control import ControlChannel
from portway.errors import ClosedError, EngineRejected
from tests.conftest import UNIT_S, EngineHandle, running_engine
from tests.integration.test_admin_api import admin_api, operator_token
from tests.integration.webhook_helpers import Receiver, api, create

pytestmark = pytest.mark.store(only="postgresql")

SLOW_REFRESH = "  refresh_seconds: 3600\n"
SHARED_SECRET = "auth:\n  jwt:\n    token_jwt_secret: " + "s3cr3t-shared-by-both-engines-" * 2 + "\n"  # PATs are HS256
WAIT_S = 10 * UNIT_S


async def listening(engine: EngineHandle) -> None:
    assert engine.engine is not None
    feed = engine.engine.ctx.services["changes"]  # type: ignore[union-attr]
    await asyncio.wait_for(feed.listening.wait(), WAIT_S)  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def two_engines(tmp_path: Path) -> AsyncIterator[tuple[EngineHandle, EngineHandle]]:
    """Engines A and B on the test's database, with one token secret, B listening for A's changes."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with running_engine(tmp_path / "a", SHARED_SECRET, SLOW_REFRESH) as a, \
            running_engine(tmp_path / "b", SHARED_SECRET, SLOW_REFRESH) as b:
        await listening(b)
        yield a, b


async def until_accepted(engine: EngineHandle, token: str) -> ControlChannel:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        try:
            return await engine.client(token).connect()
        except EngineRejected:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_a_revocation_on_one_engine_closes_a_channel_on_another(tmp_path: Path) -> None:
    async with two_engines(tmp_path) as (a, b):
        async with admin_api(a, operator_token(a)) as admin:
            made = await admin.post("/pats", json={"name": "edge", "project": "default", "expires_in": 600})
            pat_id, pat = made.json()["pat"]["id"], made.json()["token"]
            channel = await until_accepted(b, pat)  # B reloaded on the creation's notification
            assert (await admin.post(f"/pats/{pat_id}/revoke", json={})).status_code == 200
        with contextlib.suppress(ClosedError):
            await asyncio.wait_for(channel.wait_closed(), WAIT_S)
        assert channel.closed


async def test_an_endpoint_made_on_one_engine_hears_events_of_another(tmp_path: Path) -> None:
    async with Receiver() as receiver, two_engines(tmp_path) as (a, b):
        async with api(a) as client:
            hook = await create(client, url=receiver.url, events=["tunnel.created"])
        control = await b.client().connect()
        try:
            made: list[str] = []
            for _ in range(int(WAIT_S / 0.2)):  # until B's recorder heard of the endpoint
                made.append((await control.create_tunnel(protocol="tcp")).id)
                with contextlib.suppress(AssertionError):
                    await receiver.wait_for(lambda got: len(got) >= 1, timeout=0.2)
                    break
            (item,) = receiver.received
            assert item.verified(hook["secret"]).object["id"] in made
        finally:
            await control.close()


async def test_the_feed_comes_back_after_its_connection_is_killed(tmp_path: Path) -> None:
    async with two_engines(tmp_path) as (a, b):
        assert b.engine is not None and b.engine.store is not None
        feed = b.engine.ctx.services["changes"]  # type: ignore[union-attr]
        async with b.engine.store.engine.connect() as connection:  # every other session on the database
            await connection.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                          "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
        for _ in range(int(WAIT_S * 2 / 0.05)):  # noticed within check_s (5 s), back after 2 s
            if not feed.listening.is_set():  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.05)
        assert not feed.listening.is_set()  # type: ignore[attr-defined]
        await listening(b)
        async with admin_api(a, operator_token(a)) as admin:
            made = await admin.post("/pats", json={"name": "edge", "project": "default", "expires_in": 600})
            assert made.status_code == 201, made.text
            channel = await until_accepted(b, made.json()["token"])
        await channel.close()
