"""Revocation reaches what is already open (real engine, real store, real TLS): revoking a PAT, disabling its
user or revoking one token by jti closes the control channels and signaling streams using it, and stops a
keep-alive visitor connection at its next request — not only new connections. Plus the admin API's refusals
for `POST /api/admin/revocations`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest

from portway.agent.control import ControlChannel
from portway.errors import ClosedError, EngineRejected
from portway.wire.codes import ErrorCode
from tests.conftest import UNIT_S, EchoServer, EngineHandle, http_get, running_engine
from tests.integration.test_admin_api import admin_api, operator_token
from tests.integration.test_signaling import SseReader, sse

WAIT_S = 10 * UNIT_S


pytestmark = pytest.mark.store

@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[EngineHandle]:
    async with running_engine(tmp_path) as handle:
        yield handle


async def make_pat(api: httpx.AsyncClient, subject: str = "dev@example.com") -> tuple[str, str]:
    """(PAT id, token) of a new PAT in the default project."""
    made = await api.post("/pats", json={"name": "dev", "project": "default", "subject": subject,
                                         "expires_in": 600})
    assert made.status_code == 201, made.text
    return made.json()["pat"]["id"], made.json()["token"]


async def closed_within(channel: ControlChannel) -> None:
    with contextlib.suppress(ClosedError):  # "control channel closed by the engine"
        await asyncio.wait_for(channel.wait_closed(), WAIT_S)
    assert channel.closed


async def read_to_the_end(events: SseReader) -> None:
    """Read what the channel's closing published, until the stream ends (raises then)."""
    for _ in range(10):
        await events.next()


async def refused(engine: EngineHandle, token: str) -> str:
    with pytest.raises(EngineRejected) as caught:
        await engine.client(token).connect()
    assert caught.value.code == ErrorCode.UNAUTHORIZED
    return str(caught.value)


async def test_revoking_a_pat_closes_its_channel_and_watch(engine: EngineHandle,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    async with admin_api(engine, operator_token(engine)) as admin:
        pat_id, pat = await make_pat(admin)
        bystander = await engine.client().connect()  # another credential: untouched
        channel = await engine.client(pat).connect()
        tunnel = await channel.create_tunnel(protocol="tcp")
        async with sse(engine, token=pat) as events:
            assert (await events.next())["type"] == "state.initial"
            with caplog.at_level(logging.WARNING, "portway.engine.access"):
                assert (await admin.post(f"/pats/{pat_id}/revoke", json={"reason": "leaked"})).status_code == 200
                await closed_within(channel)
                with pytest.raises((httpx.HTTPError, StopAsyncIteration)):
                    await read_to_the_end(events)
                assert ": disconnected: credential revoked" in events.comments
        assert tunnel.id not in {t.id for t in engine.engine.ctx.registry.tunnels()}  # type: ignore[union-attr]
        assert not bystander.closed
        assert "token revoked" in await refused(engine, pat)
        closings = [r.getMessage() for r in caplog.records if "closed: credential revoked" in r.getMessage()]
        assert len(closings) == 2 and pat not in caplog.text  # one line each; the token itself never logged
        await bystander.close()


async def test_disabling_a_user_closes_the_channels_of_its_pats(engine: EngineHandle) -> None:
    async with admin_api(engine, operator_token(engine)) as admin:
        _, pat = await make_pat(admin, "mallory")
        channel = await engine.client(pat).connect()
        assert (await admin.patch("/users/mallory", json={"disabled": True})).status_code == 200
        await closed_within(channel)
        assert "user disabled" in await refused(engine, pat)
        assert (await admin.patch("/users/mallory", json={"disabled": False})).status_code == 200
        again = await engine.client(pat).connect()
        await again.close()


async def test_revoking_one_token_by_jti_or_by_itself(engine: EngineHandle) -> None:
    first, second = engine.token(subject="a"), engine.token(subject="a")  # same subject, different jti
    kept = await engine.client(second).connect()
    async with admin_api(engine, operator_token(engine)) as admin:
        for how in ("jti", "token"):
            token = first if how == "jti" else engine.token(subject="b")
            channel = await engine.client(token).connect()
            jti = jwt.decode(token, options={"verify_signature": False})["jti"]
            body = {"jti": jti} if how == "jti" else {"token": token, "reason": "pasted"}
            made = await admin.post("/revocations", json=body)
            assert made.status_code == 201, made.text
            assert made.json()["kind"] == "token" and made.json()["ref"] == jti
            await closed_within(channel)
            assert "token revoked" in await refused(engine, token)
            assert token not in made.text
        assert not kept.closed  # a token of the same subject with another jti lives on
        listed = (await admin.get("/revocations")).json()
        assert [r["kind"] for r in listed] == ["token", "token"] and listed[1]["reason"] == "pasted"
    await kept.close()


async def test_a_keep_alive_visitor_is_stopped_at_its_next_request(engine: EngineHandle,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    async with EchoServer(http=True) as upstream, admin_api(engine, operator_token(engine)) as admin:
        control = await engine.client().connect()
        tunnel = await control.create_tunnel(protocol="http", token_auth=True)
        forwarding = asyncio.ensure_future(tunnel.forward_to("127.0.0.1", upstream.port))
        try:
            _, pat = await make_pat(admin)
            hostname = tunnel.properties.hostname
            assert hostname is not None
            reader, writer = await engine.open_visitor(hostname)
            auth = f"Authorization: Bearer {pat}\r\n"
            status, _ = await http_get(reader, writer, hostname, headers=auth)
            assert status == 200
            made = await admin.get("/pats")
            (pat_id,) = [p["id"] for p in made.json()]
            assert (await admin.post(f"/pats/{pat_id}/revoke", json={})).status_code == 200
            with caplog.at_level(logging.INFO, "portway"):
                status, _ = await http_get(reader, writer, hostname, headers=auth)  # same connection
            assert status == 401
            writer.close()
            refusals = [r for r in caplog.records if "refused by token_auth" in r.getMessage()]
            assert [r.getMessage().rsplit(": ", 1)[1] for r in refusals] == ["credential revoked"]  # the memo's reason
            assert refusals[0].levelno == logging.WARNING
            assert pat not in "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("portway"))
        finally:
            forwarding.cancel()
            await control.close()


@pytest.mark.parametrize(("body", "status", "words"), [
    ({}, 400, "either jti or token"),
    ({"jti": "x", "token": "y"}, 400, "either jti or token"),
    ({"token": "not a jwt"}, 400, "not a JWT"),
    ({"jti": ""}, 400, "jti"),
    ({"jti": "x", "extra": 1}, 400, "extra"),
])
async def test_revocation_refusals(engine: EngineHandle, body: dict[str, object], status: int, words: str) -> None:
    async with admin_api(engine, operator_token(engine)) as admin:
        got = await admin.post("/revocations", json=body)
        assert got.status_code == status and words in got.json()["error"], got.text


async def test_a_token_without_jti_cannot_be_revoked_by_itself(engine: EngineHandle) -> None:
    bare = jwt.encode({"sub": "x", "exp": 4102444800}, engine.secret, algorithm="HS256")
    async with admin_api(engine, operator_token(engine)) as admin:
        got = await admin.post("/revocations", json={"token": bare})
        assert got.status_code == 400 and "revoke its credential" in got.json()["error"]
