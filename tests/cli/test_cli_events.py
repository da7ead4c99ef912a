"""`portway events`: the real entry point following a real engine's signaling stream."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from portway.agent import Client, TLSOptions
from tests.cli.helpers import agent_args, cli_process, error_lines, run_cli
from tests.conftest import EngineProcess
from tests.integration.webhook_helpers import Receiver


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


async def test_forward_to_signs_like_a_webhook(engine_process: EngineProcess, tmp_path: Path) -> None:
    secret = "whsec_" + "A" * 43
    async with Receiver() as receiver, \
            cli_process(tmp_path, "events", "-o", "json", "--include-webhook-headers", "--forward-to", receiver.url,
                        "--webhook", "--webhook-secret", secret, *agent_args(engine_process)) as watcher:
        assert json.loads(await watcher.readline())["type"] == "state.initial"
        control = await sdk(engine_process).connect()
        tunnel = await control.create_tunnel(name="db", publish=False)
        await control.close()
        got = await receiver.wait_for(lambda r: len(r) >= 4)
        kinds = [r.headers["rstream-event-type"] for r in got]
        assert kinds == ["client.created", "tunnel.created", "tunnel.deleted", "client.deleted"]  # catalog only
        for item in got:
            event = item.verified(secret)  # the official SDK's verifier accepts the signature
            assert item.headers["rstream-webhook-id"] == "local" and item.headers["rstream-delivery-id"]
            assert event.id == item.headers["rstream-event-id"]
        assert json.loads(got[1].body)["object"]["id"] == tunnel.id
        printed = [json.loads(await watcher.readline()) for _ in range(5)]  # client.updated is not forwarded
        assert [p.get("forwarded") for p in printed] == ["200", "200", None, "200", "200"]
        assert printed[0]["headers"]["rstream-signature"].startswith("t=")


def test_forward_usage_errors(engine_process: EngineProcess) -> None:
    args = agent_args(engine_process)
    for extra, fragment in [(["--webhook"], "need --forward-to"),
                            (["--forward-to", "ftp://x/"], "http"),
                            (["--forward-to", "http://127.0.0.1:9/", "--webhook-secret", "short"], "whsec_")]:
        got = run_cli("events", *extra, *args)
        assert got.returncode == 2 and len(error_lines(got.stderr)) == 1 and fragment in got.stderr, got.stderr
        assert "short" not in got.stderr
