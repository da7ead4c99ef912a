"""The Prometheus endpoint (`metrics.prometheus`): real engines, real sockets, scrapes parsed with
prometheus_client's own parser."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from portway import __version__
from portway.engine import Engine
from portway.engine.configfile import load_config
from portway.engine.metricsserver import MAX_CONNECTIONS, MAX_REQUEST_BYTES
from portway.engine.state import EngineState
from portway.errors import ConfigError
from tests.conftest import (
    UNIT_S,
    EchoServer,
    EngineHandle,
    close_writer,
    engine_yaml,
    http_get,
    log_count,
    read_until_closed,
    running_engine,
    start_engine_process,
    stop_engine_process,
)

TOKEN = "scrape-secret-7f3a"
LOGGER = "portway.engine.metrics"


def metrics_yaml(token: str | None = None, addr: str = "127.0.0.1:0") -> str:
    return ("metrics:\n  prometheus:\n    enabled: true\n"
            f"    listen_addr: '{addr}'\n" + (f"    bearer_token: {token}\n" if token else ""))


def metrics_port(engine: EngineHandle) -> int:
    assert engine.engine is not None and engine.engine.metrics is not None
    return engine.engine.metrics.port


def url(engine: EngineHandle, path: str = "/metrics") -> str:
    return f"http://127.0.0.1:{metrics_port(engine)}{path}"


@contextlib.asynccontextmanager
async def metrics_engine(tmp_path: Path, token: str | None = None) -> AsyncIterator[EngineHandle]:
    async with running_engine(tmp_path, metrics_yaml(token)) as engine:
        yield engine


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(engine: EngineHandle, token: str | None = None) -> Samples:
    """One scrape, parsed: (sample name, labels) -> value."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient() as client:
        response = await client.get(url(engine), headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def eventually(engine: EngineHandle, name: str, expected: float, **labels: str) -> Samples:
    """Scrape until `name` reaches `expected` (connection closes are seen by the engine a little later)."""
    for _ in range(100):
        samples = await scrape(engine)
        if value(samples, name, **labels) == expected:
            return samples
        await asyncio.sleep(0.05 * UNIT_S)
    raise AssertionError(f"{name}{labels} stayed at {value(samples, name, **labels)}, expected {expected}")


async def raw_request(engine: EngineHandle, request: bytes) -> bytes:
    """Send bytes to the metrics port and read everything until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", metrics_port(engine))
    try:
        writer.write(request)
        await writer.drain()
        return await read_until_closed(reader)
    finally:
        await close_writer(writer)


# ---- what a scrape reports ----


async def test_scrape_reports_agents_and_tunnels_published_with_the_sdk(tmp_path: Path) -> None:
    async with metrics_engine(tmp_path) as engine:
        samples = await scrape(engine)
        assert value(samples, "portway_engine_info", version=__version__) == 1
        assert value(samples, "portway_agents_connected") == 0
        assert value(samples, "portway_tunnels", protocol="http", publish="true") == 0
        assert ("process_cpu_seconds_total", frozenset()) in samples

        control = await engine.client().connect()
        try:
            await control.create_tunnel(protocol="http")
            await control.create_tunnel(protocol="tcp")
            await control.create_tunnel(protocol="tcp")
            await control.create_tunnel(name="private-one", publish=False)
            samples = await scrape(engine)
            assert value(samples, "portway_agents_connected") == 1
            assert value(samples, "portway_control_channels_opened_total") == 1
            assert value(samples, "portway_tunnels", protocol="http", publish="true") == 1
            assert value(samples, "portway_tunnels", protocol="tcp", publish="true") == 2
            assert value(samples, "portway_tunnels", protocol="tls", publish="true") == 0
            assert value(samples, "portway_tunnels", protocol="none", publish="false") == 1
        finally:
            await control.close()
        samples = await eventually(engine, "portway_agents_connected", 0)
        assert value(samples, "portway_tunnels", protocol="tcp", publish="true") == 0
        assert value(samples, "portway_control_channels_opened_total") == 1


async def test_stream_and_byte_counters_follow_tcp_traffic(tmp_path: Path) -> None:
    async with metrics_engine(tmp_path) as engine, EchoServer() as upstream:
        control = await engine.client().connect()
        tunnel = await control.create_tunnel(protocol="tcp")
        forwarding = asyncio.ensure_future(tunnel.forward_to("127.0.0.1", upstream.port))
        assert tunnel.properties.port is not None
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", tunnel.properties.port)
            writer.write(b"u" * 1000)
            assert await asyncio.wait_for(reader.readexactly(1000), 5 * UNIT_S) == b"u" * 1000
            writer.write(b"v" * 234)  # the visitor sends more than the upstream has answered yet
            # the open stream: counted live, from its pipes
            samples = await eventually(engine, "portway_visitor_received_bytes_total", 1234)
            assert value(samples, "portway_streams_opened_total") == 1
            assert value(samples, "portway_streams_active") == 1
            assert value(samples, "portway_streams_pending") == 0
            assert value(samples, "portway_visitor_sent_bytes_total") >= 1000
            await asyncio.wait_for(reader.readexactly(234), 5 * UNIT_S)
            await close_writer(writer)
            # closed: moved into the counters, each direction once
            samples = await eventually(engine, "portway_streams_active", 0)
            assert value(samples, "portway_visitor_received_bytes_total") == 1234
            assert value(samples, "portway_visitor_sent_bytes_total") == 1234
            assert value(samples, "portway_streams_failed_total") == 0
        finally:
            forwarding.cancel()
            await control.close()


async def test_a_stream_the_agent_cannot_open_counts_as_failed(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a local port with nothing listening
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    async with metrics_engine(tmp_path) as engine:
        control = await engine.client().connect()
        tunnel = await control.create_tunnel(protocol="tcp")
        forwarding = asyncio.ensure_future(tunnel.forward_to("127.0.0.1", dead_port))
        assert tunnel.properties.port is not None
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", tunnel.properties.port)
            assert await read_until_closed(reader) == b""
            await close_writer(writer)
            samples = await eventually(engine, "portway_streams_failed_total", 1)
            assert value(samples, "portway_streams_opened_total") == 0
        finally:
            forwarding.cancel()
            await control.close()


async def test_policy_denials_are_counted_by_protocol_and_reason(tmp_path: Path) -> None:
    async with metrics_engine(tmp_path) as engine, EchoServer() as upstream:
        control = await engine.client().connect()
        tunnel = await control.create_tunnel(protocol="tcp", trusted_ips=("10.0.0.0/8",))
        forwarding = asyncio.ensure_future(tunnel.forward_to("127.0.0.1", upstream.port))
        assert tunnel.properties.port is not None
        try:
            for _ in range(2):
                reader, writer = await asyncio.open_connection("127.0.0.1", tunnel.properties.port)
                assert await read_until_closed(reader) == b""
                await close_writer(writer)
            samples = await eventually(engine, "portway_policy_denials_total", 2, protocol="tcp",
                                       reason="trusted_ips")
            assert value(samples, "portway_streams_opened_total") == 0
            assert upstream.peers == []
        finally:
            forwarding.cancel()
            await control.close()


async def test_http_tunnel_bytes_and_responses_by_status(tmp_path: Path) -> None:
    async with metrics_engine(tmp_path) as engine, EchoServer(http=True) as upstream:
        control = await engine.client().connect()
        tunnel = await control.create_tunnel(protocol="http")
        forwarding = asyncio.ensure_future(tunnel.forward_to("127.0.0.1", upstream.port))
        hostname = tunnel.properties.hostname
        assert hostname is not None
        try:
            reader, writer = await engine.open_visitor(hostname)
            status, _ = await http_get(reader, writer, hostname, "/x", body=b"b" * 5000)
            assert status == 200
            await close_writer(writer)
            samples = await eventually(engine, "portway_streams_active", 0)
            # the HTTP edge counts what visitors sent (head and body, after TLS), not only the agent side
            assert value(samples, "portway_visitor_received_bytes_total") > 5000
            assert value(samples, "portway_visitor_sent_bytes_total") > 5000
        finally:
            forwarding.cancel()
            await control.close()
        # responses by status are counted by the HTTP edge (Counters.http_responses) and reported as they are
        assert engine.engine is not None and engine.engine.ctx is not None
        counters = engine.engine.ctx.counters
        assert counters.http_responses.get(200) == 1  # the request above
        counters.count(counters.http_responses, 502)
        samples = await scrape(engine)
        assert value(samples, "portway_http_responses_total", code="200") == 1
        assert value(samples, "portway_http_responses_total", code="502") == 1


async def test_engines_in_one_process_report_their_own_state(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with metrics_engine(tmp_path / "a") as first, metrics_engine(tmp_path / "b") as second:
        control = await first.client().connect()
        try:
            await control.create_tunnel(protocol="tcp")
            assert value(await scrape(first), "portway_tunnels", protocol="tcp", publish="true") == 1
            assert value(await scrape(second), "portway_tunnels", protocol="tcp", publish="true") == 0
        finally:
            await control.close()


async def test_openmetrics_is_served_when_asked_for(tmp_path: Path) -> None:
    async with metrics_engine(tmp_path) as engine, httpx.AsyncClient() as client:
        response = await client.get(url(engine), headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/openmetrics-text")
        assert response.text.endswith("# EOF\n")


# ---- HTTP: auth, paths, methods, bounds ----


async def test_bearer_token_is_required_when_configured(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    async with metrics_engine(tmp_path, TOKEN) as engine, httpx.AsyncClient() as client:
        for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"},
                        {"Authorization": f"Bearer {TOKEN}x"}):
            response = await client.get(url(engine), headers=headers)
            assert response.status_code == 401
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert "portway_" not in response.text
        # unauthenticated clients learn nothing, not even which paths exist
        assert (await client.get(url(engine, "/other"))).status_code == 401
        response = await client.get(url(engine), headers={"Authorization": f"bearer {TOKEN}"})
        assert response.status_code == 200
        assert "portway_agents_connected 0.0" in response.text
        assert value(await scrape(engine, TOKEN), "portway_agents_connected") == 0
    assert log_count(caplog, LOGGER, "no Authorization header") == 2
    assert log_count(caplog, LOGGER, "wrong bearer token") == 2
    assert log_count(caplog, LOGGER, "not a bearer token") == 1
    assert log_count(caplog, LOGGER, "bearer token required") == 1  # the start message
    assert TOKEN not in caplog.text


async def test_other_paths_are_404_and_other_methods_405(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    async with metrics_engine(tmp_path, TOKEN) as engine, httpx.AsyncClient(
            headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        for path in ("/", "/metrics/", "/metricsx", "/api/health"):
            assert (await client.get(url(engine, path))).status_code == 404
        assert (await client.get(url(engine, "/metrics?name[]=x"))).status_code == 200  # the query is ignored
        for method in ("POST", "PUT", "DELETE", "OPTIONS"):
            response = await client.request(method, url(engine), content=b"x" * 100)
            assert response.status_code == 405
            assert response.headers["allow"] == "GET, HEAD"
        response = await client.head(url(engine))
        assert response.status_code == 200
        assert int(response.headers["content-length"]) > 0
        assert response.content == b""
        # all of it on one keep-alive connection
        assert len(engine.engine.metrics.connections) == 1  # type: ignore[union-attr]
    assert log_count(caplog, LOGGER, "unknown path") == 4
    assert log_count(caplog, LOGGER, "with method") == 4


async def test_oversize_and_malformed_requests_are_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    async with metrics_engine(tmp_path) as engine:
        big = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * MAX_REQUEST_BYTES + b"\r\n\r\n"
        answer = await raw_request(engine, big)
        assert answer.startswith(b"HTTP/1.1 431 ")
        assert b"Connection: close" in answer
        body = b"x" * (MAX_REQUEST_BYTES + 1)
        answer = await raw_request(engine, b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                                   % (len(body), body))
        assert answer.startswith(b"HTTP/1.1 413 ")
        # one header line that never ends, in pieces: refused before the parser holds more than the bound
        reader, writer = await asyncio.open_connection("127.0.0.1", metrics_port(engine))
        writer.write(b"GET /metrics HTTP/1.1\r\nX-Pad: ")
        for _ in range(MAX_REQUEST_BYTES // 1024 + 1):
            writer.write(b"a" * 1024)
            await writer.drain()
            await asyncio.sleep(0.01)
        answer = await read_until_closed(reader)
        assert answer.startswith(b"HTTP/1.1 431 ")
        await close_writer(writer)
        answer = await raw_request(engine, b"NOT HTTP AT ALL\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400 ")
        # CONNECT and Upgrade requests get their answer, then the connection ends
        answer = await raw_request(engine, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 404 ")  # its target is no path
        answer = await raw_request(engine, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                                           b"Upgrade: websocket\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 ")
        answer = await raw_request(engine, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 ")  # served, then closed as asked
        assert b"\r\nConnection: close\r\n" in answer
    assert log_count(caplog, LOGGER, f"request over {MAX_REQUEST_BYTES} bytes") == 3
    assert log_count(caplog, LOGGER, "not valid HTTP/1.1") == 1
    assert log_count(caplog, LOGGER, "an Upgrade or CONNECT request") == 2


async def test_a_client_that_sends_no_request_is_closed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`timeouts.first_message_seconds` (2 s in the test configuration) bounds the wait for a request."""
    caplog.set_level("INFO")
    async with metrics_engine(tmp_path) as engine:
        reader, writer = await asyncio.open_connection("127.0.0.1", metrics_port(engine))
        writer.write(b"GET /metrics HTTP/1.1\r\n")  # and never the rest of the head
        started = asyncio.get_running_loop().time()
        assert await read_until_closed(reader, timeout=5) == b""
        assert 1.5 <= asyncio.get_running_loop().time() - started <= 4 * UNIT_S
        await close_writer(writer)
    assert log_count(caplog, LOGGER, "no complete request within 2s") == 1


async def test_idle_keep_alive_connections_are_closed(tmp_path: Path) -> None:
    timeouts = "timeouts:\n  first_message_seconds: 2\n  shutdown_grace_seconds: 1\n  http_idle_seconds: 0.3\n"
    async with running_engine(tmp_path, metrics_yaml() + timeouts) as engine:
        reader, writer = await asyncio.open_connection("127.0.0.1", metrics_port(engine))
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        started = asyncio.get_running_loop().time()
        answer = await read_until_closed(reader, timeout=3)
        assert asyncio.get_running_loop().time() - started < 1.5 * UNIT_S  # not the 2 s request timeout
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert answer.count(b"HTTP/1.1") == 1
        await close_writer(writer)


async def test_connections_over_the_limit_are_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    async with metrics_engine(tmp_path) as engine:
        held = [await asyncio.open_connection("127.0.0.1", metrics_port(engine)) for _ in range(MAX_CONNECTIONS)]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", metrics_port(engine))
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert await read_until_closed(reader) == b""
            await close_writer(writer)
            # a held connection is still served
            assert (await http_get(*held[0], "x", "/metrics"))[0] == 200
        finally:
            for _, held_writer in held:
                await close_writer(held_writer)
        assert engine.engine is not None and engine.engine.metrics is not None
        for _ in range(100):  # capacity comes back as the server sees the closes
            if not engine.engine.metrics.connections:
                break
            await asyncio.sleep(0.02)
        await scrape(engine)
    assert log_count(caplog, LOGGER, f"{MAX_CONNECTIONS} connections are open") == 1


# ---- life cycle ----


async def test_engine_shutdown_closes_the_metrics_listener(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    async with metrics_engine(tmp_path) as engine:
        assert engine.engine is not None
        port = metrics_port(engine)
        assert log_count(caplog, LOGGER, f"metrics listening on http://127.0.0.1:{port}/metrics") == 1
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # an idle keep-alive connection
        assert (await http_get(reader, writer, "x", "/metrics"))[0] == 200
        await asyncio.wait_for(engine.engine.stop(), 5 * UNIT_S)
        assert await read_until_closed(reader) == b""
        await close_writer(writer)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)


async def test_a_metrics_address_in_use_fails_the_start_and_names_the_key(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config_file = tmp_path / "engine.yaml"
        config_file.write_text(engine_yaml(metrics_yaml(addr=f"127.0.0.1:{taken.getsockname()[1]}")))
        state = EngineState.open(tmp_path / "state", engine_host="localhost", jwt_secret=None)
        engine = Engine(load_config(str(config_file), {}), state)
        with pytest.raises(ConfigError, match=r"metrics\.prometheus\.listen_addr: cannot listen on"):
            await engine.start()
        # nothing is left listening: the agent port was released
        assert engine._listener is not None and engine._listener.sock.fileno() == -1
        await engine.stop()


def test_engine_process_serves_metrics_under_uvloop(tmp_path: Path) -> None:
    handle = start_engine_process(tmp_path, metrics_yaml(TOKEN))
    try:
        match = re.search(r"metrics listening on http://127\.0\.0\.1:(\d+)/metrics \(bearer token required\)",
                          handle.logs())
        assert match, handle.logs()
        response = httpx.get(f"http://127.0.0.1:{match.group(1)}/metrics",
                             headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200
        assert "portway_engine_info" in response.text
        assert httpx.get(f"http://127.0.0.1:{match.group(1)}/metrics").status_code == 401
    finally:
        stop_engine_process(handle)
    assert TOKEN not in handle.logs()
