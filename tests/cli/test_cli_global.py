"""Global flags (-v, -l, -f), secrets kept out of logs, shell completion and the examples in every --help."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import click
import pytest

from portway.cli.main import cli
from portway.engine.auth import mint_token
from tests.cli.helpers import PORTWAY, WAIT_S, agent_args, cli_env, cli_process, run_cli, wait_for_log
from tests.conftest import EchoServer, EngineProcess, engine_yaml, http_get


def spec_file(tmp_path: Path, port: int) -> Path:
    spec = tmp_path / "tunnels.yaml"
    spec.write_text(f"tunnels:\n  - name: web\n    target: {port}\n")
    return spec


async def test_json_debug_logs_parse_and_hold_no_token(engine_process: EngineProcess, tmp_path: Path) -> None:
    token = engine_process.token()
    async with EchoServer(http=True) as web, cli_process(
            tmp_path, "-v", "-f", "json", "run", "--apply", str(spec_file(tmp_path, web.port)),
            *agent_args(engine_process, token)) as cli:
        await cli.wait_for_line(r"^web: https://")
        assert await cli.terminate() == 0
        stderr = cli.stderr()
    events = [json.loads(line) for line in stderr.splitlines()]
    assert events, "expected debug logs"
    assert all({"time", "level", "logger", "message"} <= set(event) for event in events)
    assert any(e["level"] == "debug" and e["logger"] == "portway.cli.apply" for e in events), stderr
    assert token not in stderr


async def test_log_level_none_is_silent_and_info_hides_debug(engine_process: EngineProcess, tmp_path: Path) -> None:
    async with EchoServer(http=True) as web:
        spec = spec_file(tmp_path, web.port)
        for flags, debug_expected in ((["-l", "none"], None), (["-l", "info"], False), (["--verbose"], True)):
            async with cli_process(tmp_path, *flags, "run", "--apply", str(spec), "--watch",
                                   *agent_args(engine_process)) as cli:
                await cli.wait_for_line(r"^web: https://")
                spec.touch()  # the watcher logs the change at debug level
                await asyncio.sleep(1.5)
                assert await cli.terminate() == 0
                stderr = cli.stderr()
            if debug_expected is None:
                assert stderr == ""
            else:
                assert ("DEBUG" in stderr) is debug_expected, stderr


async def test_engine_log_level_from_the_file_unless_a_flag_says_otherwise(tmp_path: Path) -> None:
    config = tmp_path / "engine.yaml"
    config.write_text(engine_yaml().replace("host: localhost", "host: localhost\n  log_level: error"))
    for flags, info_expected in (([], False), (["-l", "info"], True)):
        async with cli_process(tmp_path, *flags, "engine", "--config", str(config), "--state-dir",
                               str(tmp_path / "st")) as cli:
            await cli.wait_for_line(r"^Ready token")
            assert await cli.terminate() == 0
            assert ("engine stopped" in cli.stderr()) is info_expected, cli.stderr()


async def test_a_token_in_a_visitor_query_is_masked_in_the_access_log(engine_process: EngineProcess,
                                                                      tmp_path: Path) -> None:
    secret_token = mint_token("x" * 32, subject="visitor", ttl_s=60)
    async with EchoServer(http=True) as web, cli_process(
            tmp_path, "run", "--apply", str(spec_file(tmp_path, web.port)), *agent_args(engine_process)) as cli:
        match = await cli.wait_for_line(r"^web: https://([a-z0-9-]+\.t\.localhost):\d+")
        hostname = match.group(1)
        reader, writer = await asyncio.wait_for(engine_process.open_visitor(hostname), WAIT_S)
        try:
            status, _ = await http_get(reader, writer, hostname, f"/page?rstream.token={secret_token}&q=1")
        finally:
            writer.close()
        assert status == 200
        logs = await wait_for_log(engine_process, "path=/page?")
        assert "rstream.token=[redacted" in logs, logs
        assert secret_token not in logs and secret_token.split(".")[2] not in logs
        assert await cli.terminate() == 0


@pytest.mark.parametrize("args", [["-l", "loud", "up"], ["-f", "xml", "up"], ["completion", "tcsh"],
                                  ["completion"]])
def test_usage_errors_exit_2_with_one_line(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr


# ---------------------------------------------------------------- completion


def shim(tmp_path: Path) -> dict[str, str]:
    """A `portway` executable on PATH that runs this interpreter's `python -m portway` (the code under test)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "portway"
    script.write_text("#!/bin/sh\nexec " + " ".join(f"'{part}'" for part in PORTWAY) + ' "$@"\n')
    script.chmod(0o755)
    env = cli_env()
    return env | {"PATH": f"{bin_dir}:{env.get('PATH', '')}"}


@pytest.mark.parametrize(("words", "cword", "expected"), [
    ("portway en", 1, {"engine"}),
    ("portway engine ''", 2, {"init", "token"}),
    ("portway c", 1, {"client", "completion", "context", "ctx"}),
    ("portway run --wa", 2, {"--watch"}),
])
def test_bash_script_completes_commands(tmp_path: Path, words: str, cword: int, expected: set[str]) -> None:
    env = shim(tmp_path)
    script = (f'source <(portway completion bash) && COMP_WORDS=({words}) && COMP_CWORD={cword} && '
              '_portway_completion portway && printf "%s\\n" "${COMPREPLY[@]}"')
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=WAIT_S,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == expected, result


def test_click_completion_protocol_directly() -> None:
    env = cli_env(_PORTWAY_COMPLETE="bash_complete", COMP_WORDS="portway completion ", COMP_CWORD="2")
    result = subprocess.run(PORTWAY, capture_output=True, text=True, env=env, timeout=WAIT_S, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["plain,bash", "plain,zsh", "plain,fish"]


@pytest.mark.parametrize(("shell", "marker"), [("zsh", "compdef _portway_completion portway"),
                                               ("fish", "complete --no-files --command portway")])
def test_zsh_and_fish_scripts(shell: str, marker: str) -> None:
    result = run_cli("completion", shell)
    assert result.returncode == 0 and marker in result.stdout, result


# ---------------------------------------------------------------- help


def every_command() -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []

    def walk(command: click.Command, path: tuple[str, ...]) -> None:
        found.append(path)
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, (*path, name))

    walk(cli, ())
    return found


@pytest.mark.parametrize("path", every_command(), ids=" ".join)
def test_every_help_has_an_example(path: tuple[str, ...]) -> None:
    result = run_cli(*path, "--help")
    assert result.returncode == 0, result.stderr
    assert "Example" in result.stdout or "Quick start" in result.stdout, result.stdout
