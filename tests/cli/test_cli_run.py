"""`portway run --apply`: a real `portway engine` subprocess, real `portway run` subprocesses and local services
on loopback. The labels are checked in the engine's answer (the effective properties its registry holds)."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.cli.helpers import (
    WAIT_S,
    CliProcess,
    agent_args,
    assert_clean_stderr,
    cli_process,
    error_lines,
    run_cli,
)
from tests.conftest import UNIT_S, EchoServer, EngineProcess, http_get

MANAGED = {"rstream.managed-by": "run", "rstream.source": "apply"}


def write(path: Path, text: str) -> None:
    """Replace the file as editors do (new inode), so every version has a new identity for the watcher."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


async def next_event(cli: CliProcess, status: str, tunnel: str | None = None) -> dict[str, Any]:
    """The next JSON event with this status (and tunnel), skipping others; bounded by WAIT_S."""
    pattern = rf'"status": "{status}"' + (rf'.*"tunnel": "{re.escape(tunnel)}"' if tunnel else "")
    match = await cli.wait_for_line(pattern)
    event: dict[str, Any] = json.loads(match.string)
    return event


async def get_via_tunnel(engine: EngineProcess, forwarding: str) -> bytes:
    url = re.fullmatch(r"https://([a-z0-9.-]+):(\d+)", forwarding)
    assert url is not None, forwarding
    reader, writer = await asyncio.wait_for(engine.open_visitor(url.group(1)), WAIT_S)
    try:
        status, body = await http_get(reader, writer, url.group(1), "/hello")
    finally:
        writer.close()
    assert status == 200
    return body


async def echo_via_tcp(forwarding: str, payload: bytes) -> bytes:
    address = re.fullmatch(r"tcp://127\.0\.0\.1:(\d+)", forwarding)
    assert address is not None, forwarding
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", int(address.group(1))), WAIT_S)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(payload)), WAIT_S)
    finally:
        writer.close()


async def dial_private(engine: EngineProcess, name: str, payload: bytes) -> bytes:
    stream = await asyncio.wait_for(engine.client().dial(name, zero_rtt=False), WAIT_S)
    try:
        stream.write(payload)
        await stream.drain()
        received = b""
        while len(received) < len(payload):
            data = await asyncio.wait_for(stream.read(), WAIT_S)
            assert data, "stream ended early"
            received += data
        return received
    finally:
        await stream.close()


async def test_apply_http_tcp_and_private_with_labels(engine_process: EngineProcess, tmp_path: Path) -> None:
    spec = tmp_path / "tunnels.yaml"
    async with EchoServer(http=True) as web, EchoServer() as raw:
        spec.write_text(
            "version: 1\ntunnels:\n"
            f"  - name: web\n    target: {web.port}\n    labels: {{team: blue}}\n"
            f"  - name: db\n    target: 127.0.0.1:{raw.port}\n    protocol: tcp\n"
            f"  - name: priv-{tmp_path.name[-8:]}\n    target: {raw.port}\n    publish: false\n")
        private = f"priv-{tmp_path.name[-8:]}"
        async with cli_process(tmp_path, "run", "--apply", str(spec), *agent_args(engine_process),
                               "-o", "json") as cli:
            online = {}
            for _ in range(3):
                event = await next_event(cli, "online")
                online[event["tunnel"]] = event
            assert set(online) == {"web", "db", private}
            assert online["web"]["labels"] == {"team": "blue", **MANAGED}
            assert online["db"]["labels"] == MANAGED and online[private]["labels"] == MANAGED
            assert online[private]["forwarding"] == f"rstrm://{private} (unpublished)"
            assert (await get_via_tunnel(engine_process, online["web"]["forwarding"])).startswith(b"GET /hello")
            assert await echo_via_tcp(online["db"]["forwarding"], b"tcp bytes\n") == b"tcp bytes\n"
            assert await dial_private(engine_process, private, b"private bytes") == b"private bytes"
            assert await cli.terminate() == 0
            assert_clean_stderr(cli.stderr())
    logs = engine_process.logs()
    for event in online.values():  # all three on one control channel
        assert f"tunnel {event['tunnel_id']} open" in logs
    assert logs.count("control channel open") == 1


async def test_apply_text_output_one_line_per_tunnel(engine_process: EngineProcess, tmp_path: Path) -> None:
    spec = tmp_path / "tunnels.yaml"
    async with EchoServer(http=True) as web:
        spec.write_text(f"tunnels:\n  - name: a\n    target: {web.port}\n  - name: b\n    target: {web.port}\n")
        async with cli_process(tmp_path, "run", "--apply", str(spec), *agent_args(engine_process)) as cli:
            lines = [(await cli.wait_for_line(r"^[ab]: https://\S+ -> 127\.0\.0\.1:\d+$")).string for _ in range(2)]
            assert sorted(line[0] for line in lines) == ["a", "b"]
            assert await cli.terminate() == 0
            assert_clean_stderr(cli.stderr())


async def test_watch_adds_removes_replaces_and_survives_a_bad_edit(engine_process: EngineProcess,
                                                                   tmp_path: Path) -> None:
    spec = tmp_path / "tunnels.yaml"
    async with EchoServer(http=True) as web, EchoServer() as raw:
        write(spec, f"tunnels:\n  - name: web\n    target: {web.port}\n")
        async with cli_process(tmp_path, "run", "--apply", str(spec), "--watch", *agent_args(engine_process),
                               "-o", "json") as cli:
            first = await next_event(cli, "online", "web")

            write(spec, f"tunnels:\n  - name: web\n    target: {web.port}\n"
                        f"  - name: db\n    target: {raw.port}\n    protocol: tcp\n")
            added = await next_event(cli, "online", "db")
            assert await echo_via_tcp(added["forwarding"], b"added\n") == b"added\n"

            write(spec, f"tunnels:\n  - name: web\n    target: {web.port}\n    labels: {{v: '2'}}\n"
                        f"  - name: db\n    target: {raw.port}\n    protocol: tcp\n")
            closed = await next_event(cli, "closed", "web")
            assert closed["reason"] == "changed"
            replaced = await next_event(cli, "online", "web")
            assert replaced["tunnel_id"] != first["tunnel_id"]
            assert replaced["labels"] == {"v": "2", **MANAGED}
            assert replaced["forwarding"] == first["forwarding"]  # the same public address
            assert (await get_via_tunnel(engine_process, replaced["forwarding"])).startswith(b"GET /hello")

            write(spec, "tunnels:\n  - name: web\n    target: not-a-port\n")
            deadline = asyncio.get_running_loop().time() + WAIT_S
            while "not-a-port" not in cli.stderr():
                assert asyncio.get_running_loop().time() < deadline, cli.stderr()
                await asyncio.sleep(0.05)
            errors = error_lines(cli.stderr())
            assert len(errors) == 1 and "tunnel 'web': key 'target'" in errors[0], cli.stderr()
            assert str(spec) in errors[0]
            assert await echo_via_tcp(added["forwarding"], b"still\n") == b"still\n"  # running set kept

            write(spec, f"tunnels:\n  - name: db\n    target: {raw.port}\n    protocol: tcp\n")
            removed = await next_event(cli, "closed", "web")
            assert removed["reason"] == "removed"
            assert await cli.terminate() == 0
        logs = engine_process.logs()
        assert f"tunnel {first['tunnel_id']} closed by agent" in logs
        assert f"tunnel {replaced['tunnel_id']} closed by agent" in logs
        assert logs.count("control channel open") == 1


async def test_reconnects_after_an_engine_restart(tmp_path: Path) -> None:
    from tests.conftest import start_engine_process, stop_engine_process
    spec = tmp_path / "tunnels.yaml"
    handle = start_engine_process(tmp_path)
    try:
        async with EchoServer(http=True) as web:
            spec.write_text(f"tunnels:\n  - name: web\n    target: {web.port}\n")
            async with cli_process(tmp_path, "run", "--apply", str(spec), *agent_args(handle),
                                   "-o", "json") as cli:
                first = await next_event(cli, "online", "web")
                port = handle.port
                stop_engine_process(handle)
                assert (await next_event(cli, "offline", "web"))["reason"] == "connection lost"
                await next_event(cli, "reconnecting")
                handle = start_engine_process(
                    tmp_path, env={"RSTREAM_ENGINE_TLS__LISTEN_ADDR": f"127.0.0.1:{port}"})
                again = await next_event(cli, "online", "web")
                assert again["forwarding"] == first["forwarding"]
                assert await cli.terminate() == 0
    finally:
        stop_engine_process(handle)


@pytest.mark.parametrize(("body", "fragment"), [
    ("tunnels:\n  - name: a\n    target: 80\n    protocl: http\n", "tunnel 'a': key 'protocl': unknown key"),
    ("tunnels:\n  - name: a\n    target: 80\n    protocol: tcp\n    host: x.t.localhost\n",
     "tunnel 'a': tcp tunnels do not accept"),
    ("tunnels:\n  - name: a\n    target: 80\n  - name: a\n    target: 81\n", "tunnel name 'a' is used twice"),
    ("tunnels: [\n", "not valid YAML"),
])
def test_invalid_file_exits_2_with_one_line(tmp_path: Path, body: str, fragment: str) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(body)
    result = run_cli("run", "--apply", str(spec), "--engine", "127.0.0.1:9", "--token", "unused")
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {spec}: ") and fragment in lines[0], result.stderr


@pytest.mark.parametrize("args", [["run"], ["run", "--apply"], ["run", "--apply", "x.yaml", "-o", "yaml"],
                                  ["run", "--apply", "/nonexistent/x.yaml"]])
def test_usage_errors_exit_2_with_one_line(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr


async def test_refused_tunnel_without_watch_exits_1(engine_process: EngineProcess, tmp_path: Path) -> None:
    spec = tmp_path / "tunnels.yaml"
    spec.write_text("tunnels:\n  - name: a\n    target: 80\n    protocol: tcp\n    port: 1\n")  # outside tcp range
    result = await asyncio.to_thread(run_cli, "run", "--apply", str(spec), *agent_args(engine_process),
                                     timeout=WAIT_S + 10 * UNIT_S)
    assert result.returncode == 1, result
    assert len(error_lines(result.stderr)) >= 1 and "engine error" in result.stderr
