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
    assert json.loads(admin(engine_process, token, "project", "get", "web", "-o", "json").stdout) == projects[0]
    acme = json.loads(admin(engine_process, token, "workspace", "get", "acme", "-o", "json").stdout)
    assert acme["name"] == "acme" and acme["id"] == projects[0]["workspace_id"]

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
    one = admin(engine_process, token, "pat", "get", pats[0]["id"])
    assert one.stdout.splitlines()[0].split()[:2] == ["ID", "NAME"] and pat.stdout.strip() not in one.stdout

    app = admin(engine_process, token, "app", "create", "backend", "--project", "web",
                "--resources-json", '{"tunnels": {"projects": ["web"]}}')
    assert app.returncode == 0
    values = dict(line.split("=", 1) for line in app.stdout.splitlines())
    assert values["RSTREAM_CLIENT_ID"].startswith("app_") and len(values["RSTREAM_CLIENT_SECRET"]) > 400
    apps = json.loads(admin(engine_process, token, "app", "list", "-o", "json").stdout)
    assert [a["client_id"] for a in apps] == [values["RSTREAM_CLIENT_ID"]]
    assert apps[0]["resources"] == {"tunnels": {"projects": ["web"]}}
    assert yaml.safe_load(admin(engine_process, token, "app", "get", values["RSTREAM_CLIENT_ID"], "-o", "yaml")
                          .stdout) == apps[0]

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
    by_path = json.loads(admin(engine_process, token, "policy", "get", "--project", "acme/web", "-o", "json").stdout)
    assert by_path == got  # "workspace/project" names it too
    history = json.loads(admin(engine_process, token, "policy", "history", "--project", "web", "-o", "json").stdout)
    assert [v["version"] for v in history] == [1] and history[0]["policy"]["allow_public"] is False
    assert admin(engine_process, token, "policy", "history", "--project", "web").stdout.split()[:3] == [
        "VERSION", "CREATED_AT", "CREATED_BY"]

    busy = admin(engine_process, token, "project", "delete", "web")
    assert busy.returncode == 1 and "revoke them first" in busy.stderr
    assert admin(engine_process, token, "pat", "revoke", pats[0]["id"], "--reason", "rotation").returncode == 0
    assert admin(engine_process, token, "app", "revoke", values["RSTREAM_CLIENT_ID"]).returncode == 0
    log = json.loads(admin(engine_process, token, "revocations", "-o", "json").stdout)
    assert [(r["kind"], r["reason"]) for r in log] == [("pat", "rotation"), ("app", None)]
    assert admin(engine_process, token, "project", "delete", "web").stdout.strip() == "deleted project web"
    assert admin(engine_process, token, "workspace", "delete", "acme").returncode == 0


def test_user_commands(engine_process: EngineProcess, tmp_path: Path) -> None:
    token = operator(engine_process, tmp_path)
    made = admin(engine_process, token, "user", "create", "alice@example.com", "--role", "operator", "-o", "json")
    assert made.returncode == 0, made.stderr
    alice = json.loads(made.stdout)
    assert alice["role"] == "operator" and alice["disabled_at"] is None
    bob = admin(engine_process, token, "user", "create", "team/bob smith?")  # percent-encoded in the path, / too
    assert bob.returncode == 0 and bob.stdout.splitlines()[0].split() == ["ID", "SUBJECT", "ROLE", "DISABLED_AT",
                                                                          "CREATED_AT"]
    table = admin(engine_process, token, "user", "list")
    assert table.returncode == 0 and "alice@example.com" in table.stdout and "member" in table.stdout
    listed = json.loads(admin(engine_process, token, "user", "list", "-o", "json").stdout)
    assert [u["subject"] for u in listed] == ["alice@example.com", "team/bob smith?"]
    assert json.loads(admin(engine_process, token, "user", "get", alice["id"], "-o", "json").stdout) == alice
    assert yaml.safe_load(admin(engine_process, token, "user", "get", "team/bob smith?", "-o", "yaml").stdout)[
        "role"] == "member"

    promoted = admin(engine_process, token, "user", "set-role", "team/bob smith?", "operator", "-o", "json")
    assert promoted.returncode == 0 and json.loads(promoted.stdout)["role"] == "operator"
    disabled = json.loads(admin(engine_process, token, "user", "disable", "team/bob smith?", "-o", "json").stdout)
    assert disabled["disabled_at"] is not None
    enabled = json.loads(admin(engine_process, token, "user", "enable", "team/bob smith?", "-o", "json").stdout)
    assert enabled["disabled_at"] is None

    # alice is an operator: her PAT drives `portway admin` until she is disabled
    pat = admin(engine_process, token, "pat", "create", "laptop", "--subject", "alice@example.com")
    assert pat.returncode == 0
    alice_token = pat.stdout.strip()
    assert admin(engine_process, alice_token, "user", "list").returncode == 0
    assert admin(engine_process, token, "user", "disable", "alice@example.com").returncode == 0
    refused = admin(engine_process, alice_token, "user", "list")
    assert refused.returncode == 1 and "401" in refused.stderr and "user disabled" in refused.stderr
    assert admin(engine_process, token, "user", "enable", "alice@example.com").returncode == 0
    assert admin(engine_process, alice_token, "user", "list").returncode == 0

    busy = admin(engine_process, token, "user", "delete", "alice@example.com")
    assert busy.returncode == 1 and len(error_lines(busy.stderr)) == 1 and "revoke them first" in busy.stderr
    pat_id = jwt.decode(alice_token, options={"verify_signature": False})["sourceCredentialId"]
    assert admin(engine_process, token, "pat", "revoke", pat_id).returncode == 0
    deleted = admin(engine_process, token, "user", "delete", "alice@example.com")
    assert deleted.returncode == 0 and deleted.stdout.strip() == "deleted user alice@example.com"
    assert admin(engine_process, token, "user", "delete", "team/bob smith?").returncode == 0


def test_user_refusals(engine_process: EngineProcess, tmp_path: Path) -> None:
    """Every engine-side refusal is exit 1 with one `error:` line naming the status; a member token gets 403."""
    token = operator(engine_process, tmp_path)
    assert admin(engine_process, token, "user", "create", "bob").returncode == 0
    member = mint_token(engine_process.secret, subject="someone", ttl_s=600)
    for args, status in [
        (("user", "create", "bob"), "409"),
        (("user", "create", ""), "400"),
        (("user", "create", "x" * 256), "400"),
        (("user", "create", "tab\there"), "400"),
        (("user", "get", "nobody"), "404"),
        (("user", "set-role", "nobody", "member"), "404"),
        (("user", "disable", "nobody"), "404"),
        (("user", "enable", "nobody"), "404"),
        (("user", "delete", "nobody"), "404"),
        (("user", "list"), None),
    ]:
        if status is not None:
            got = admin(engine_process, token, *args)
            assert got.returncode == 1 and len(error_lines(got.stderr)) == 1 and status in got.stderr, got.stderr
        refused = admin(engine_process, member, *args)
        assert refused.returncode == 1 and "403" in refused.stderr, (args, refused.stderr)


def test_admin_refuses_other_tokens(engine_process: EngineProcess) -> None:
    plain = mint_token(engine_process.secret, subject="someone", ttl_s=600)
    refused = admin(engine_process, plain, "workspace", "list")
    assert refused.returncode == 1 and len(error_lines(refused.stderr)) == 1
    assert "403" in refused.stderr and "operator" in refused.stderr


def test_get_commands_answer_404_for_unknown_refs(engine_process: EngineProcess, tmp_path: Path) -> None:
    token = operator(engine_process, tmp_path)
    for args in (("workspace", "get", "nope"), ("project", "get", "nope"), ("pat", "get", "pat_nope"),
                 ("app", "get", "app_nope"), ("policy", "history", "--project", "nope")):
        got = admin(engine_process, token, *args)
        assert got.returncode == 1 and len(error_lines(got.stderr)) == 1 and "404" in got.stderr, (args, got.stderr)


def test_revoke_token(engine_process: EngineProcess, tmp_path: Path) -> None:
    root = operator(engine_process, tmp_path)
    leaked, other = engine_process.token(subject="x"), engine_process.token(subject="y")
    (tmp_path / "leaked.jwt").write_text(leaked + "\n")
    got = admin(engine_process, root, "revoke-token", "--from-file", str(tmp_path / "leaked.jwt"),
                "--reason", "pasted in a ticket")
    jti = jwt.decode(leaked, options={"verify_signature": False})["jti"]
    assert got.returncode == 0 and got.stdout.startswith(f"revoked token {jti} at "), got.stdout
    assert leaked not in got.stdout + got.stderr
    by_jti = admin(engine_process, root, "revoke-token", "--jti",
                   jwt.decode(other, options={"verify_signature": False})["jti"])
    assert by_jti.returncode == 0, by_jti.stderr
    listed = json.loads(admin(engine_process, root, "revocations", "-o", "json").stdout)
    assert [(r["kind"], r["reason"]) for r in listed] == [("token", "pasted in a ticket"), ("token", None)]
    refused = run_cli("tunnel", "list", *agent_args(engine_process, leaked))
    assert refused.returncode == 1 and "401" in refused.stderr


@pytest.mark.parametrize(("args", "fragment"), [
    (("revoke-token",), "either --jti or --from-file"),
    (("revoke-token", "--jti", "a", "--from-file", "/dev/null"), "either --jti or --from-file"),
    (("revoke-token", "--from-file", "/dev/null"), "does not hold a JWT"),
    (("workspace", "list", "-o", "xml"), "xml"),
    (("workspace", "create"), "NAME"),
    (("project", "get"), "REF"),
    (("pat", "create", "ci", "--expires-in", "soon"), "invalid duration"),
    (("pat", "create", "ci", "--resources-json", "{"), "not valid JSON"),
    (("app", "create", "x", "--resources-json", "{}", "--resources-file", "f"), "not both"),
    (("policy", "set", "--policy-json", "[1]"), "JSON/YAML object"),
    (("policy", "set", "--if-version", "-1", "--policy-json", "{}"), "-1"),
    (("user", "create", "bob", "--role", "root"), "root"),
    (("user", "set-role", "bob", "admin"), "admin"),
    (("user", "set-role", "bob"), "operator|member"),
    (("user", "get"), "REF"),
    (("user", "list", "-o", "csv"), "csv"),
    (("nothing",), "nothing"),
])
def test_usage_errors(args: tuple[str, ...], fragment: str) -> None:
    got = run_cli("admin", *args, "--engine", "127.0.0.1:1", "--token", "t") if args != ("nothing",) \
        else run_cli("admin", *args)
    assert got.returncode == 2, got.stderr
    assert len(error_lines(got.stderr)) == 1 and fragment in got.stderr, got.stderr
