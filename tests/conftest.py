"""Shared fixtures: a real engine (in-process or as a subprocess) on an ephemeral loopback port,
with its own state directory, CA and secret; helpers to reach published hostnames on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from portway.agent import Client, TLSOptions, Tunnel
from portway.engine import Engine
from portway.engine.auth import mint_token
from portway.engine.configfile import load_config
from portway.engine.state import EngineState
from portway.wire._pb import rstream_pb2 as pb
from portway.wire.framing import decode_message, encode_frame
from tests import pgdb

# One scalable time unit for waits in tests (raise PORTWAY_TEST_TIME_SCALE on slow machines).
UNIT_S = float(os.environ.get("PORTWAY_TEST_TIME_SCALE", "1"))


def engine_yaml(extra: str = "", store_options: str = "") -> str:
    """A CE-style configuration on an ephemeral loopback port; during the postgresql run of a `store` test, its
    control-plane store is the test's PostgreSQL database (so `extra` must not have a `store` section: give
    its other keys as `store_options`, indented YAML lines)."""
    database = pgdb.active_url()
    store = (f"  url: {database}\n" if database else "") + store_options
    return (
        "engine:\n  host: localhost\n"
        "tls:\n  listen_addr: 127.0.0.1:0\n"
        "timeouts:\n  stream_request_seconds: 5\n  first_message_seconds: 2\n  shutdown_grace_seconds: 1\n"
        + (f"store:\n{store}" if store else "")
        + extra
    )


# ---- the control-plane store's backends: tests marked `store` run on SQLite and on PostgreSQL ----


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`store` tests run once per backend: `[sqlite]` and `[postgresql]` (skipped without a server, unless
    PORTWAY_TEST_REQUIRE_POSTGRES=1, when `store_backend` fails them). `@pytest.mark.store(only="postgresql")`:
    the postgresql run alone (several engines sharing one database, which SQLite files are not made for)."""
    marker = metafunc.definition.get_closest_marker("store")
    if marker is None:
        return
    postgresql: object = "postgresql"
    if pgdb.POSTGRES_URL is None and not pgdb.REQUIRE_POSTGRES:
        postgresql = pytest.param("postgresql", marks=pytest.mark.skip(reason=pgdb.NO_POSTGRES))
    backends = [postgresql] if marker.kwargs.get("only") == "postgresql" else ["sqlite", postgresql]
    metafunc.parametrize("store_backend", backends, indirect=True)


@pytest.fixture(scope="module")
def store_backend(request: pytest.FixtureRequest) -> str:
    """The store backend of the running test: "sqlite" unless it is the postgresql run of a `store` test.
    Module-scoped so that module-scoped engines (`module_store_database`) can follow it."""
    backend = str(getattr(request, "param", "sqlite"))
    if backend == "postgresql" and pgdb.POSTGRES_URL is None:
        pytest.fail(pgdb.REQUIRED)
    return backend


@pytest.fixture(scope="module")
def module_store_database(store_backend: str) -> Iterator[str | None]:
    """For a module-scoped engine (its fixture requests this): on postgresql, one database that the module's tests
    share — their `store_database` yields it instead of making their own."""
    if store_backend != "postgresql" or pgdb.active_url() is not None:
        yield pgdb.active_url()
        return
    with pgdb.database():
        yield pgdb.active_url()


@pytest.fixture(autouse=True)
def store_database(request: pytest.FixtureRequest, store_backend: str) -> Iterator[str | None]:
    """On postgresql: a fresh database (migrated; empty for `@pytest.mark.store(empty=True)`) that every engine
    the test starts uses, dropped afterwards; engines started in one test share it. Yields its URL (None: SQLite).
    A module-scoped database (`module_store_database`) already in use serves the test instead."""
    if store_backend != "postgresql" or pgdb.active_url() is not None:
        yield pgdb.active_url()
        return
    marker = request.node.get_closest_marker("store")
    with pgdb.database(empty=bool(marker is not None and marker.kwargs.get("empty"))):
        yield pgdb.active_url()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if pgdb.POSTGRES_URL is not None:
        pgdb.drop_template()


@dataclass
class EngineHandle:
    port: int
    ca_file: Path
    secret: str
    engine: Engine | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def token(self, ttl_s: int = 600, subject: str = "test") -> str:
        return mint_token(self.secret, subject=subject, ttl_s=ttl_s)

    def client(self, token: str | None = None, **kwargs: object) -> Client:
        return Client(self.address, token or self.token(), tls=TLSOptions(ca_file=str(self.ca_file)), **kwargs)  # type: ignore[arg-type]

    def visitor_tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    async def open_visitor(self, hostname: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TLS connection to the engine as a browser for `hostname` would make it (SNI = hostname)."""
        return await asyncio.open_connection("127.0.0.1", self.port, ssl=self.visitor_tls(), server_hostname=hostname)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[EngineHandle]:
    """An engine running in the test's event loop."""
    async with running_engine(tmp_path) as handle:
        yield handle


@dataclass
class EngineProcess(EngineHandle):
    process: subprocess.Popen[str] | None = None
    stderr_path: Path | None = None

    def logs(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path else ""


def start_engine_process(tmp_path: Path, extra_yaml: str = "", env: dict[str, str] | None = None) -> EngineProcess:
    """`portway engine` as a subprocess; waits for its banner and returns where it listens."""
    config_file = tmp_path / "engine.yaml"
    config_file.write_text(engine_yaml(extra_yaml))
    stderr_path = tmp_path / "engine.stderr"
    with stderr_path.open("w") as stderr_file:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "portway", "engine", "--config", str(config_file),
             "--state-dir", str(tmp_path / "st")],
            stdout=subprocess.PIPE, stderr=stderr_file, text=True,
            env={**os.environ, **(env or {})},
        )
    assert process.stdout is not None
    port = None
    for _ in range(10):
        line = process.stdout.readline()
        if not line:
            break
        match = re.search(r"listening on [^ ]+:(\d+)", line)
        if match:
            port = int(match.group(1))
        if line.startswith("Ready token") or line.startswith("Token auth is disabled"):
            break
    if port is None:
        process.kill()
        process.wait()
        process.stdout.close()
        raise RuntimeError("engine did not start:\n" + stderr_path.read_text())
    state = tmp_path / "st"
    secret = (state / "jwt.secret").read_text().strip() if (state / "jwt.secret").exists() else ""
    return EngineProcess(port, state / "ca.pem", secret, None, process, stderr_path)


def stop_engine_process(handle: EngineProcess) -> None:
    process = handle.process
    if process is None:
        return
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10 * UNIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


@pytest.fixture
def engine_process(tmp_path: Path) -> Iterator[EngineProcess]:
    """`portway engine` in its own process, stopped with SIGTERM after the test."""
    handle = start_engine_process(tmp_path)
    try:
        yield handle
    finally:
        stop_engine_process(handle)


class EchoServer:
    """A local upstream: echoes bytes, or answers HTTP requests when `http=True`."""

    def __init__(self, http: bool = False) -> None:
        self.http = http
        self.server: asyncio.Server | None = None
        self.port = 0
        self.peers: list[str] = []

    async def __aenter__(self) -> EchoServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.peers.append(writer.get_extra_info("peername")[0])
        try:
            if not self.http:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
                return
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length = 0
                for line in lines[1:]:
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                echo = (lines[0] + "\n" + "\n".join(sorted(lines[1:])) + "\n").encode() + body
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(echo), echo))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def http_get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, path: str = "/", *,
                   body: bytes = b"", headers: str = "") -> tuple[int, bytes]:
    """Send one HTTP/1.1 request on an open connection and read the response (Content-Length only)."""
    method = "POST" if body else "GET"
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode()
                 + body)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10 * UNIT_S)
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return status, await asyncio.wait_for(reader.readexactly(length), 10 * UNIT_S)


# ---- helpers for integration tests (raw agent connections, custom engines) ----


@contextlib.asynccontextmanager
async def running_engine(tmp_path: Path, extra_yaml: str = "", store_options: str = "",
                         ) -> AsyncIterator[EngineHandle]:
    """Like the `engine` fixture, with extra YAML appended to the configuration (see `engine_yaml`)."""
    config_file = tmp_path / "engine.yaml"
    config_file.write_text(engine_yaml(extra_yaml, store_options))
    config = load_config(str(config_file), {})
    state = EngineState.open(tmp_path / "state", engine_host="localhost", jwt_secret=None)
    server = Engine(config, state)
    await server.start()
    try:
        yield EngineHandle(server.port, state.ca_path, config.auth.jwt.token_jwt_secret or state.jwt_secret, server)
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def forwarded_tunnel(engine: EngineHandle, upstream_port: int, **fields: object) -> AsyncIterator[Tunnel]:
    """A tunnel created with our SDK (`fields` are its properties) whose streams are forwarded to
    127.0.0.1:`upstream_port`; the control channel is closed afterwards."""
    control = await engine.client().connect()
    forwarding: asyncio.Future[None] | None = None
    try:
        tunnel = await control.create_tunnel(**fields)  # type: ignore[arg-type]
        forwarding = asyncio.ensure_future(tunnel.forward_to("127.0.0.1", upstream_port))
        yield tunnel
    finally:
        if forwarding is not None:
            forwarding.cancel()
        await control.close()


@contextlib.asynccontextmanager
async def forwarded_hostname(engine: EngineHandle, upstream_port: int, **fields: object) -> AsyncIterator[str]:
    """`forwarded_tunnel` of a published http tunnel (by default); yields its hostname."""
    async with forwarded_tunnel(engine, upstream_port, **{"protocol": "http", **fields}) as tunnel:
        assert tunnel.properties.hostname is not None
        yield tunnel.properties.hostname


def agent_tls(handle: EngineHandle) -> ssl.SSLContext:
    """The TLS context an rstream agent uses: engine CA, ALPN rstrm/1."""
    ctx = ssl.create_default_context(cafile=str(handle.ca_file))
    ctx.set_alpn_protocols(["rstrm/1"])
    return ctx


async def open_agent_connection(handle: EngineHandle) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw `rstrm/1` connection to the engine, for crafting frames by hand."""
    return await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", handle.port, ssl=agent_tls(handle), server_hostname="localhost"),
        5 * UNIT_S)


def send_frame(writer: asyncio.StreamWriter, message: pb.Message) -> None:
    writer.write(encode_frame(message))


async def read_frame(reader: asyncio.StreamReader, timeout: float = 5.0) -> pb.Message:
    """One length-prefixed protocol message; IncompleteReadError when the peer closed first."""
    header = await asyncio.wait_for(reader.readexactly(4), timeout * UNIT_S)
    payload = await asyncio.wait_for(reader.readexactly(int.from_bytes(header, "big")), timeout * UNIT_S)
    return decode_message(payload)


async def read_until_closed(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    """Everything the peer sends until it closes (a TLS close without close_notify counts as EOF)."""
    received = bytearray()

    async def drain() -> None:
        while True:
            try:
                data = await reader.read(65536)
            except (ConnectionError, ssl.SSLError):
                return
            if not data:
                return
            received.extend(data)

    await asyncio.wait_for(drain(), timeout * UNIT_S)
    return bytes(received)


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close a stream writer, ignoring a peer that already went away."""
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError, OSError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 2 * UNIT_S)


def log_count(caplog: pytest.LogCaptureFixture, logger: str, fragment: str) -> int:
    """How many records `logger` emitted whose message contains `fragment`."""
    return sum(1 for r in caplog.records if r.name == logger and fragment in r.getMessage())


@pytest.fixture(scope="module")
def shared_engine_process(tmp_path_factory: pytest.TempPathFactory,
                          module_store_database: str | None) -> Iterator[EngineProcess]:
    """One `portway engine` subprocess (uvloop) shared by a module's tests; tunnels must not collide."""
    handle = start_engine_process(tmp_path_factory.mktemp("engine"))
    try:
        yield handle
    finally:
        stop_engine_process(handle)


@pytest.fixture(params=["in-process", "process"])
def any_engine(request: pytest.FixtureRequest) -> EngineHandle:
    """Runs a test twice: on the in-process engine and on the shared `portway engine` subprocess (uvloop)."""
    name = "engine" if request.param == "in-process" else "shared_engine_process"
    handle: EngineHandle = request.getfixturevalue(name)
    return handle
