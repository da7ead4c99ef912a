"""`portway engine`/`portway up` with the plain-HTTP listener: banner, cleartext serving, a busy address."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from tests.cli.helpers import WAIT_S, assert_clean_stderr, cli_env, cli_process, error_lines, run_cli


async def test_up_serves_the_demo_page_in_cleartext(tmp_path: Path) -> None:
    """The laptop case: `http.serve_tunnels` makes `curl http://<name>.t.localhost:<port>/` work."""
    env = cli_env(RSTREAM_ENGINE_TLS__LISTEN_ADDR="127.0.0.1:0", RSTREAM_ENGINE_HTTP__ENABLED="true",
                  RSTREAM_ENGINE_HTTP__LISTEN_ADDR="127.0.0.1:0", RSTREAM_ENGINE_HTTP__SERVE_TUNNELS="true",
                  RSTREAM_ENGINE_TIMEOUTS__SHUTDOWN_GRACE_SECONDS="1")
    async with cli_process(tmp_path, "up", "--state-dir", str(tmp_path / "st"), env=env) as cli:
        banner = await cli.wait_for_line(r"^Plain HTTP on 127\.0\.0\.1:(\d+) \(serving http tunnels in cleartext\)$")
        port = int(banner.group(1))
        match = await cli.wait_for_line(r"^Or in cleartext: curl http://([a-z0-9-]+\.t\.localhost):(\d+)/$")
        assert int(match.group(2)) == port
        async with httpx.AsyncClient(trust_env=False, timeout=WAIT_S) as client:
            got = await client.get(f"http://127.0.0.1:{port}/", headers={"Host": match.group(1)})
        assert got.status_code == 200 and "Hello from Portway" in got.text
        assert await cli.terminate() == 0
        assert_clean_stderr(cli.stderr())


def test_engine_with_a_busy_http_address_exits_2_naming_the_key(tmp_path: Path) -> None:
    """Like a busy metrics address: a configuration problem, named by its key."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        env = cli_env(RSTREAM_ENGINE_TLS__LISTEN_ADDR="127.0.0.1:0", RSTREAM_ENGINE_HTTP__ENABLED="true",
                      RSTREAM_ENGINE_HTTP__LISTEN_ADDR=busy)
        result = run_cli("engine", "--state-dir", str(tmp_path / "st"), env=env)
    assert result.returncode == 2, result
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert f"http.listen_addr: cannot listen on {busy}" in errors[0]
    assert "listening" not in result.stdout
