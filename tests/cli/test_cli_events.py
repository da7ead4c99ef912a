"""`portway events`: the real entry point following a real engine's signaling stream."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from portway.agent import Client, TLSOptions
from tests.cli.helpers import agent_args, cli_process, error_lines, run_cli
from tests.conftest import EngineProcess


def sdk(handle: EngineProcess) -> Client:
    return Client(handle.address, handle.token(), tls=TLSOptions(ca_file=str(handle.ca_file)))


@pytest.mark.parametrize("transport", ["sse", "websocket"])
async def test_events_json_and_text(engine_process: EngineProcess, tmp_path: Path, transport: str) -> None:
    args = agent_args(engine_process)
    async with cli_process(tmp_path, "events", "--transport", transport, "-o", "json", "--events",
                           "tunnel.created,tunnel.deleted", *args) as as_json, \
            cli_process(tmp_path, "events", "--transport", transport, "--tunnel-name", "web", *args) as as_text:
        first = json.loads(await as_json.readline())
        assert first["type"] == "state.initial"
        await as_text.wait_for_line(r"state\.initial clients=0 tunnels=0")
        control = await sdk(engine_process).connect()
        try:
            other = await control.create_tunnel(name="other", publish=False)
            web = await control.create_tunnel(name="web", protocol="http")
            created = [json.loads(await as_json.readline()) for _ in range(2)]
            assert [(e["type"], e["object"]["id"]) for e in created] == [
                ("tunnel.created", other.id), ("tunnel.created", web.id)]
            line = await as_text.wait_for_line(r"tunnel\.created (\w+) web http (\S+)")
            assert line.group(1) == web.id and line.group(2) == web.forwarding_address
        finally:
            await control.close()
        deleted = {json.loads(await as_json.readline())["object"]["id"] for _ in range(2)}
        assert deleted == {other.id, web.id}
        assert await as_json.terminate() == 0


def test_usage_and_auth_errors(engine_process: EngineProcess) -> None:
    bad = run_cli("events", "--events", "tunnel.exploded", *agent_args(engine_process))
    assert bad.returncode == 2 and error_lines(bad.stderr) == [
        "error: unknown event type 'tunnel.exploded' (hint: choose from client.created, client.updated, "
        "client.deleted, tunnel.created, tunnel.updated, tunnel.deleted)"]
    refused = run_cli("events", *agent_args(engine_process, token="nope"))
    assert refused.returncode == 1 and "401" in refused.stderr and len(error_lines(refused.stderr)) == 1
    refused_ws = run_cli("events", "--transport", "websocket", *agent_args(engine_process, token="nope"))
    assert refused_ws.returncode == 1 and "401" in refused_ws.stderr, refused_ws.stderr
