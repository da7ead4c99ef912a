"""`portway login|logout|tunnel|client|token|doctor`: the real entry point as a subprocess against a real
engine process, with tunnels made by our SDK in the test's loop (CLI runs go to a thread so the loop keeps
answering the engine's heartbeats)."""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import stat
import subprocess
import time
from pathlib import Path

import httpx
import jwt
import pytest
import trustme
import yaml

from portway.agent import Client, TLSOptions
from portway.engine.auth import mint_token
from tests.cli.helpers import PORTWAY, agent_args, cli_env, error_lines, run_cli
from tests.conftest import EngineProcess


def cfg_env(config: Path) -> dict[str, str]:
    return cli_env(PORTWAY_CONFIG=str(config))


async def cli(*args: str, env: dict[str, str] | None = None,
              stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    if stdin is None:
        return await asyncio.to_thread(run_cli, *args, env=env)
    return await asyncio.to_thread(lambda: subprocess.run(
        [*PORTWAY, *args], input=stdin, capture_output=True, text=True, env=env or cli_env(),
        timeout=30, check=False))


def sdk(handle: EngineProcess, token: str | None = None) -> Client:
    return Client(handle.address, token or handle.token(), tls=TLSOptions(ca_file=str(handle.ca_file)))


async def test_tunnel_and_client_lists(engine_process: EngineProcess) -> None:
    control = await sdk(engine_process).connect()
    try:
        web = await control.create_tunnel(protocol="http", labels={"env": "prod"}, name="web")
        ssh = await control.create_tunnel(publish=False, name="ssh", labels={"env": "dev"})
        args = agent_args(engine_process)
        table = await cli("tunnel", "list", *args)
        assert table.returncode == 0, table.stderr
        header, *rows = table.stdout.splitlines()
        assert header.split()[:4] == ["ID", "NAME", "PROTOCOL", "STATUS"]
        assert len(rows) == 2
        address = re.escape(web.forwarding_address)
        assert re.search(rf"^{web.id}\s+web\s+http\s+online\s+{address}\s+env=prod", table.stdout, re.M)
        assert re.search(rf"^{ssh.id}\s+ssh\s+-\s+online\s+-\s+env=dev", table.stdout, re.M)

        listed = json.loads((await cli("tunnel", "list", "--label", "env=prod", "-o", "json", *args)).stdout)
        assert [t["id"] for t in listed] == [web.id]
        assert [t["id"] for t in json.loads((await cli("tunnel", "list", "--no-publish", "-o", "json",
                                                         *args)).stdout)] == [ssh.id]
        assert len(json.loads((await cli("tunnel", "list", "--label", "env", "--limit", "5", "-o", "json",
                                         *args)).stdout)) == 2
        assert json.loads((await cli("tunnel", "list", "--protocol", "tcp", "-o", "json", *args)).stdout) == []
        one = json.loads((await cli("tunnel", "get", ssh.id, *args)).stdout)
        assert one["name"] == "ssh" and one["publish"] is False
        assert yaml.safe_load((await cli("tunnel", "list", "--name", "web", "-o", "yaml", *args)).stdout)[0]["id"] \
            == web.id

        clients = json.loads((await cli("client", "list", "-o", "json", *args)).stdout)
        assert [c["id"] for c in clients] == [control.client_id]
        assert clients[0]["tunnels"] == 2 and clients[0]["agent"]
        table = (await cli("client", "list", *args)).stdout
        assert control.client_id in table and table.startswith("ID")
        assert json.loads((await cli("client", "list", "--agent", "nobody", "-o", "json", *args)).stdout) == []

        missing = await cli("tunnel", "get", "nope", *args)
        assert missing.returncode == 1 and error_lines(missing.stderr) == [
            "error: engine API error 404: no live tunnel has this id"]
        refused = await cli("tunnel", "list", *agent_args(engine_process, token="bad"))
        assert refused.returncode == 1
        assert len(error_lines(refused.stderr)) == 1 and "401" in refused.stderr and "portway login" in refused.stderr
        bad_label = await cli("tunnel", "list", "--label", "=x", *args)
        assert bad_label.returncode == 2 and "invalid label filter" in bad_label.stderr
    finally:
        await control.close()


async def test_login_logout_round_trip(engine_process: EngineProcess, tmp_path: Path) -> None:
    config = tmp_path / "cfg" / "config.yaml"
    env = cfg_env(config)
    token = engine_process.token(subject="alice")
    where = ["--engine", engine_process.address, "--engine-tls-ca-file", str(engine_process.ca_file)]

    refused = await cli("login", "not-a-token", *where, env=env)
    assert refused.returncode == 1 and "401" in refused.stderr
    assert not config.exists()  # nothing stored for a refused token

    done = await cli("login", "--stdin", *where, env=env, stdin=token + "\n")
    assert done.returncode == 0, done.stderr
    assert re.match(rf"Logged in to {engine_process.address} as alice \(context default, token expires ", done.stdout)
    assert token not in done.stdout + done.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    stored = yaml.safe_load(config.read_text())
    assert stored["defaults"]["context"]["name"] == "default"
    assert stored["contexts"][0]["auth"]["token"]["storage"] == {"kind": "inline", "value": token}

    control = await sdk(engine_process).connect()  # the stored context now works for other commands
    try:
        await control.create_tunnel(publish=False, name="db")
        listed = await cli("tunnel", "list", "-o", "json", env=env)
        assert listed.returncode == 0, listed.stderr
        assert [t["name"] for t in json.loads(listed.stdout)] == ["db"]
    finally:
        await control.close()

    as_json = await cli("login", token, "-o", "json", env=env)  # the context's engine and CA are reused
    assert json.loads(as_json.stdout)["subject"] == "alice"

    out = await cli("logout", env=env)
    assert out.returncode == 0 and "no longer holds a token" in out.stdout
    assert "token" not in yaml.safe_load(config.read_text())["contexts"][0].get("auth", {})
    assert (await cli("logout", env=env)).stdout.startswith("Context default holds no token")
    after = await cli("tunnel", "list", env=env)
    assert after.returncode == 1 and "401" in after.stderr

    for args, fragment in [((), "give the token once"), (("a", "--stdin"), "give the token once"),
                           (("--token-file", str(tmp_path / "none")), "cannot read token file")]:
        usage = await cli("login", *args, env=env)
        assert usage.returncode == 2 and len(error_lines(usage.stderr)) == 1 and fragment in usage.stderr


async def test_token_create_derives_a_working_token(engine_process: EngineProcess) -> None:
    parent = mint_token(engine_process.secret, subject="bob", ttl_s=900, extra={"permissions": ["a", "b"]})
    args = agent_args(engine_process, token=parent)
    made = await cli("token", "create", "--expires-in", "120", "-p", "a", *args)
    assert made.returncode == 0, made.stderr
    minted = made.stdout.strip()
    claims = jwt.decode(minted, engine_process.secret, algorithms=["HS256"])
    assert claims["sub"] == "bob" and claims["permissions"] == ["a"] and claims["exp"] - claims["iat"] == 120
    control = await sdk(engine_process, token=minted).connect()
    await control.close()
    as_json = json.loads((await cli("token", "create", "-o", "json", *args)).stdout)
    assert as_json["expires_at"] <= time.time() + 61
    resources = json.dumps({"tunnels": {"scopes": {"tunnels": {"list": True}}}})
    narrowed = (await cli("token", "create", "--resources-json", resources, *args)).stdout.strip()
    assert jwt.decode(narrowed, engine_process.secret, algorithms=["HS256"])["resources"] == json.loads(resources)

    more = await cli("token", "create", "-p", "c", *args)
    assert more.returncode == 1 and "403" in more.stderr and "permissions c" in more.stderr
    for extra, fragment in [(("--resources-json", "{"), "not JSON"), (("--expires-in", "4000"), "4000"),
                            (("--resources-json", "{}", "--resources-file", __file__), "not both")]:
        usage = await cli("token", "create", *extra, *args)
        assert usage.returncode == 2 and fragment in usage.stderr, usage.stderr


async def test_doctor_on_a_good_and_broken_contexts(engine_process: EngineProcess, tmp_path: Path) -> None:
    good = await cli("doctor", "-o", "json", *agent_args(engine_process)[:4],
                     "--engine-tls-ca-file", str(engine_process.ca_file))
    assert good.returncode == 0, good.stdout + good.stderr
    report = json.loads(good.stdout)
    assert report["ok"] is True
    assert [(c["name"], c["status"]) for c in report["checks"]] == [
        ("config", "pass"), ("token", "pass"), ("dns", "pass"), ("tcp", "pass"), ("tls", "pass"),
        ("engine", "pass"), ("api", "pass")]

    text = await cli("doctor", *agent_args(engine_process))
    assert text.returncode == 0 and re.search(r"^PASS\s+engine\s+portway-engine .* accepted agent protocol",
                                               text.stdout, re.M)

    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    untrusted = await cli("doctor", "-o", "json", "--engine", engine_process.address, "--token",
                          engine_process.token(), "--engine-tls-ca-file", str(other_ca))
    assert untrusted.returncode == 1
    statuses = {c["name"]: c for c in json.loads(untrusted.stdout)["checks"]}
    assert statuses["tls"]["status"] == "fail" and "--engine-tls-ca-file" in statuses["tls"]["hint"]
    assert statuses["engine"]["status"] == "skip" and statuses["api"]["status"] == "skip"

    expired = mint_token(engine_process.secret, subject="x", ttl_s=60, now=time.time() - 3600)
    stale = await cli("doctor", "--engine", engine_process.address, "--token", expired,
                      "--engine-tls-ca-file", str(engine_process.ca_file))
    assert stale.returncode == 1
    assert re.search(r"^FAIL\s+token\s+expired", stale.stdout, re.M)
    assert re.search(r"^FAIL\s+engine\s+control channel refused", stale.stdout, re.M)
    assert expired not in stale.stdout + stale.stderr

    closed = await cli("doctor", "-o", "json", "--engine", "127.0.0.1:1", "--token", "x")
    checks = {c["name"]: c["status"] for c in json.loads(closed.stdout)["checks"]}
    assert closed.returncode == 1 and checks["tcp"] == "fail" and checks["tls"] == "skip"

    broken = tmp_path / "broken.yaml"
    broken.write_text("contexts: 3\n")
    bad = await cli("doctor", env=cfg_env(broken))
    assert bad.returncode == 1 and re.search(r"^FAIL\s+config\s+.*broken\.yaml", bad.stdout, re.M)


@pytest.mark.parametrize("args", [("tunnel", "list", "--limit", "0"), ("client", "list", "-o", "xml"),
                                  ("tunnel", "get")])
def test_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    got = run_cli(*args)
    assert got.returncode == 2, got.stderr


@pytest.mark.store  # an application credential made through the admin API: on SQLite and PostgreSQL
async def test_token_create_offline_from_app_credentials(engine_process: EngineProcess) -> None:
    operator = mint_token(engine_process.secret, subject="root", ttl_s=600, extra={"role": "operator"})
    async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{engine_process.port}/api/admin",
                                 verify=ssl.create_default_context(cafile=str(engine_process.ca_file)),
                                 headers={"Authorization": f"Bearer {operator}"}, timeout=10) as admin:
        created = (await admin.post("/apps", json={"name": "backend"})).json()
        client_id, secret = created["credential"]["client_id"], created["secret"]
        project = created["credential"]["project_id"]
        workspace = (await admin.get(f"/projects/{project}")).json()["workspace_id"]
    env = cli_env(RSTREAM_CLIENT_ID=client_id, RSTREAM_CLIENT_SECRET=secret)
    made = await cli("token", "create", "--project", project, "--expires-in", "120", "--engine", engine_process.address,
                     env=env)
    assert made.returncode == 0, made.stderr
    minted = made.stdout.strip()
    assert secret not in made.stdout + made.stderr
    header = jwt.get_unverified_header(minted)
    claims = jwt.decode(minted, options={"verify_signature": False})
    assert header["alg"] == "ES512" and claims["type"] == "app" and claims["clientId"] == client_id
    assert claims["exp"] - claims["iat"] == 120 and claims["metadata"]["engine"] == engine_process.address
    control = await sdk(engine_process, token=minted).connect()  # the engine accepts it (public key)
    try:
        tunnel = await control.create_tunnel(publish=False, name="app-made")
        listed = json.loads((await cli("tunnel", "list", "-o", "json", *agent_args(engine_process, token=minted)))
                            .stdout)
        assert [t["id"] for t in listed] == [tunnel.id] and listed[0]["project_id"] == project
    finally:
        await control.close()
    whole = await cli("token", "create", "--workspace", workspace, "-o", "json", env=env)  # a workspace target
    assert whole.returncode == 0, whole.stderr
    wide = json.loads(whole.stdout)["token"]
    assert jwt.decode(wide, options={"verify_signature": False})["resources"]["tunnels"]["workspaces"] == [workspace]
    assert (await cli("tunnel", "list", *agent_args(engine_process, token=wide))).returncode == 0
    for extra, fragment in [(("--client-id", client_id), "both --client-id and --client-secret"),
                            (("--client-id", client_id, "--client-secret", "zz", "--project", project), "secret"),
                            (("--client-id", client_id, "--client-secret", secret), "needs a target"),
                            (("--client-id", client_id, "--client-secret", secret, "--project", project,
                              "--workspace", workspace), "not both"),
                            (("--project", project), "--project and --workspace go with --client-id"),
                            (("--workspace", workspace), "--project and --workspace go with --client-id")]:
        usage = await cli("token", "create", *extra)
        assert usage.returncode == 2 and len(error_lines(usage.stderr)) == 1, usage.stderr
        assert fragment in usage.stderr and secret not in usage.stderr
