"""Edge policy end to end: trusted_ips, geoip and token_auth refuse visitors at the engine, before
anything reaches the agent — 403/401 on HTTP, a closed connection on TCP and TLS."""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from portway.engine.auth import mint_token
from portway.errors import ConfigError, EngineRejected
from portway.wire.codes import ErrorCode
from tests.conftest import UNIT_S, EchoServer, EngineHandle, forwarded_tunnel, http_get, running_engine

WAIT_S = 5 * UNIT_S


def write_geoip(path: Path, countries: dict[str, str]) -> Path:
    """A tiny MaxMind-format database (GeoIP2-Country layout) mapping CIDRs to ISO codes."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-Country")
    for cidr, iso in countries.items():
        writer.insert_network(IPSet([cidr]), {"country": {"iso_code": iso}})
    writer.to_db_file(str(path))
    return path


async def visit(engine: EngineHandle, hostname: str, path: str = "/", *, source: str = "127.0.0.1",
                headers: str = "") -> tuple[int, bytes, bytes]:
    """One HTTPS request from `source`; (status, body, raw head)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(
        "127.0.0.1", engine.port, ssl=engine.visitor_tls(), server_hostname=hostname, local_addr=(source, 0)), WAIT_S)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {hostname}\r\n{headers}\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        body = await asyncio.wait_for(reader.readexactly(length), WAIT_S)
        return int(head.split(b" ", 2)[1]), body, head
    finally:
        writer.close()


async def closed_without_data(host: str, port: int, *, source: str = "127.0.0.1",
                              tls: ssl.SSLContext | None = None, server_hostname: str | None = None) -> bool:
    """Connect, send a byte, and report whether the engine closed without ever answering."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            host, port, local_addr=(source, 0), ssl=tls, server_hostname=server_hostname), WAIT_S)
    except (ConnectionError, ssl.SSLError):
        return True
    try:
        writer.write(b"x")
        return await asyncio.wait_for(reader.read(), WAIT_S) == b""
    except (ConnectionError, ssl.SSLError):
        return True
    finally:
        writer.close()


# ---------------------------------------------------------------- trusted_ips


async def test_http_trusted_ips_admit_listed_networks_and_refuse_others_with_403(engine: EngineHandle) -> None:
    async with EchoServer(http=True) as upstream:
        async with forwarded_tunnel(engine, upstream.port, protocol="http",
                                    trusted_ips=["127.0.0.1/32", "10.0.0.0/8"]) as t:
            assert list(t.properties.trusted_ips) == ["127.0.0.1/32", "10.0.0.0/8"]
            assert t.properties.hostname is not None
            status, _, _ = await visit(engine, t.properties.hostname, "/ok")
            assert status == 200
            status, body, _ = await visit(engine, t.properties.hostname, "/no", source="127.0.0.2")
            assert status == 403
            assert t.properties.hostname.encode() in body
        assert upstream.peers == ["127.0.0.1"]  # the refused visitor never reached the service
    assert engine.engine is not None and engine.engine.ctx is not None
    assert engine.engine.ctx.counters.policy_denials == {("http", "trusted_ips"): 1}


async def test_tcp_trusted_ips_close_refused_visitors_before_the_agent(engine: EngineHandle) -> None:
    async with EchoServer() as upstream, forwarded_tunnel(engine, upstream.port, protocol="tcp",
                                                   trusted_ips=["127.0.0.3"]) as tunnel:
        port = tunnel.properties.port
        assert port is not None
        assert await closed_without_data("127.0.0.1", port, source="127.0.0.2")
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.3", 0))
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), WAIT_S) == b"ping"
        writer.close()
        assert upstream.peers == ["127.0.0.1"]


async def test_tls_passthrough_trusted_ips_close_refused_visitors(engine: EngineHandle) -> None:
    async with EchoServer() as upstream, forwarded_tunnel(engine, upstream.port, protocol="tls",
                                                   trusted_ips=["10.0.0.0/8"]) as tunnel:
        hostname = tunnel.properties.hostname
        tls = ssl.create_default_context()  # the upstream would present its own certificate
        assert await closed_without_data("127.0.0.1", engine.port, tls=tls, server_hostname=hostname)
        assert upstream.peers == []


# ---------------------------------------------------------------- geoip


async def test_geoip_allow_list_from_the_engine_database(tmp_path: Path) -> None:
    db = write_geoip(tmp_path / "geo.mmdb", {"127.0.0.1/32": "FR", "127.0.0.2/32": "DE"})
    async with running_engine(tmp_path, f"geoip:\n  database_file: {db}\n") as engine, \
            EchoServer(http=True) as upstream:
        async with forwarded_tunnel(engine, upstream.port, protocol="http", geoip=["FR", "BE"]) as tunnel:
            hostname = tunnel.properties.hostname
            assert hostname is not None
            assert (await visit(engine, hostname))[0] == 200
            assert (await visit(engine, hostname, source="127.0.0.2"))[0] == 403  # DE
            assert (await visit(engine, hostname, source="127.0.0.9"))[0] == 403  # not in the database
        async with forwarded_tunnel(engine, upstream.port, protocol="tcp", geoip=["DE"]) as tunnel:
            assert tunnel.properties.port is not None
            assert await closed_without_data("127.0.0.1", tunnel.properties.port)  # FR
        assert upstream.peers == ["127.0.0.1"]
        assert engine.engine is not None and engine.engine.ctx is not None
        assert engine.engine.ctx.counters.policy_denials == {("http", "geoip"): 2, ("tcp", "geoip"): 1}


async def test_geoip_without_a_database_refuses_the_tunnel(engine: EngineHandle) -> None:
    control = await engine.client().connect()
    try:
        with pytest.raises(EngineRejected) as caught:
            await control.create_tunnel(protocol="http", geoip=["FR"])
        assert caught.value.code == ErrorCode.FEATURE_NOT_AVAILABLE
        assert "geoip.database_file" in str(caught.value)
        assert await control.create_tunnel(protocol="http")  # the channel is still fine
    finally:
        await control.close()


async def test_unreadable_geoip_database_stops_the_engine_start(tmp_path: Path) -> None:
    (tmp_path / "broken.mmdb").write_bytes(b"not a database")
    with pytest.raises(ConfigError, match="cannot be opened"):
        async with running_engine(tmp_path, f"geoip:\n  database_file: {tmp_path / 'broken.mmdb'}\n"):
            pass


# ---------------------------------------------------------------- token_auth


async def test_token_auth_requires_a_valid_token_on_every_request(engine: EngineHandle) -> None:
    async with EchoServer(http=True) as upstream, forwarded_tunnel(engine, upstream.port, protocol="http",
                                                            token_auth=True) as tunnel:
        hostname = tunnel.properties.hostname
        assert hostname is not None and tunnel.properties.token_auth is True
        status, body, head = await visit(engine, hostname, "/secret")
        assert status == 401
        assert b'WWW-Authenticate: Bearer realm="portway"\r\n' in head
        status, _, head = await visit(engine, hostname, "/secret", headers="Authorization: Bearer nope\r\n")
        assert status == 401 and b'error="invalid_token"' in head
        expired = mint_token(engine.secret, subject="late", ttl_s=60, now=time.time() - 600)
        status, _, _ = await visit(engine, hostname, "/secret", headers=f"Authorization: Bearer {expired}\r\n")
        assert status == 401
        assert upstream.peers == []  # nothing reached the service so far

        token = engine.token()
        status, body, _ = await visit(engine, hostname, "/secret", headers=f"Authorization: Bearer {token}\r\n")
        assert status == 200
        assert b"authorization" not in body.lower()  # the edge credential is not passed upstream
        assert token.encode() not in body

        status, body, _ = await visit(engine, hostname, f"/q?a=1&rstream.token={token}&b=2")
        assert status == 200
        assert body.startswith(b"GET /q?a=1&b=2 HTTP/1.1")
        assert token.encode() not in body


async def test_token_auth_checks_each_request_of_a_keepalive_connection(engine: EngineHandle) -> None:
    async with EchoServer(http=True) as upstream, forwarded_tunnel(engine, upstream.port, protocol="http",
                                                            token_auth=True) as tunnel:
        hostname = tunnel.properties.hostname
        assert hostname is not None
        reader, writer = await engine.open_visitor(hostname)
        try:
            auth = f"Authorization: Bearer {engine.token()}\r\n"
            assert (await http_get(reader, writer, hostname, "/1", headers=auth))[0] == 200
            assert (await http_get(reader, writer, hostname, "/2", headers=auth))[0] == 200
            status, _ = await http_get(reader, writer, hostname, "/3")
            assert status == 401
            assert await asyncio.wait_for(reader.read(), WAIT_S) == b""  # and the connection is closed
        finally:
            writer.close()
        assert engine.engine is not None and engine.engine.ctx is not None
        assert engine.engine.ctx.counters.policy_denials == {("http", "token_auth"): 1}


async def test_token_auth_needs_token_verification_on(tmp_path: Path) -> None:
    async with running_engine(tmp_path, "auth:\n  jwt:\n    enabled: false\n") as engine:
        control = await engine.client().connect()
        try:
            with pytest.raises(EngineRejected) as caught:
                await control.create_tunnel(protocol="http", token_auth=True)
            assert caught.value.code == ErrorCode.FEATURE_NOT_AVAILABLE
        finally:
            await control.close()


async def test_token_auth_is_refused_on_tcp_tunnels(engine: EngineHandle) -> None:
    control = await engine.client().connect()
    try:
        with pytest.raises(EngineRejected) as caught:
            await control.create_tunnel(protocol="tcp", token_auth=True)
        assert caught.value.code == ErrorCode.INVALID_REQUEST
    finally:
        await control.close()


async def test_tls_terminated_trusted_ips_refuse_before_the_handshake(engine: EngineHandle) -> None:
    async with EchoServer() as upstream, forwarded_tunnel(engine, upstream.port, protocol="tls", tls_mode="terminated",
                                                   trusted_ips=["127.0.0.3/32"]) as tunnel:
        hostname = tunnel.properties.hostname
        with pytest.raises((ConnectionError, ssl.SSLError)):
            await asyncio.wait_for(asyncio.open_connection(
                "127.0.0.1", engine.port, ssl=engine.visitor_tls(), server_hostname=hostname,
                local_addr=("127.0.0.2", 0)), WAIT_S)  # no TLS at all: the engine closed before its ServerHello
        reader, writer = await asyncio.open_connection("127.0.0.1", engine.port, ssl=engine.visitor_tls(),
                                                       server_hostname=hostname, local_addr=("127.0.0.3", 0))
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), WAIT_S) == b"ping"
        writer.close()
        assert upstream.peers == ["127.0.0.1"]
    assert engine.engine is not None and engine.engine.ctx is not None
    assert engine.engine.ctx.counters.policy_denials == {("tls", "trusted_ips"): 1}
