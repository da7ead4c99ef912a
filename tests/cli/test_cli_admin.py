"""`portway admin ...` against a `portway engine` subprocess: round trips through the admin API with an
operator token from `portway engine token --operator`, refusals for other tokens, and usage errors
(exit 2, one `error:` line)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jwt
import pytest
import yaml

from portway.engine.auth import mint_token
from tests.cli.helpers import agent_args, assert_clean_stderr, error_lines, run_cli
from tests.conftest import EngineProcess


def admin(handle: EngineProcess, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    got = run_cli("admin", *args, *agent_args(handle, token))
    assert_clean_stderr(got.stderr)
    return got


def operator(handle: EngineProcess, tmp_path: Path) -> str:
    """The token `portway engine token --operator` prints for this engine."""
    got = run_cli("engine", "token", "--operator", "--ttl", "600", "--config", str(tmp_path / "engine.yaml"),
                  "--state-dir", str(tmp_path / "st"))
    assert got.returncode == 0, got.stderr
    token = got.stdout.strip()
    assert jwt.decode(token, options={"verify_signature": False})["role"] == "operator"
    return token


@pytest.mark.store  # on SQLite and PostgreSQL (the refusals and usage errors below never reach the store)
def test_admin_round_trips(engine_process: EngineProcess, tmp_path: Path) -> None:
    token = operator(engine_process, tmp_path)
    assert admin(engine_process, token, "workspace", "create", "acme").returncode == 0
    listed = admin(engine_process, token, "workspace", "list")
    assert listed.returncode == 0 and listed.stdout.splitlines()[0].split() == ["ID", "NAME", "CREATED_AT"]
    assert {row["name"] for row in json.loads(admin(engine_process, token, "workspace", "list", "-o", "json")
                                              .stdout)} == {"default", "acme"}
    made = admin(engine_process, token, "project", "create", "web", "--workspace", "acme", "-o", "json")
    assert made.returncode == 0 and json.loads(made.stdout)["name"] == "web"
    projects = json.loads(admin(engine_process, token, "project", "list", "--workspace", "acme", "-o", "json").stdout)
    assert [p["name"] for p in projects] == ["web"]

    pat = admin(engine_process, token, "pat", "create", "ci", "--project", "web", "-p", "tunnels.resources.read-only",
                "--expires-in", "2d")
    assert pat.returncode == 0 and "not shown again" in pat.stderr
    claims = jwt.decode(pat.stdout.strip(), options={"verify_signature": False})
    assert claims["type"] == "pat" and claims["permissions"] == ["tunnels.resources.read-only"]
    assert claims["exp"] - claims["iat"] == 2 * 86400
    pats = json.loads(admin(engine_process, token, "pat", "list", "--project", "web", "-o", "json").stdout)
    assert len(pats) == 1 and pat.stdout.strip() not in json.dumps(pats)
    table = admin(engine_process, token, "pat", "list")
    assert "ci" in table.stdout and table.stdout.startswith("ID")

    app = admin(engine_process, token, "app", "create", "backend", "--project", "web",
                "--resources-json", '{"tunnels": {"projects": ["web"]}}')
    assert app.returncode == 0
    values = dict(line.split("=", 1) for line in app.stdout.splitlines())
    assert values["RSTREAM_CLIENT_ID"].startswith("app_") and len(values["RSTREAM_CLIENT_SECRET"]) > 400
    apps = json.loads(admin(engine_process, token, "app", "list", "-o", "json").stdout)
    assert [a["client_id"] for a in apps] == [values["RSTREAM_CLIENT_ID"]]
    assert apps[0]["resources"] == {"tunnels": {"projects": ["web"]}}

    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text("allow_public: false\nallowed_protocols: [http]\n")
    set_ = admin(engine_process, token, "policy", "set", "--project", "web", "--policy-file", str(policy_file),
                 "--if-version", "0")
    assert set_.returncode == 0 and yaml.safe_load(set_.stdout)["version"] == 1
    got = json.loads(admin(engine_process, token, "policy", "get", "--project", "web", "-o", "json").stdout)
    assert got["version"] == 1 and got["policy"]["allowed_protocols"] == ["http"]
    stale = admin(engine_process, token, "policy", "set", "--project", "web", "--policy-json", "{}",
                  "--if-version", "0")
    assert stale.returncode == 1 and len(error_lines(stale.stderr)) == 1 and "409" in stale.stderr

    busy = admin(engine_process, token, "project", "delete", "web")
    assert busy.returncode == 1 and "revoke them first" in busy.stderr
    assert admin(engine_process, token, "pat", "revoke", pats[0]["id"], "--reason", "rotation").returncode == 0
    assert admin(engine_process, token, "app", "revoke", values["RSTREAM_CLIENT_ID"]).returncode == 0
    log = json.loads(admin(engine_process, token, "revocations", "-o", "json").stdout)
    assert [(r["kind"], r["reason"]) for r in log] == [("pat", "rotation"), ("app", None)]
    assert admin(engine_process, token, "project", "delete", "web").stdout.strip() == "deleted project web"
    assert admin(engine_process, token, "workspace", "delete", "acme").returncode == 0


def test_admin_refuses_other_tokens(engine_process: EngineProcess) -> None:
    plain = mint_token(engine_process.secret, subject="someone", ttl_s=600)
    refused = admin(engine_process, plain, "workspace", "list")
    assert refused.returncode == 1 and len(error_lines(refused.stderr)) == 1
    assert "403" in refused.stderr and "operator" in refused.stderr


@pytest.mark.parametrize(("args", "fragment"), [
    (("workspace", "list", "-o", "xml"), "xml"),
    (("workspace", "create"), "NAME"),
    (("pat", "create", "ci", "--expires-in", "soon"), "invalid duration"),
    (("pat", "create", "ci", "--resources-json", "{"), "not valid JSON"),
    (("app", "create", "x", "--resources-json", "{}", "--resources-file", "f"), "not both"),
    (("policy", "set", "--policy-json", "[1]"), "JSON/YAML object"),
    (("policy", "set", "--if-version", "-1", "--policy-json", "{}"), "-1"),
    (("nothing",), "nothing"),
])
def test_usage_errors(args: tuple[str, ...], fragment: str) -> None:
    got = run_cli("admin", *args, "--engine", "127.0.0.1:1", "--token", "t") if args != ("nothing",) \
        else run_cli("admin", *args)
    assert got.returncode == 2, got.stderr
    assert len(error_lines(got.stderr)) == 1 and fragment in got.stderr, got.stderr
