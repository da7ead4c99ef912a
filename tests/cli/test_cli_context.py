"""`portway context …` and the configuration file: round trips, file safety, precedence (flags > env >
context), rstream config compatibility, and agent commands that connect through a context."""

from __future__ import annotations

import json
import re
import stat
import subprocess
from pathlib import Path

import yaml

from portway.cli.config import load
from tests.cli.helpers import PORTWAY, WAIT_S, cli_env, cli_process, error_lines, run_cli
from tests.conftest import EchoServer, EngineProcess


def cfg_env(config: Path, **extra: str) -> dict[str, str]:
    return cli_env(PORTWAY_CONFIG=str(config), **extra)


def test_context_round_trip_and_file_safety(tmp_path: Path) -> None:
    config = tmp_path / "home" / "config.yaml"
    env = cfg_env(config)
    created = run_cli("context", "create", "home", "--engine", "edge.example.com:443", "--token", "s3cret-token",
                      "--engine-tls-ca-file", str(tmp_path / "ca.pem"), env=env)
    assert created.returncode == 0, created.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600  # it holds a token
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    assert run_cli("ctx", "create", "work", "--engine", "work.example.com:8443", env=env).returncode == 0

    listed = run_cli("context", "list", "-o", "json", env=env)
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["default"], r["engine"], r["token"]) for r in rows] == [
        ("home", True, "edge.example.com:443", "inline"), ("work", False, "work.example.com:8443", "-")]
    assert "s3cret-token" not in listed.stdout  # list and get never print a token
    table = run_cli("context", "list", env=env).stdout
    assert re.search(r"^home\s+\*\s+edge\.example\.com:443", table, re.M)

    assert run_cli("context", "use", "work", env=env).returncode == 0
    got = json.loads(run_cli("context", "get", "-o", "json", env=env).stdout)
    assert got[0]["name"] == "work" and got[0]["default"] is True
    assert run_cli("context", "update", "work", "--engine", "w2.example.com:443", env=env).returncode == 0
    assert load(config).find("work").engine == "w2.example.com:443"  # type: ignore[union-attr]
    assert run_cli("context", "delete", "work", env=env).returncode == 0
    assert [c.name for c in load(config).contexts] == ["home"]
    assert load(config).default_name is None


def test_token_from_stdin_and_file(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    env = cfg_env(config)
    piped = subprocess.run([*PORTWAY, "context", "create", "a", "--engine", "h:1", "--token-stdin"], input="tok-1\n",
                           capture_output=True, text=True, env=env, timeout=WAIT_S, check=False)
    assert piped.returncode == 0, piped.stderr
    (tmp_path / "token").write_text("tok-2\n")
    assert run_cli("context", "create", "b", "--token-file", str(tmp_path / "token"), env=env).returncode == 0
    contexts = load(config)
    assert contexts.find("a").token() == "tok-1"  # type: ignore[union-attr]
    assert contexts.find("b").token() == "tok-2"  # type: ignore[union-attr]
    both = run_cli("context", "create", "c", "--token", "x", "--token-file", "y", env=env)
    assert both.returncode == 2 and error_lines(both.stderr)


def test_usage_errors(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    env = cfg_env(config)
    assert run_cli("context", "create", "a", env=env).returncode == 0
    for args, fragment in ((["context", "create", "a"], "exists"), (["context", "use", "nope"], "no context"),
                           (["context", "delete", "nope"], "no context"), (["context", "get", "nope"], "no context"),
                           (["--context", "nope", "nc", "rstrm://x"], "no context named 'nope'")):
        result = run_cli(*args, env=env)
        assert result.returncode == 2, (args, result.stderr)
        assert len(error_lines(result.stderr)) == 1 and fragment in result.stderr, result.stderr


def test_invalid_files_name_the_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    for text, fragment in (("contexts: 3\n", "contexts"), ("contexts:\n  - engine: x\n", "contexts.0.name"),
                           ("version: [\n", "not valid YAML"), ("- a\n", "expected a mapping"),
                           ("contexts:\n  - {name: a}\n  - {name: a}\n", "used twice")):
        config.write_text(text)
        result = run_cli("context", "list", env=cfg_env(config))
        assert result.returncode == 2, result.stderr
        assert str(config) in result.stderr and fragment in result.stderr, result.stderr
        assert config.read_text() == text  # nothing rewritten


def test_an_rstream_config_is_read_and_its_other_fields_kept(tmp_path: Path) -> None:
    config = tmp_path / "rstream.yaml"
    config.write_text(yaml.safe_dump({
        "version": 1, "defaults": {"context": {"name": "prod"}},
        "contexts": [{"name": "prod", "engine": "edge.example.com:443", "projectEndpoint": "p-123",
                      "auth": {"token": {"storage": {"kind": "inline", "value": "t"}}},
                      "transport": {"mode": "tls", "proxy": {"http": "http://proxy:3128"},
                                    "tls": {"caFile": "/etc/ca.pem", "serverName": "edge.example.com"}}}],
    }))
    rows = json.loads(run_cli("--config", str(config), "context", "list", "-o", "json", env=cli_env()).stdout)
    assert rows[0]["engine"] == "edge.example.com:443" and rows[0]["ca_file"] == "/etc/ca.pem"
    assert run_cli("--config", str(config), "context", "update", "prod", "--engine", "e2:443",
                   env=cli_env()).returncode == 0
    data = yaml.safe_load(config.read_text())
    context = data["contexts"][0]
    assert context["engine"] == "e2:443"
    assert context["projectEndpoint"] == "p-123"  # untouched
    assert context["transport"]["proxy"] == {"http": "http://proxy:3128"}
    assert context["transport"]["tls"]["serverName"] == "edge.example.com"


async def test_forward_through_a_context_and_precedence(engine_process: EngineProcess, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    token_file = tmp_path / "token"
    token_file.write_text(engine_process.token())
    env = cfg_env(config)
    assert run_cli("context", "create", "local", "--engine", engine_process.address, "--token-file", str(token_file),
                   "--engine-tls-ca-file", str(engine_process.ca_file), env=env).returncode == 0
    # 1. the context alone
    async with EchoServer(http=True) as upstream, cli_process(tmp_path, "forward", str(upstream.port), "-o", "json",
                                                              env=env) as cli:
        event = json.loads((await cli.wait_for_line(r'"status": "online"')).string)
        assert event["forwarding"].endswith(f":{engine_process.port}")
        assert await cli.terminate() == 0
    # 2. the environment beats the context (the context now points at a dead port)
    assert run_cli("context", "update", "local", "--engine", "127.0.0.1:9", env=env).returncode == 0
    env_wins = cfg_env(config, RSTREAM_ENGINE=engine_process.address)
    async with cli_process(tmp_path, "forward", "9", "-o", "json", env=env_wins) as cli:
        assert json.loads((await cli.wait_for_line(r'"status": "online"')).string)["status"] == "online"
        assert await cli.terminate() == 0
    # 3. a flag beats the environment
    flag_wins = cfg_env(config, RSTREAM_ENGINE="127.0.0.1:9")
    async with cli_process(tmp_path, "forward", "9", "--engine", engine_process.address, "-o", "json",
                           env=flag_wins) as cli:
        assert json.loads((await cli.wait_for_line(r'"status": "online"')).string)["status"] == "online"
        assert await cli.terminate() == 0
