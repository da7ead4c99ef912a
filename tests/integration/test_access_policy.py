"""Project access policies on a running engine: tunnel creation refused with UNAUTHORIZED, visitors of
existing tunnels refused as soon as the policy changes, and a minimum TLS version for visitors — whether the
tunnel is found by SNI or, without one, by Host — which also keeps the tunnel off the cleartext listener."""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

import httpx
import pytest

from portway.errors import EngineRejected
from portway.wire.codes import ErrorCode
from tests.conftest import (
    UNIT_S,
    EchoServer,
    EngineHandle,
    close_writer,
    forwarded_hostname,
    http_get,
    log_count,
    read_until_closed,
    running_engine,
)
from tests.integration.test_admin_api import admin_api, operator_token
from tests.integration.test_edge_policy import write_geoip

pytestmark = pytest.mark.store  # on SQLite and PostgreSQL (tests/conftest.py)


async def put_policy(engine: EngineHandle, **fields: object) -> httpx.Response:
    """Replace the default project's policy as an operator does: through the admin API, so the store and the
    engine's reload from it are on the path."""
    async with admin_api(engine, operator_token(engine)) as admin:
        return await admin.put("/projects/default/policy", json={"policy": fields})


async def set_policy(engine: EngineHandle, **fields: object) -> None:
    answer = await put_policy(engine, **fields)
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


def tls12_without_sni(engine: EngineHandle) -> ssl.SSLContext:
    """A TLS 1.2 visitor that sends no server name: the engine's CA is checked, the name cannot be."""
    context = engine.visitor_tls()
    context.check_hostname = False
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


def denials(engine: EngineHandle) -> dict[tuple[str, str], int]:
    assert engine.engine is not None and engine.engine.ctx is not None
    return dict(engine.engine.ctx.counters.policy_denials)


async def test_minimum_tls_version_without_sni_http1(tmp_path: Path) -> None:
    """No SNI: the tunnel is found by Host, and the TLS version is checked there, with the SNI path's 426."""
    async with running_engine(tmp_path) as engine, EchoServer(http=True) as upstream, \
            forwarded_hostname(engine, upstream.port) as hostname:
        await set_policy(engine, min_tls_version="tls1.3")
        reader, writer = await asyncio.open_connection("127.0.0.1", engine.port, ssl=tls12_without_sni(engine),
                                                       server_hostname="")
        try:
            writer.write(f"GET / HTTP/1.1\r\nHost: {hostname}\r\n\r\n".encode())
            answer = await read_until_closed(reader)
        finally:
            await close_writer(writer)
        assert answer.startswith(b"HTTP/1.1 426 ") and b"newer TLS version" in answer
        assert denials(engine) == {("http", "project_min_tls_version"): 1}
        await set_policy(engine, min_tls_version="tls1.2")  # the same visitor is admitted when the policy allows it
        reader, writer = await asyncio.open_connection("127.0.0.1", engine.port, ssl=tls12_without_sni(engine),
                                                       server_hostname="")
        try:
            assert (await http_get(reader, writer, hostname))[0] == 200
        finally:
            await close_writer(writer)
        assert denials(engine) == {("http", "project_min_tls_version"): 1}


async def test_minimum_tls_version_without_sni_http2(tmp_path: Path) -> None:
    """HTTP/2 to the engine's address (an IP literal: no SNI): the stream for the tunnel's authority gets the 426."""
    async with running_engine(tmp_path) as engine, EchoServer(http=True) as upstream, \
            forwarded_hostname(engine, upstream.port) as hostname, \
            httpx.AsyncClient(http1=False, http2=True, verify=tls12_without_sni(engine), trust_env=False,
                              timeout=5 * UNIT_S) as client:
        url = f"https://127.0.0.1:{engine.port}/x"
        await set_policy(engine, min_tls_version="tls1.3")
        refused = await client.get(url, headers={"Host": hostname, "Accept": "application/json"})
        assert refused.http_version == "HTTP/2" and refused.status_code == 426
        assert "newer TLS version" in refused.json()["detail"]
        assert denials(engine) == {("http", "project_min_tls_version"): 1}
        await set_policy(engine, min_tls_version="tls1.2")
        async with httpx.AsyncClient(http1=False, http2=True, verify=tls12_without_sni(engine), trust_env=False,
                                     timeout=5 * UNIT_S) as fresh:  # a policy applies to the next connection
            admitted = await fresh.get(url, headers={"Host": hostname})
        assert admitted.status_code == 200 and admitted.text.startswith("GET /x HTTP/1.1\n")


SERVE = "http:\n  enabled: true\n  listen_addr: 127.0.0.1:0\n  serve_tunnels: true\n"


async def test_minimum_tls_version_keeps_the_tunnel_off_the_cleartext_listener(tmp_path: Path) -> None:
    """`http.serve_tunnels`: a tunnel whose project sets a minimum TLS version gets the redirect mode's 308 to
    HTTPS instead of being served in cleartext, on HTTP/1.1 and h2c; without the minimum it is served."""
    async with running_engine(tmp_path, SERVE) as engine, EchoServer(http=True) as upstream, \
            forwarded_hostname(engine, upstream.port) as hostname:
        assert engine.engine is not None and engine.engine.http_port is not None
        plain = f"http://127.0.0.1:{engine.engine.http_port}"
        await set_policy(engine, min_tls_version="tls1.2")
        async with httpx.AsyncClient(trust_env=False, timeout=5 * UNIT_S) as h1, \
                httpx.AsyncClient(http1=False, http2=True, trust_env=False, timeout=5 * UNIT_S) as h2c:
            for client, version in ((h1, "HTTP/1.1"), (h2c, "HTTP/2")):
                got = await client.post(f"{plain}/a?b=1", content=b"body", headers={"Host": f"{hostname}:80"})
                assert (got.http_version, got.status_code) == (version, 308), got.text
                assert got.headers["location"] == f"https://{hostname}:{engine.port}/a?b=1"
                with_token = await client.get(f"{plain}/a?rstream.token=secret.jwt&b=1", headers={"Host": hostname})
                assert with_token.status_code == 308  # a query token is not echoed back in the Location
                assert with_token.headers["location"] == f"https://{hostname}:{engine.port}/a?b=1"
                assert "served over HTTPS only" in got.text
        assert denials(engine) == {("http", "project_min_tls_version"): 4}  # two requests on each of h1 and h2c
        await set_policy(engine)
        async with httpx.AsyncClient(trust_env=False, timeout=5 * UNIT_S) as h1:
            served = await h1.get(f"{plain}/a", headers={"Host": hostname})
        assert served.status_code == 200 and "X-Forwarded-Proto: http\n" in served.text


async def test_country_allow_list_needs_a_geoip_database(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An engine without GeoIP refuses a policy with countries (it would refuse every visitor in silence); one that
    loads such a policy stored through another engine warns once per project, not at every reload."""
    async with running_engine(tmp_path) as engine:
        refused = await put_policy(engine, allowed_countries=["FR"])
        assert refused.status_code == 400 and "geoip.database_file" in refused.json()["error"]
        async with admin_api(engine, operator_token(engine)) as admin:
            kept = (await admin.get("/projects/default/policy")).json()
        assert kept["version"] == 0 and kept["policy"]["allowed_countries"] is None
    database = write_geoip(tmp_path / "geo.mmdb", {"127.0.0.1/32": "FR"})
    async with running_engine(tmp_path, f"geoip:\n  database_file: {database}\n") as engine:
        await set_policy(engine, allowed_countries=["FR"])  # the store is shared by the engines of this test
    caplog.set_level(logging.WARNING, "portway.engine.credentials")
    async with running_engine(tmp_path) as engine:
        warnings = [r.getMessage() for r in caplog.records if "no GeoIP database" in r.getMessage()]
        assert len(warnings) == 1 and warnings[0].startswith("project default (") and "from FR only" in warnings[0]
        async with admin_api(engine, operator_token(engine)) as admin:  # an admin write reloads the policies
            assert (await admin.post("/projects", json={"name": "other"})).status_code == 201
        assert log_count(caplog, "portway.engine.credentials", "no GeoIP database") == 1
