"""`portway forward` on a terminal: the live panel, driven in a pseudo-terminal with a real engine process,
real HTTP requests through the tunnel, and bounded reads."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.cli.helpers import PORTWAY, WAIT_S, agent_args, assert_clean_stderr, cli_env
from tests.conftest import EchoServer, EngineProcess, http_get

_ANSI = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Z0-9]|\r")


class Terminal:
    """The master side of a pty, drained by a thread so the child never blocks on a full terminal."""

    def __init__(self, master: int) -> None:
        self.master = master
        self._output = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO once the child side is gone
                return
            if not data:
                return
            with self._lock:
                self._output += data

    def text(self) -> str:
        with self._lock:
            return _ANSI.sub(b"", bytes(self._output)).decode("utf-8", errors="replace")

    async def wait_for(self, pattern: str, timeout: float = WAIT_S) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.text())
            if match:
                return match
            await asyncio.sleep(0.05)
        pytest.fail(f"{pattern!r} never appeared on the terminal:\n{self.text()[-3000:]}")

    def close(self) -> None:
        os.close(self.master)
        self._reader.join(WAIT_S)


async def test_panel_shows_the_tunnel_and_its_requests(engine_process: EngineProcess, tmp_path: Path) -> None:
    master, slave = os.openpty()
    stderr_path = tmp_path / "forward.stderr"
    env = cli_env(TERM="xterm-256color", COLUMNS="120", LINES="40")
    async with EchoServer(http=True) as upstream:
        with stderr_path.open("w") as stderr_file:
            process = await asyncio.create_subprocess_exec(
                *PORTWAY, "forward", str(upstream.port), *agent_args(engine_process),
                stdin=slave, stdout=slave, stderr=stderr_file, env=env)
        os.close(slave)
        terminal = Terminal(master)
        try:
            match = await terminal.wait_for(r"Forwarding\s+https://([a-z0-9-]+\.t\.localhost):\d+ -> 127\.0\.0\.1:\d+")
            hostname = match.group(1)
            await terminal.wait_for(r"Status\s+online")
            await terminal.wait_for(r"Streams\s+0 open, 0 total")
            for path in ("/panel-first", "/panel-second?q=1"):
                reader, writer = await engine_process.open_visitor(hostname)
                try:
                    status, _ = await http_get(reader, writer, hostname, path)
                    assert status == 200
                finally:
                    writer.close()
            await terminal.wait_for(r"Requests\s+2")
            await terminal.wait_for(r"GET\s+/panel-first\s+200\s+\d+ ms")
            await terminal.wait_for(r"GET\s+/panel-second\?q=1\s+200\s+\d+ ms")
            await terminal.wait_for(r"Streams\s+[01] open, [12] total")  # the engine may reuse a kept-alive stream
            await terminal.wait_for(r"Traffic\s+[1-9][\d.]* (B|KiB) in, [1-9][\d.]* (B|KiB) out")
            process.send_signal(signal.SIGINT)  # Ctrl-C
            assert await asyncio.wait_for(process.wait(), WAIT_S) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await asyncio.wait_for(process.wait(), WAIT_S)
            terminal.close()
    assert_clean_stderr(stderr_path.read_text())
