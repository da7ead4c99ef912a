"""The real `portway` entry point, run as subprocesses against a `portway engine` subprocess.

Every process started here is killed in a `finally`, and its output is read with bounded waits
(asyncio subprocesses, or `subprocess.run(timeout=...)`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import time
from collections.abc import Sequence
from pathlib import Path

import jwt
import pytest
import rstream

from portway.agent import Stream
from portway.engine.auth import mint_token
from portway.errors import ClosedError
from tests.cli.helpers import (
    WAIT_S,
    agent_args,
    assert_clean_stderr,
    cli_env,
    cli_process,
    error_lines,
    run_cli,
    wait_for_log,
)
from tests.conftest import (
    UNIT_S,
    EchoServer,
    EngineProcess,
    http_get,
    start_engine_process,
    stop_engine_process,
)

# ---------------------------------------------------------------- engine token


def test_engine_token_prints_a_jwt_for_this_engine(engine_process: EngineProcess, tmp_path: Path) -> None:
    config, state = str(tmp_path / "engine.yaml"), str(tmp_path / "st")
    for args in (["engine", "token", "--state-dir", state, "--config", config],
                 ["engine", "--config", config, "--state-dir", state, "token", "--ttl", "120"]):
        result = run_cli(*args)
        assert result.returncode == 0, result.stderr
        token = result.stdout.strip()
        assert "\n" not in token and token.count(".") == 2
        claims = jwt.decode(token, engine_process.secret, algorithms=["HS256"], options={"verify_aud": False})
        assert claims["exp"] > time.time()


async def test_engine_token_is_accepted_by_the_running_engine(engine_process: EngineProcess,
                                                              tmp_path: Path) -> None:
    result = await asyncio.to_thread(run_cli, "engine", "token", "--state-dir", str(tmp_path / "st"),
                                     "--config", str(tmp_path / "engine.yaml"))
    assert result.returncode == 0, result.stderr
    control = await asyncio.wait_for(engine_process.client(token=result.stdout.strip()).connect(), WAIT_S)
    await control.close()


# ---------------------------------------------------------------- forward


async def test_forward_http_prints_json_and_serves_requests(engine_process: EngineProcess,
                                                            tmp_path: Path) -> None:
    async with EchoServer(http=True) as upstream, cli_process(
            tmp_path, "forward", str(upstream.port), *agent_args(engine_process), "-o", "json") as cli:
        match = await cli.wait_for_line(r'"status": "online"')
        event = json.loads(match.string)
        assert event["status"] == "online"
        assert event["forwarded"] == f"127.0.0.1:{upstream.port}"
        assert event["tunnel_id"]
        url = re.fullmatch(r"https://([a-z0-9-]+\.t\.localhost):(\d+)", event["forwarding"])
        assert url is not None, event
        hostname, port = url.group(1), int(url.group(2))
        assert port == engine_process.port
        reader, writer = await asyncio.wait_for(engine_process.open_visitor(hostname), WAIT_S)
        try:
            for path in ("/first", "/second?x=1"):
                status, body = await http_get(reader, writer, hostname, path)
                assert status == 200
                assert body.startswith(f"GET {path} HTTP/1.1".encode())
                assert b"X-Forwarded-Proto: https" in body
        finally:
            writer.close()
        assert await cli.terminate() == 0
        assert_clean_stderr(cli.stderr())
    logs = await wait_for_log(engine_process, f"tunnel {event['tunnel_id']} open")
    assert f"tunnel {event['tunnel_id']} open" in logs


async def test_forward_tcp_relays_bytes(engine_process: EngineProcess, tmp_path: Path) -> None:
    async with EchoServer() as upstream, cli_process(
            tmp_path, "forward", f"127.0.0.1:{upstream.port}", "--tcp", *agent_args(engine_process),
            "-o", "json") as cli:
        match = await cli.wait_for_line(r'"status": "online"')
        event = json.loads(match.string)
        address = re.fullmatch(r"tcp://127\.0\.0\.1:(\d+)", event["forwarding"])
        assert address is not None, event
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", int(address.group(1))), WAIT_S)
        try:
            for chunk in (b"hello tcp\n", os.urandom(100_000)):
                writer.write(chunk)
                await writer.drain()
                assert await asyncio.wait_for(reader.readexactly(len(chunk)), WAIT_S) == chunk
        finally:
            writer.close()
        assert await cli.terminate() == 0
        assert_clean_stderr(cli.stderr())


async def test_forward_edge_policy_flags(engine_process: EngineProcess, tmp_path: Path) -> None:
    """--token-auth and --trusted-ips reach the engine: no token → 401, a token from outside the
    trusted networks → 403, both right → the upstream answers."""
    async with EchoServer(http=True) as upstream, cli_process(
            tmp_path, "forward", str(upstream.port), "--token-auth", "--trusted-ips", "10.0.0.0/8,127.0.0.1/32",
            *agent_args(engine_process), "-o", "json") as cli:
        event = json.loads((await cli.wait_for_line(r'"status": "online"')).string)
        hostname = event["forwarding"].split("//", 1)[1].rsplit(":", 1)[0]
        auth = f"Authorization: Bearer {engine_process.token()}\r\n"
        for source, headers, expected in (("127.0.0.1", "", 401), ("127.0.0.2", auth, 403), ("127.0.0.1", auth, 200)):
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                "127.0.0.1", engine_process.port, ssl=engine_process.visitor_tls(), server_hostname=hostname,
                local_addr=(source, 0)), WAIT_S)
            try:
                status, _ = await http_get(reader, writer, hostname, "/", headers=headers)
                assert status == expected, (source, headers)
            finally:
                writer.close()
        assert upstream.peers == ["127.0.0.1"]
        assert await cli.terminate() == 0


async def test_forward_text_output(engine_process: EngineProcess, tmp_path: Path) -> None:
    async with cli_process(tmp_path, "forward", "9", *agent_args(engine_process)) as cli:
        match = await cli.wait_for_line(r"^Forwarding (https://\S+\.t\.localhost:\d+) -> 127\.0\.0\.1:9$")
        assert match.group(1).endswith(f":{engine_process.port}")
        assert await cli.terminate() == 0


def test_forward_wrong_token_without_retry_fails(engine_process: EngineProcess) -> None:
    wrong = mint_token("some-other-engine-secret-xx", subject="intruder", ttl_s=600)
    result = run_cli("forward", "9", *agent_args(engine_process, token=wrong), "--no-retry")
    assert result.returncode == 1, result
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert "1000" in errors[0]
    assert not any(line.startswith("failed:") for line in result.stderr.splitlines()), result.stderr
    assert result.stdout == ""


# ---------------------------------------------------------------- nc


@pytest.mark.parametrize("half_close", [False, True], ids=["default", "half-close"])
async def test_nc_pipes_stdio_to_a_private_tunnel(engine_process: EngineProcess, tmp_path: Path,
                                                  half_close: bool) -> None:
    control = await asyncio.wait_for(engine_process.client().connect(), WAIT_S)
    accepted: asyncio.Queue[Stream] = asyncio.Queue()
    try:
        tunnel = await asyncio.wait_for(control.create_tunnel(publish=False, name="nc-svc"), WAIT_S)

        async def serve() -> None:
            async for stream in tunnel:
                await accepted.put(stream)

        server = asyncio.ensure_future(serve())
        try:
            extra = ["--half-close"] if half_close else []
            async with cli_process(tmp_path, "nc", "rstrm://nc-svc", *agent_args(engine_process), *extra,
                                   stdin=True) as cli:
                stdin = cli.process.stdin
                assert stdin is not None
                stdin.write(b"hello\n")
                await stdin.drain()
                stream = await asyncio.wait_for(accepted.get(), WAIT_S)
                try:
                    assert await asyncio.wait_for(stream.readexactly(6), WAIT_S) == b"hello\n"
                    stream.write(b"hello\n")
                    await stream.drain()
                    assert await cli.readline() == "hello\n"
                    stdin.close()  # end of input ...
                    if half_close:  # ... is passed on as end-of-stream (a TLS half-close) ...
                        assert await asyncio.wait_for(stream.read(), WAIT_S) == b""
                    else:  # ... or not at all (rstream's nc does the same for rstrm:// targets)
                        with pytest.raises(TimeoutError):
                            await asyncio.wait_for(stream.read(), 0.5)
                    stream.write(b"bye\n")  # the service can still answer; nc ends when the service closes
                    await stream.drain()
                    assert await cli.readline() == "bye\n"
                finally:
                    await stream.close()
                assert await asyncio.wait_for(cli.process.wait(), WAIT_S) == 0, cli.stderr()
                assert_clean_stderr(cli.stderr())
                assert await asyncio.wait_for(cli.process.stdout.read(), WAIT_S) == b""  # type: ignore[union-attr]
        finally:
            server.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server
    finally:
        await control.close()


@pytest.mark.parametrize("half_close", [False, True], ids=["default", "half-close"])
async def test_forward_private_and_nc_end_to_end(engine_process: EngineProcess, tmp_path: Path,
                                                 half_close: bool) -> None:
    """Both ends through the CLI: `forward --no-publish --name` serves, `nc rstrm://NAME` dials."""
    async with EchoServer() as upstream, cli_process(
            tmp_path, "forward", str(upstream.port), "--no-publish", "--name", "cli-svc",
            *agent_args(engine_process)) as forward:
        await forward.wait_for_line(r"^Forwarding rstrm://cli-svc \(unpublished\) -> 127\.0\.0\.1:\d+$")
        extra = ["--half-close"] if half_close else []
        async with cli_process(tmp_path, "nc", "rstrm://cli-svc", *agent_args(engine_process), *extra,
                               stdin=True) as nc:
            stdin = nc.process.stdin
            assert stdin is not None
            for line in (b"hello\n", b"world\n"):
                stdin.write(line)
                await stdin.drain()
                assert await nc.readline() == line.decode()
            stdin.close()
            if half_close:
                # End of input reaches the upstream echo server, which then closes: so does nc.
                assert await asyncio.wait_for(nc.process.wait(), WAIT_S) == 0, nc.stderr()
                assert await forward.terminate() == 0
            else:
                # nc keeps listening; when the serving side goes away its streams end, and nc with them.
                await asyncio.sleep(0.3)
                assert nc.process.returncode is None
                assert await forward.terminate() == 0
                assert await asyncio.wait_for(nc.process.wait(), WAIT_S) == 0, nc.stderr()
        assert_clean_stderr(forward.stderr())
        assert_clean_stderr(nc.stderr())


@pytest.mark.interop
async def test_nc_to_a_service_published_by_the_official_sdk(engine_process: EngineProcess,
                                                             tmp_path: Path) -> None:
    """`printf REQUEST | portway nc rstrm://svc` gets the answer from a service served by the official
    Python SDK, whose forward_to() ends a stream at end-of-stream (so nc must not half-close)."""
    client = rstream.Client(engine=engine_process.address, token=engine_process.token(),
                            tls=rstream.TLSOptions(ca_file=str(engine_process.ca_file)), read_config_file=False)
    try:
        control = await asyncio.wait_for(client.connect(), WAIT_S)
        tunnel = await asyncio.wait_for(control.create_tunnel(publish=False, name="sdk-web"), WAIT_S)
        async with EchoServer(http=True) as upstream:
            forwarding = asyncio.ensure_future(tunnel.forward_to("127.0.0.1", upstream.port))
            try:
                async with cli_process(tmp_path, "nc", "rstrm://sdk-web", *agent_args(engine_process),
                                       stdin=True) as nc:
                    stdin = nc.process.stdin
                    assert stdin is not None
                    stdin.write(b"GET /via-nc HTTP/1.1\r\nHost: sdk-web\r\nContent-Length: 0\r\n\r\n")
                    await stdin.drain()
                    stdin.close()  # all input sent, as with a pipe
                    assert await nc.readline() == "HTTP/1.1 200 OK\r\n"
                    await nc.wait_for_line(r"^GET /via-nc HTTP/1\.1$")
                    # The service ends the stream (closing the tunnel closes its streams): nc exits.
                    await asyncio.wait_for(tunnel.close(), WAIT_S)
                    assert await asyncio.wait_for(nc.process.wait(), WAIT_S) == 0, nc.stderr()
                    assert_clean_stderr(nc.stderr())
            finally:
                forwarding.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(forwarding, WAIT_S)
        await asyncio.wait_for(control.close(), WAIT_S)
    finally:
        await asyncio.wait_for(client.close(), WAIT_S)


def test_nc_unknown_tunnel_fails(engine_process: EngineProcess) -> None:
    result = run_cli("nc", "rstrm://nobody-home", *agent_args(engine_process))
    assert result.returncode == 1, result
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "3000" in errors[0], result.stderr


# ---------------------------------------------------------------- usage errors


@pytest.mark.parametrize(("args", "fragment"), [
    (["forward", "abc:xyz"], "invalid target 'abc:xyz'"),
    (["forward", "80", "--label", "nolabel"], "invalid label 'nolabel'"),
    (["nc", "http://x"], "invalid endpoint 'http://x'"),
])
def test_usage_errors_exit_2_with_one_line(args: Sequence[str], fragment: str) -> None:
    result = run_cli(*args, "--engine", "127.0.0.1:9", "--token", "unused")
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0]


@pytest.mark.parametrize(("yaml_text", "key"), [
    ("engine:\n  host: localhost\n  bogus_key: 1\n", "engine.bogus_key"),
    ("tls:\n  listen_addr: 127.0.0.1:0\nfrobnicate:\n  x: 1\n", "frobnicate"),
])
def test_engine_config_with_unknown_key_exits_2(tmp_path: Path, yaml_text: str, key: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(yaml_text)
    result = run_cli("engine", "--config", str(config), "--state-dir", str(tmp_path / "st"))
    assert result.returncode == 2, result
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and f"'{key}'" in errors[0], result.stderr
    assert "listening" not in result.stdout


# ---------------------------------------------------------------- up


async def test_up_serves_the_demo_page(tmp_path: Path) -> None:
    state = tmp_path / "up-state"
    env = cli_env(RSTREAM_ENGINE_TLS__LISTEN_ADDR="127.0.0.1:0",
                  RSTREAM_ENGINE_TIMEOUTS__SHUTDOWN_GRACE_SECONDS="1")
    async with cli_process(tmp_path, "up", "--state-dir", str(state), env=env) as cli:
        match = await cli.wait_for_line(r"^Forwarding https://([a-z0-9-]+\.t\.localhost):(\d+) -> 127\.0\.0\.1:\d+$")
        hostname, port = match.group(1), int(match.group(2))
        assert f"listening on 127.0.0.1:{port}" in "".join(cli.lines)
        handle = EngineProcess(port, state / "ca.pem", "")
        reader, writer = await asyncio.wait_for(handle.open_visitor(hostname), WAIT_S)
        try:
            status, body = await http_get(reader, writer, hostname, "/")
        finally:
            writer.close()
        assert status == 200
        assert b"Hello from Portway" in body
        assert await cli.terminate() == 0
        assert_clean_stderr(cli.stderr())


# ---------------------------------------------------------------- engine lifecycle


async def test_sigterm_stops_the_engine_cleanly(tmp_path: Path) -> None:
    handle = start_engine_process(tmp_path)
    try:
        control = await asyncio.wait_for(handle.client().connect(), WAIT_S)
        await asyncio.wait_for(control.create_tunnel(protocol="http"), WAIT_S)
        assert handle.process is not None
        started = time.monotonic()
        handle.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(handle.process.wait, 5 * UNIT_S)
        assert code == 0, handle.logs()
        assert time.monotonic() - started < 5 * UNIT_S
        with pytest.raises(ClosedError, match="closed by the engine"):  # the agent saw the engine go
            await asyncio.wait_for(control.wait_closed(), WAIT_S)
        await control.close()
        assert "engine stopped" in handle.logs()
    finally:
        stop_engine_process(handle)
