"""Shared helpers for CLI tests: run the real `portway` entry point as a subprocess with bounded waits."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import UNIT_S, EngineProcess

WAIT_S = 15 * UNIT_S
_cli_numbers = itertools.count()
PORTWAY = [sys.executable, "-m", "portway"]


def cli_env(**extra: str) -> dict[str, str]:
    """The test's environment without engine/agent settings that would change what the CLI does."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("RSTREAM_", "PORTWAY_ENGINE", "PORTWAY_CONFIG"))}
    env["PYTHONUNBUFFERED"] = "1"
    env["PORTWAY_CONFIG"] = os.devnull  # never the developer's own ~/.portway/config.yaml
    return env | extra


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = WAIT_S) -> subprocess.CompletedProcess[str]:
    """Run `portway ARGS` to completion (killed if it outlives `timeout`)."""
    return subprocess.run([*PORTWAY, *args], capture_output=True, text=True, timeout=timeout,
                          env=env or cli_env(), stdin=subprocess.DEVNULL, check=False)


def agent_args(handle: EngineProcess, token: str | None = None) -> list[str]:
    return ["--engine", handle.address, "--token", token or handle.token(),
            "--engine-tls-ca-file", str(handle.ca_file)]


def assert_clean_stderr(stderr: str) -> None:
    """No tracebacks or asyncio complaints (lost exceptions, unclosed resources) from a CLI process."""
    for marker in ("Traceback", "never retrieved", "was never awaited", "Unclosed", "unclosed", "ERROR"):
        assert marker not in stderr, stderr


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


class CliProcess:
    """A long-running `portway` subprocess: bounded line reads, and a guaranteed end."""

    def __init__(self, process: asyncio.subprocess.Process, stderr_path: Path) -> None:
        self.process = process
        self.stderr_path = stderr_path
        self.lines: list[str] = []

    async def readline(self, timeout: float = WAIT_S) -> str:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        line = raw.decode()
        self.lines.append(line)
        return line

    async def wait_for_line(self, pattern: str, timeout: float = WAIT_S) -> re.Match[str]:
        """Read stdout until a line matches `pattern`; fail (with the output so far) at EOF or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = await self.readline(max(remaining, 0.01))
            except TimeoutError:
                pytest.fail(f"no line matching {pattern!r} in time; stdout so far: {self.lines!r}; "
                            f"stderr: {self.stderr()}")
            if not line:
                pytest.fail(f"stdout ended without {pattern!r}; stdout: {self.lines!r}; stderr: {self.stderr()}")
            match = re.search(pattern, line)
            if match:
                return match

    def stderr(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path.exists() else ""

    async def terminate(self, timeout: float = WAIT_S) -> int:
        """SIGTERM, then the exit code (killed and failed if it does not stop in time)."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            pytest.fail(f"process ignored SIGTERM for {timeout}s; stderr: {self.stderr()}")

    async def close(self) -> None:
        """Kill if still running and collect everything (closes the pipes)."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.communicate(), WAIT_S)


@contextlib.asynccontextmanager
async def cli_process(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
                      stdin: bool = False) -> AsyncIterator[CliProcess]:
    stderr_path = tmp_path / f"cli-{next(_cli_numbers)}.stderr"
    with stderr_path.open("w") as stderr_file:
        process = await asyncio.create_subprocess_exec(
            *PORTWAY, *args, env=env or cli_env(), stdout=asyncio.subprocess.PIPE, stderr=stderr_file,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL)
    cli = CliProcess(process, stderr_path)
    try:
        yield cli
    finally:
        await cli.close()


async def wait_for_log(handle: EngineProcess, text: str, timeout: float = 5 * UNIT_S) -> str:
    deadline = time.monotonic() + timeout
    while text not in handle.logs() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return handle.logs()
