"""`portway engine init`: the written configuration loads back and starts a real engine; overwrite rules; modes."""

from __future__ import annotations

import asyncio
import hashlib
import stat
from pathlib import Path

import yaml

from portway.agent import Client, TLSOptions
from portway.engine.auth import mint_token
from portway.engine.configfile import ALL_KEYS, load_config, parse_config
from tests.cli.helpers import WAIT_S, assert_clean_stderr, cli_env, cli_process, error_lines, run_cli


def leaves(node: dict[str, object], prefix: str = "") -> list[str]:
    found: list[str] = []
    for key, value in node.items():
        found += leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"]
    return found


def test_init_writes_a_config_that_loads_back_and_a_state_dir(tmp_path: Path) -> None:
    config, state = tmp_path / "etc" / "engine.yaml", tmp_path / "state"
    result = run_cli("engine", "init", "--config", str(config), "--state-dir", str(state), "--host", "Edge.Example.com")
    assert result.returncode == 0, result.stderr
    assert f"Wrote {config}" in result.stdout and str(state / "ca.pem") in result.stdout
    text = config.read_text()
    assert text.startswith("#") and f"--state-dir {state}" in text
    assert leaves(yaml.safe_load(text)) == list(ALL_KEYS)  # every key the engine reads, each with its value
    assert load_config(str(config), {}) == parse_config({"engine": {"host": "edge.example.com"}})
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    for name, mode in [("ca.key", 0o600), ("server.key", 0o600), ("jwt.secret", 0o600), ("ca.pem", 0o644)]:
        assert stat.S_IMODE((state / name).stat().st_mode) == mode, name
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert (state / "jwt.secret").read_text().strip() not in result.stdout + result.stderr + text


def test_init_refuses_to_overwrite_without_force_and_keeps_the_ca(tmp_path: Path) -> None:
    config, state = tmp_path / "engine.yaml", tmp_path / "state"
    args = ["engine", "--config", str(config), "--state-dir", str(state), "init"]  # group options work too
    assert run_cli(*args).returncode == 0
    before, ca = config.read_bytes(), hashlib.sha256((state / "ca.pem").read_bytes()).hexdigest()

    refused = run_cli(*args, "--host", "other.example.com")
    assert refused.returncode == 2, refused
    assert len(refused.stderr.splitlines()) == 1 and "already exists" in error_lines(refused.stderr)[0]
    assert config.read_bytes() == before

    forced = run_cli(*args, "--host", "other.example.com", "--force")
    assert forced.returncode == 0, forced.stderr
    assert load_config(str(config), {}).engine.host == "other.example.com"
    assert hashlib.sha256((state / "ca.pem").read_bytes()).hexdigest() == ca  # agents keep trusting it
    assert list(tmp_path.glob(".engine.yaml.*")) == []  # no temporary file left behind


def test_init_defaults_to_rstream_engine_config(tmp_path: Path) -> None:
    config = tmp_path / "from-env.yaml"
    result = run_cli("engine", "init", "--state-dir", str(tmp_path / "st"),
                     env=cli_env(RSTREAM_ENGINE_CONFIG=str(config)))
    assert result.returncode == 0, result.stderr
    assert load_config(str(config), {}).engine.host == "localhost"


def test_init_rejects_a_bad_host_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "engine.yaml"
    result = run_cli("engine", "init", "--config", str(config), "--state-dir", str(tmp_path / "st"),
                     "--host", "http://x:1")
    assert result.returncode == 2, result
    assert len(result.stderr.splitlines()) == 1 and "'engine.host'" in result.stderr
    assert not config.exists()


async def test_engine_starts_with_the_initialised_config(tmp_path: Path) -> None:
    config, state = tmp_path / "engine.yaml", tmp_path / "state"
    result = await asyncio.to_thread(run_cli, "engine", "init", "--config", str(config), "--state-dir", str(state),
                                     "--host", "edge.localhost")
    assert result.returncode == 0, result.stderr
    env = cli_env(RSTREAM_ENGINE_TLS__LISTEN_ADDR="127.0.0.1:0",  # the file's 8443 may be in use on this host
                  RSTREAM_ENGINE_TIMEOUTS__SHUTDOWN_GRACE_SECONDS="1")
    async with cli_process(tmp_path, "engine", "--config", str(config), "--state-dir", str(state), env=env) as cli:
        match = await cli.wait_for_line(r"listening on 127\.0\.0\.1:(\d+) \(engine host edge\.localhost\)")
        await cli.wait_for_line(rf"CA certificate: {state / 'ca.pem'}")
        secret = (state / "jwt.secret").read_text().strip()
        agent = Client(f"127.0.0.1:{match.group(1)}", mint_token(secret, subject="t", ttl_s=60),
                       tls=TLSOptions(ca_file=str(state / "ca.pem")))
        control = await asyncio.wait_for(agent.connect(), WAIT_S)
        try:
            tunnel = await asyncio.wait_for(control.create_tunnel(protocol="http"), WAIT_S)
            assert tunnel.properties.hostname is not None
            assert tunnel.properties.hostname.endswith(".t.edge.localhost")
        finally:
            await control.close()
        assert await cli.terminate() == 0
        assert_clean_stderr(cli.stderr())
