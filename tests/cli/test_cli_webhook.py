"""`portway webhook ...`: the real entry point against a real engine process and a real receiver; CLI runs
go to a thread so the test's loop keeps serving the receiver and the SDK's control channel."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess

import pytest

from portway.agent import Client, TLSOptions
from tests.cli.helpers import agent_args, error_lines, run_cli
from tests.conftest import EngineProcess
from tests.integration.webhook_helpers import Receiver


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_cli, *args)


@pytest.mark.store  # on SQLite and PostgreSQL (the usage errors below never reach an engine)
async def test_create_list_deliveries_redeliver_rotate_delete(engine_process: EngineProcess) -> None:
    args = agent_args(engine_process)
    async with Receiver() as receiver:
        made = await cli("webhook", "create", "--url", receiver.url, "--event", "tunnel.created",
                         "--event", "client.created,tunnel.created", "-o", "json", *args)
        assert made.returncode == 0, made.stderr
        hook = json.loads(made.stdout)
        secret = hook["secret"]
        assert hook["events"] == ["client.created", "tunnel.created"] and secret.startswith("whsec_")

        listed = await cli("webhook", "list", *args)
        assert listed.returncode == 0, listed.stderr
        header, row = listed.stdout.splitlines()
        assert header.split() == ["ID", "URL", "EVENTS", "ENABLED", "SECRET_HINT", "SECRETS_ACTIVE"]
        assert row.split() == [hook["id"], receiver.url, "client.created,tunnel.created", "yes",
                               secret[:10] + "…", "1"]
        assert secret not in listed.stdout

        control = await Client(engine_process.address, engine_process.token(),
                               tls=TLSOptions(ca_file=str(engine_process.ca_file))).connect()
        try:
            tunnel = await control.create_tunnel(protocol="http")
            received = await receiver.wait_for(lambda got: len(got) >= 2)
        finally:
            await control.close()
        assert sorted(r.verified(secret).type for r in received) == ["client.created", "tunnel.created"]

        table = await cli("webhook", "deliveries", hook["id"], *args)
        assert table.returncode == 0, table.stderr
        assert table.stdout.splitlines()[0].split()[:4] == ["ID", "EVENT_TYPE", "STATUS", "ATTEMPTS"]
        assert re.search(r"^dlv_\S+\s+tunnel\.created\s+delivered\s+1\s+200\s", table.stdout, re.M), table.stdout
        listing = json.loads((await cli("webhook", "deliveries", hook["id"], "-o", "json", *args)).stdout)
        created = next(d for d in listing if d["event_type"] == "tunnel.created")
        assert created["attempts"][0]["status_code"] == 200

        again = await cli("webhook", "redeliver", hook["id"], created["id"], *args)
        assert again.returncode == 0 and again.stdout.startswith("Redelivering as dlv_"), again.stderr
        third = (await receiver.wait_for(lambda got: len(got) >= 3))[2]
        event = third.verified(secret)
        assert event.type == "tunnel.created" and event.object["id"] == tunnel.id

        rotated = await cli("webhook", "rotate", hook["id"], *args)
        assert rotated.returncode == 0, rotated.stderr
        match = re.search(r"^Secret \(shown once, keep it safe\): (whsec_\S+)$", rotated.stdout, re.M)
        assert match and match.group(1) != secret
        assert re.search(rf"^{hook['id']}\s.*\s2$", rotated.stdout, re.M)

        gone = await cli("webhook", "delete", hook["id"], *args)
        assert gone.returncode == 0 and gone.stdout.strip() == f"Deleted {hook['id']}"
        assert (await cli("webhook", "list", "-o", "json", *args)).stdout.strip() == "[]"
        missing = await cli("webhook", "delete", hook["id"], *args)
        assert missing.returncode == 1 and len(error_lines(missing.stderr)) == 1 and "404" in missing.stderr


@pytest.mark.parametrize(("args", "fragment"), [
    (["create", "--url", "ftp://example.com/"], "invalid --url"),
    (["create", "--url", "https://example.com/", "--event", "stream.summary"], "unknown event type"),
    (["create", "--url", "https://example.com/", "--secret", "hunter2"], "invalid --secret"),
    (["rotate", "wh_x", "--secret", "whsec_short"], "invalid --secret"),
])
def test_usage_errors_exit_2_with_one_line(args: list[str], fragment: str) -> None:
    result = run_cli("webhook", *args, "--engine", "127.0.0.1:9", "--token", "unused")
    assert result.returncode == 2, result
    assert result.stdout == "" and "hunter2" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr


@pytest.mark.parametrize("args", [["create"], ["rotate"], ["rotate", "wh_x", "--grace", "-1"],
                                  ["deliveries", "wh_x", "--limit", "0"], ["list", "-o", "xml"],
                                  ["redeliver", "wh_x"]])
def test_click_usage_errors_exit_2(args: list[str]) -> None:
    assert run_cli("webhook", *args).returncode == 2
