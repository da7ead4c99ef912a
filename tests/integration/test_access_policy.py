"""Project access policies on a running engine: tunnel creation refused with UNAUTHORIZED, visitors of
existing tunnels refused as soon as the policy changes, and a minimum TLS version for visitors."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import httpx
import pytest

from portway.engine.auth import mint_token
from portway.errors import EngineRejected
from portway.wire.codes import ErrorCode
from tests.conftest import EchoServer, EngineHandle, forwarded_hostname, http_get, running_engine

pytestmark = pytest.mark.store  # on SQLite and PostgreSQL (tests/conftest.py)


async def set_policy(engine: EngineHandle, **fields: object) -> None:
    """Replace the default project's policy as an operator does: through the admin API, so the store and the
    engine's reload from it are on the path."""
    operator = mint_token(engine.secret, subject="root", ttl_s=600, extra={"role": "operator"})
    async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{engine.port}/api/admin", verify=engine.visitor_tls(),
                                 headers={"Authorization": f"Bearer {operator}"}, timeout=10) as admin:
        answer = await admin.put("/projects/default/policy", json={"policy": fields})
    assert answer.status_code == 200, answer.text


async def test_creation_is_checked_against_the_project_policy(tmp_path: Path) -> None:
    async with running_engine(tmp_path) as engine:
        await set_policy(engine, allow_public=False, required_labels={"team": None})
        control = await engine.client().connect()
        try:
            with pytest.raises(EngineRejected) as refused:
                await control.create_tunnel(protocol="http", labels={"team": "a"})
            assert refused.value.code == ErrorCode.UNAUTHORIZED
            assert "private tunnels only" in str(refused.value)
            with pytest.raises(EngineRejected, match="requires the label team"):
                await control.create_tunnel(publish=False, name="db")
            tunnel = await control.create_tunnel(publish=False, name="db", labels={"team": "a"})
            assert tunnel.properties.publish is False
            await set_policy(engine, allowed_protocols=["tcp"])
            with pytest.raises(EngineRejected, match="does not allow http"):
                await control.create_tunnel(protocol="http")
            assert (await control.create_tunnel(protocol="tcp")).properties.port
        finally:
            await control.close()


async def test_visitors_of_existing_tunnels_follow_policy_changes(tmp_path: Path) -> None:
    async with running_engine(tmp_path) as engine, EchoServer(http=True) as upstream, \
            forwarded_hostname(engine, upstream.port) as hostname:
        reader, writer = await engine.open_visitor(hostname)
        status, _ = await http_get(reader, writer, hostname)
        assert status == 200
        writer.close()
        await set_policy(engine, allowed_source_cidrs=["10.0.0.0/8"])  # applies to the next connection
        reader, writer = await engine.open_visitor(hostname)
        status, _ = await http_get(reader, writer, hostname)
        assert status == 403
        writer.close()
        await set_policy(engine, allow_public=False)  # the tunnel itself is no longer allowed: no new visitors
        reader, writer = await engine.open_visitor(hostname)
        status, _ = await http_get(reader, writer, hostname)
        assert status == 403
        writer.close()
        await set_policy(engine)
        reader, writer = await engine.open_visitor(hostname)
        assert (await http_get(reader, writer, hostname))[0] == 200
        writer.close()
        assert engine.engine is not None and engine.engine.ctx is not None
        denials = engine.engine.ctx.counters.policy_denials
        assert denials[("http", "project_trusted_ips")] == 1 and denials[("http", "project_policy")] == 1


async def test_minimum_tls_version_for_visitors(tmp_path: Path) -> None:
    async with running_engine(tmp_path) as engine, EchoServer(http=True) as upstream, \
            forwarded_hostname(engine, upstream.port) as hostname:
        await set_policy(engine, min_tls_version="tls1.3")
        old = engine.visitor_tls()
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        reader, writer = await asyncio.open_connection("127.0.0.1", engine.port, ssl=old, server_hostname=hostname)
        answer = await asyncio.wait_for(reader.read(), 5)
        assert answer.startswith(b"HTTP/1.1 426 ") and b"newer TLS version" in answer
        writer.close()
        reader, writer = await engine.open_visitor(hostname)  # TLS 1.3: served
        assert (await http_get(reader, writer, hostname))[0] == 200
        writer.close()
