"""The plain-HTTP listener (`http.enabled`): redirects to HTTPS, or serves tunnels with `http.serve_tunnels`.

Real engine, real sockets on loopback; httpx as the visitor, raw sockets where a request must be malformed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from portway.engine import Engine
from portway.engine.configfile import load_config
from portway.engine.state import EngineState
from portway.errors import ConfigError
from tests.conftest import (
    UNIT_S,
    EchoServer,
    EngineHandle,
    close_writer,
    engine_yaml,
    forwarded_hostname,
    log_count,
    read_until_closed,
    running_engine,
    start_engine_process,
    stop_engine_process,
)

HTTP_ON = "http:\n  enabled: true\n  listen_addr: 127.0.0.1:0\n"
SERVE = HTTP_ON + "  serve_tunnels: true\n"


def http_port(handle: EngineHandle) -> int:
    assert handle.engine is not None and handle.engine.http_port is not None
    return handle.engine.http_port


@contextlib.asynccontextmanager
async def visitor(port: int) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", follow_redirects=False, trust_env=False,
                                 timeout=5 * UNIT_S) as client:
        yield client


async def raw_exchange(port: int, request: bytes) -> bytes:
    """Send `request` on a fresh connection and read until the engine closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await read_until_closed(reader)
    finally:
        await close_writer(writer)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def engine_from(tmp_path: Path, yaml_text: str, environ: dict[str, str]) -> AsyncIterator[EngineHandle]:
    """An in-process engine from a configuration file plus environment overrides."""
    config_file = tmp_path / "engine.yaml"
    config_file.write_text(yaml_text)
    state = EngineState.open(tmp_path / "state", engine_host="localhost", jwt_secret=None)
    async with Engine(load_config(str(config_file), environ), state) as server:
        yield EngineHandle(server.port, state.ca_path, state.jwt_secret, server)


def http_tunnel(engine: EngineHandle, upstream_port: int) -> contextlib.AbstractAsyncContextManager[str]:
    """A published HTTP tunnel (our SDK as the agent) forwarding to `upstream_port`; yields its hostname."""
    return forwarded_hostname(engine, upstream_port)


# ---- redirect mode (the default) ----


async def test_requests_are_redirected_to_https_with_path_and_query(tmp_path: Path) -> None:
    async with running_engine(tmp_path, HTTP_ON) as engine, visitor(http_port(engine)) as client:
        base = f"https://localhost:{engine.port}"
        got = await client.get("/a/b?c=1&d=%20x", headers={"Host": "localhost:8080"})
        assert got.status_code == 308
        assert got.headers["location"] == f"{base}/a/b?c=1&d=%20x"
        assert got.headers["connection"] == "keep-alive"
        # the same connection serves the next requests: a POST with a body, a HEAD without one
        got = await client.post("/form", content=b"x" * 10_000, headers={"Host": "LocalHost."})
        assert (got.status_code, got.headers["location"]) == (308, f"{base}/form")
        got = await client.head("/", headers={"Host": "localhost"})
        assert (got.status_code, got.headers["location"], got.content) == (308, f"{base}/", b"")
        # the tunnel zone is redirected even with no tunnel published there (an agent may be reconnecting)
        got = await client.get("/x", headers={"Host": "nobody.t.localhost:8080"})
        assert (got.status_code, got.headers["location"]) == (308, f"https://nobody.t.localhost:{engine.port}/x")
        # absolute-form: the target's authority is the host (RFC 9112 §3.2.2)
        answer = await raw_exchange(http_port(engine), b"GET http://localhost/abs?q HTTP/1.1\r\nHost: evil.example\r\n"
                                                       b"Connection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 308 Permanent Redirect\r\n")
        assert f"Location: {base}/abs?q\r\n".encode() in answer


async def test_live_tunnel_hostname_is_redirected(tmp_path: Path) -> None:
    async with running_engine(tmp_path, HTTP_ON) as engine, EchoServer(http=True) as upstream, \
            http_tunnel(engine, upstream.port) as hostname, visitor(http_port(engine)) as client:
        got = await client.get("/p?q=1", headers={"Host": hostname})
        assert (got.status_code, got.headers["location"]) == (308, f"https://{hostname}:{engine.port}/p?q=1")
        assert upstream.peers == []  # redirected at the edge, nothing reached the service


async def test_redirect_uses_the_public_port_from_the_environment(tmp_path: Path) -> None:
    """`engine.public_port` 443 (e.g. behind a port forward) leaves the port out; env overrides switch it on."""
    env = {"RSTREAM_ENGINE_HTTP__ENABLED": "true", "RSTREAM_ENGINE_HTTP__LISTEN_ADDR": "127.0.0.1:0",
           "RSTREAM_ENGINE_ENGINE__PUBLIC_PORT": "443"}
    async with engine_from(tmp_path, engine_yaml(), env) as engine, visitor(http_port(engine)) as client:
        got = await client.get("/a?b", headers={"Host": "localhost"})
        assert (got.status_code, got.headers["location"]) == (308, "https://localhost/a?b")


async def test_foreign_hosts_are_not_redirected(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="portway.access")
    async with running_engine(tmp_path, HTTP_ON) as engine, visitor(http_port(engine)) as client:
        for host in ("evil.example", "localhost.evil.example", "t.localhost", "a.b.t.localhost", "127.0.0.1"):
            got = await client.get("/", headers={"Host": host, "Accept": "application/json"})
            assert got.status_code == 404, host
            assert "location" not in got.headers
            assert got.json()["host"] == host
        answer = await raw_exchange(http_port(engine), b"GET http://evil.example/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 404 ") and b"Location" not in answer
    assert log_count(caplog, "portway.access", "status=404") == 6


@pytest.mark.parametrize(("request_bytes", "detail"), [
    (b"GARBAGE\r\n\r\n", b"not valid HTTP/1.1"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"not valid HTTP/1.1"),  # a TLS ClientHello
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"not valid HTTP/1.1"),  # h2c is served only with serve_tunnels
    (b"GET / HTTP/1.0\r\n\r\n", b"Host header is required"),
    (b"GET / HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n", b"more than one Host"),
    (b"GET / HTTP/1.1\r\nHost: user@localhost\r\n\r\n", b"not a valid host name"),
    (b"GET / HTTP/1.1\r\nHost: localhost:http\r\n\r\n", b"invalid port"),
    (b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n", b"can be redirected"),
    (b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n", b"can be redirected"),
])
async def test_bad_requests_get_400_and_are_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                        request_bytes: bytes, detail: bytes) -> None:
    caplog.set_level("INFO", logger="portway.access")
    async with running_engine(tmp_path, HTTP_ON) as engine:
        answer = await raw_exchange(http_port(engine), request_bytes)
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert detail in answer and b"Connection: close" in answer
    assert log_count(caplog, "portway.access", "status=400") == 1


async def test_oversized_heads_get_431(tmp_path: Path) -> None:
    async with running_engine(tmp_path, HTTP_ON) as engine:
        big = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"
        assert (await raw_exchange(http_port(engine), big)).startswith(b"HTTP/1.1 431 ")
        many = b"GET / HTTP/1.1\r\nHost: localhost\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(120)) + b"\r\n"
        assert (await raw_exchange(http_port(engine), many)).startswith(b"HTTP/1.1 431 ")


async def test_nothing_is_answered_after_a_closing_response(tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="portway.access")
    async with running_engine(tmp_path, HTTP_ON) as engine:
        answer = await raw_exchange(http_port(engine), b"GET /one HTTP/1.0\r\nHost: localhost\r\n\r\n"
                                                       b"GET /two HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert answer.count(b"HTTP/1.1 308 ") == 1 and b"/one\r\n" in answer and b"/two" not in answer
    assert log_count(caplog, "portway.access", "status=") == 1  # the redirect; no 400 for the second request


async def test_upgrade_request_is_redirected_then_closed(tmp_path: Path) -> None:
    async with running_engine(tmp_path, HTTP_ON) as engine:
        answer = await raw_exchange(http_port(engine), b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                                                       b"Connection: Upgrade\r\n\r\nframes")
        assert answer.startswith(b"HTTP/1.1 308 ") and b"Connection: close\r\n" in answer


@pytest.mark.parametrize("extra", [HTTP_ON, SERVE])
async def test_silent_connection_is_closed_by_the_idle_timeout(tmp_path: Path, extra: str,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    async with running_engine(tmp_path, "  http_idle_seconds: 0.3\n" + extra) as engine:
        reader, writer = await asyncio.open_connection("127.0.0.1", http_port(engine))
        try:
            assert await read_until_closed(reader, timeout=3) == b""  # one to two idle periods
        finally:
            await close_writer(writer)
    logger, message = (("portway.engine.http", "closing idle visitor") if extra == SERVE
                       else ("portway.engine.plainhttp", "closing idle plain-HTTP"))
    assert log_count(caplog, logger, message) == 1


# ---- serve_tunnels mode ----


async def test_serve_tunnels_relays_to_the_tunnel_in_cleartext(tmp_path: Path) -> None:
    async with running_engine(tmp_path, SERVE) as engine, EchoServer(http=True) as upstream, \
            http_tunnel(engine, upstream.port) as hostname, visitor(http_port(engine)) as client:
        got = await client.get("/a?b=1", headers={"Host": f"{hostname}:8080"})
        assert got.status_code == 200
        assert got.text.startswith("GET /a?b=1 HTTP/1.1\n")
        assert "X-Forwarded-Proto: http\n" in got.text
        assert "X-Forwarded-For: 127.0.0.1\n" in got.text
        assert f"X-Forwarded-Host: {hostname}:8080\n" in got.text
        got = await client.post("/up", content=b"y" * 100_000, headers={"Host": hostname})  # same connection
        assert got.status_code == 200 and got.content.endswith(b"y" * 100_000)
        # the engine's own host answers its health endpoint here too
        health = await client.get("/healthz", headers={"Host": "localhost"})
        assert health.status_code == 200
        assert json.loads(health.content)["tunnels"] == 1


async def test_serve_tunnels_speaks_h2c_with_prior_knowledge(tmp_path: Path) -> None:
    async with running_engine(tmp_path, SERVE) as engine, EchoServer(http=True) as upstream, \
            http_tunnel(engine, upstream.port) as hostname, \
            httpx.AsyncClient(http1=False, http2=True, trust_env=False, timeout=5 * UNIT_S) as client:
        url = f"http://127.0.0.1:{http_port(engine)}"
        got = await client.get(f"{url}/h2c?x=1", headers={"Host": hostname})
        assert got.http_version == "HTTP/2" and got.status_code == 200
        assert got.text.startswith("GET /h2c?x=1 HTTP/1.1\n")
        assert "X-Forwarded-Proto: http\n" in got.text.replace("x-forwarded-proto", "X-Forwarded-Proto")
        missing = await client.get(f"{url}/", headers={"Host": "nobody.t.localhost"})
        assert missing.status_code == 404


async def test_h2c_preface_split_across_segments_is_recognised(tmp_path: Path) -> None:
    async with running_engine(tmp_path, SERVE) as engine:
        reader, writer = await asyncio.open_connection("127.0.0.1", http_port(engine))
        try:
            writer.write(b"PRI * HTTP/2.0\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # + empty SETTINGS
            frame = await asyncio.wait_for(reader.readexactly(9), 5 * UNIT_S)
            assert frame[3] == 0x4  # the engine's SETTINGS: it is speaking HTTP/2
        finally:
            await close_writer(writer)


async def test_serve_tunnels_error_pages(tmp_path: Path) -> None:
    async with running_engine(tmp_path, SERVE) as engine, visitor(http_port(engine)) as client:
        got = await client.get("/", headers={"Host": "nobody.t.localhost"})
        assert got.status_code == 404 and "location" not in got.headers
        dead = free_port()  # nothing listens there: the agent cannot reach its service
        async with http_tunnel(engine, dead) as hostname:
            got = await client.get("/", headers={"Host": hostname})
            assert got.status_code == 502
        answer = await raw_exchange(http_port(engine), b"NOT HTTP\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400 ")


# ---- lifecycle ----


async def test_listener_stops_at_shutdown(tmp_path: Path) -> None:
    async with running_engine(tmp_path, HTTP_ON) as engine:
        assert engine.engine is not None
        port = http_port(engine)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n")  # a head, no body, keep-alive
            assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5 * UNIT_S)).startswith(b"HTTP/1.1 308")
            await asyncio.wait_for(engine.engine.stop(), 5 * UNIT_S)
            # the idle keep-alive connection was closed, and nothing accepts on the port any more
            assert await read_until_closed(reader, timeout=2) == b""
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", port)
        finally:
            await close_writer(writer)


@pytest.mark.parametrize("busy_key", ["http.listen_addr", "metrics.prometheus.listen_addr"])
async def test_busy_address_fails_the_start_and_releases_the_other_ports(tmp_path: Path, busy_key: str) -> None:
    tls_port, plain_port = free_port(), free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        env = {"RSTREAM_ENGINE_TLS__LISTEN_ADDR": f"127.0.0.1:{tls_port}", "RSTREAM_ENGINE_HTTP__ENABLED": "true",
               "RSTREAM_ENGINE_HTTP__LISTEN_ADDR": f"127.0.0.1:{plain_port}"}
        if busy_key == "http.listen_addr":
            env["RSTREAM_ENGINE_HTTP__LISTEN_ADDR"] = busy
        else:
            env |= {"RSTREAM_ENGINE_METRICS__PROMETHEUS__ENABLED": "true",
                    "RSTREAM_ENGINE_METRICS__PROMETHEUS__LISTEN_ADDR": busy}
        with pytest.raises(ConfigError, match=rf"^{re.escape(busy_key)}: cannot listen on {re.escape(busy)}: "):
            async with engine_from(tmp_path, engine_yaml(), env):
                pass
    for port in (tls_port, plain_port):  # what was bound before the failure was closed
        with socket.socket() as again:
            again.bind(("127.0.0.1", port))


async def test_engine_process_prints_the_listener_and_redirects(tmp_path: Path) -> None:
    """`portway engine` (uvloop): the banner names the plain-HTTP address; redirects carry the TLS port."""
    port = free_port()
    handle = start_engine_process(tmp_path, f"http:\n  enabled: true\n  listen_addr: 127.0.0.1:{port}\n")
    try:
        async with visitor(port) as client:
            got = await client.get("/hello?x=1", headers={"Host": "localhost"})
        assert (got.status_code, got.headers["location"]) == (308, f"https://localhost:{handle.port}/hello?x=1")
    finally:
        stop_engine_process(handle)
    assert f"plain HTTP on 127.0.0.1:{port}, redirecting to https" in handle.logs()
