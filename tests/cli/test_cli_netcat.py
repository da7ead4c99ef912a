"""`portway nc` beyond dialing: -L listeners, --exec/--sh-exec children, -u datagrams, --idle-timeout and
usage errors. Real engine and `portway` subprocesses; every wait is bounded, every process is ended."""

from __future__ import annotations

import asyncio
import contextlib
import re
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from portway.agent import ControlChannel, DatagramStream, Stream
from tests.cli.helpers import (
    PORTWAY,
    WAIT_S,
    CliProcess,
    agent_args,
    assert_clean_stderr,
    cli_env,
    cli_process,
    error_lines,
    run_cli,
)
from tests.conftest import EngineProcess

# A line-by-line upper-casing echo that flushes each line, so a test can talk to it interactively.
UPPER = f"{sys.executable} -u -c 'import sys\nfor line in sys.stdin: print(line.upper(), end=\"\", flush=True)'"


def frame(*datagrams: bytes) -> bytes:
    return b"".join(struct.pack(">H", len(d)) + d for d in datagrams)


async def wait_for_stderr(cli: CliProcess, pattern: str, timeout: float = WAIT_S) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while (match := re.search(pattern, cli.stderr())) is None:
        if cli.process.returncode is not None or time.monotonic() > deadline:
            pytest.fail(f"no {pattern!r} on stderr: {cli.stderr()!r}")
        await asyncio.sleep(0.05)
    return match


async def listening(cli: CliProcess, name: str) -> None:
    await wait_for_stderr(cli, rf"^nc: listening on rstrm://{re.escape(name)} \(")


def descendants(pid: int, depth: int | None = None) -> list[int]:
    """Live (or zombie) processes below `pid` (down to `depth` levels), from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
    found: list[int] = []
    level = [pid]
    while level and (depth is None or depth > 0):
        level = [child for child, ppid in parents.items() if ppid in level]
        found += level
        depth = None if depth is None else depth - 1
    return found


async def wait_for_descendants(pid: int, count: int, timeout: float = WAIT_S, depth: int | None = None) -> None:
    deadline = time.monotonic() + timeout
    while len(descendants(pid, depth)) != count:
        if time.monotonic() > deadline:
            pytest.fail(f"expected {count} processes below {pid}, found {descendants(pid)}")
        await asyncio.sleep(0.05)


async def send(cli: CliProcess, data: bytes) -> None:
    assert cli.process.stdin is not None
    cli.process.stdin.write(data)
    await cli.process.stdin.drain()


async def read_exactly(cli: CliProcess, n: int) -> bytes:
    assert cli.process.stdout is not None
    return await asyncio.wait_for(cli.process.stdout.readexactly(n), WAIT_S)


async def exit_code(cli: CliProcess) -> int:
    return await asyncio.wait_for(cli.process.wait(), WAIT_S)


@contextlib.asynccontextmanager
async def sdk_tunnel(engine: EngineProcess,
                     **fields: object) -> AsyncIterator[tuple[ControlChannel, asyncio.Queue[Stream]]]:
    """A private tunnel published through the SDK; accepted streams land in the queue."""
    control = await asyncio.wait_for(engine.client().connect(), WAIT_S)
    accepted: asyncio.Queue[Stream] = asyncio.Queue()
    try:
        tunnel = await asyncio.wait_for(control.create_tunnel(publish=False, **fields), WAIT_S)

        async def serve() -> None:
            async for stream in tunnel:
                await accepted.put(stream)

        server = asyncio.ensure_future(serve())
        try:
            yield control, accepted
        finally:
            server.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server
            while not accepted.empty():
                await accepted.get_nowait().close()
    finally:
        await asyncio.wait_for(control.close(), WAIT_S)


# ---------------------------------------------------------------- stdio


async def test_listen_and_dial_exchange_both_ways(engine_process: EngineProcess, tmp_path: Path) -> None:
    args = agent_args(engine_process)
    async with cli_process(tmp_path, "nc", "-L", "--half-close", "rstrm://pair", *args, stdin=True) as server:
        await listening(server, "pair")
        assert server.lines == []  # the tunnel's name went to stderr: stdout is data only
        async with cli_process(tmp_path, "nc", "rstrm://pair", *args, stdin=True) as dialer:
            await send(dialer, b"ping\n")
            assert await server.readline() == "ping\n"
            await send(server, b"pong\n")
            assert await dialer.readline() == "pong\n"
            # Without -k the listener stopped listening at its first stream.
            late = await asyncio.to_thread(run_cli, "nc", "rstrm://pair", *args)
            assert late.returncode == 1 and "no tunnel named 'pair'" in late.stderr, late
            # The listener's stdin ends (sent on as end-of-stream): the dialer ends, then so does the listener.
            assert server.process.stdin is not None
            server.process.stdin.close()
            assert await exit_code(dialer) == 0, dialer.stderr()
            assert await exit_code(server) == 0, server.stderr()
            assert_clean_stderr(dialer.stderr())
        assert_clean_stderr(server.stderr())
        assert len(server.stderr().splitlines()) == 1, server.stderr()


async def test_keep_open_serves_stdio_streams_one_after_another(engine_process: EngineProcess,
                                                                tmp_path: Path) -> None:
    args = agent_args(engine_process)
    async with cli_process(tmp_path, "nc", "-L", "-k", "rstrm://seq", *args, stdin=True) as server:
        await listening(server, "seq")
        for word in ("first", "second"):
            async with cli_process(tmp_path, "nc", "--half-close", "rstrm://seq", *args, stdin=True) as dialer:
                await send(dialer, f"{word}\n".encode())
                assert await server.readline() == f"{word}\n"
                assert dialer.process.stdin is not None
                dialer.process.stdin.close()
                assert await exit_code(dialer) == 0, dialer.stderr()
        assert server.process.returncode is None  # -k: still listening
        assert await server.terminate() == 0
        assert_clean_stderr(server.stderr())


async def test_idle_timeout_ends_a_dialed_session(engine_process: EngineProcess, tmp_path: Path) -> None:
    async with sdk_tunnel(engine_process, name="quiet") as (_, accepted), cli_process(
            tmp_path, "nc", "--idle-timeout", "0.5", "rstrm://quiet", *agent_args(engine_process),
            stdin=True) as dialer:
        stream = await asyncio.wait_for(accepted.get(), WAIT_S)
        try:
            stream.write(b"hi\n")
            await stream.drain()
            assert await dialer.readline() == "hi\n"
            started = time.monotonic()
            assert await exit_code(dialer) == 0, dialer.stderr()
            assert time.monotonic() - started < 5
            assert await asyncio.wait_for(stream.read(), WAIT_S) == b""  # the stream was closed
        finally:
            await stream.close()
        assert dialer.stderr().splitlines() == ["nc: no data for 0.5s, closing"]


# ---------------------------------------------------------------- --exec / --sh-exec


async def test_sh_exec_listener_serves_concurrent_dialers_and_reaps_children(engine_process: EngineProcess,
                                                                             tmp_path: Path) -> None:
    args = agent_args(engine_process)
    async with cli_process(tmp_path, "nc", "-L", "-k", "--sh-exec", UPPER, "rstrm://upper", *args) as server:
        await listening(server, "upper")
        async with cli_process(tmp_path, "nc", "--half-close", "rstrm://upper", *args, stdin=True) as one, \
                cli_process(tmp_path, "nc", "--half-close", "rstrm://upper", *args, stdin=True) as two:
            await send(one, b"abc\n")
            assert await one.readline() == "ABC\n"
            await send(two, b"def\n")
            assert await two.readline() == "DEF\n"
            await wait_for_descendants(server.process.pid, 2, depth=1)  # a child per stream, both alive
            await send(one, b"again\n")
            assert await one.readline() == "AGAIN\n"
            for dialer in (one, two):  # end of input: the child ends, so does its stream, so does nc
                assert dialer.process.stdin is not None
                dialer.process.stdin.close()
                assert await exit_code(dialer) == 0, dialer.stderr()
                assert_clean_stderr(dialer.stderr())
        await wait_for_descendants(server.process.pid, 0)  # reaped: no zombie stays
        # stdin from a regular file works too (it cannot be polled).
        source = tmp_path / "input.txt"
        source.write_text("from a file\n")
        with source.open("rb") as stdin:
            result = await asyncio.to_thread(
                subprocess.run, [*PORTWAY, "nc", "--half-close", "rstrm://upper", *args], stdin=stdin,
                capture_output=True, timeout=WAIT_S, env=cli_env(), check=False)
        assert (result.returncode, result.stdout) == (0, b"FROM A FILE\n"), result
        await wait_for_descendants(server.process.pid, 0)
        assert await server.terminate() == 0
        assert_clean_stderr(server.stderr())


async def test_max_conns_refuses_extra_streams_and_sigterm_ends_children(engine_process: EngineProcess,
                                                                        tmp_path: Path) -> None:
    args = agent_args(engine_process)
    async with cli_process(tmp_path, "nc", "-L", "-k", "--max-conns", "1", "--sh-exec", UPPER, "rstrm://one",
                           *args) as server:
        await listening(server, "one")
        async with cli_process(tmp_path, "nc", "rstrm://one", *args, stdin=True) as first:
            await send(first, b"mine\n")
            assert await first.readline() == "MINE\n"
            extra = await asyncio.to_thread(run_cli, "nc", "rstrm://one", *args)
            assert (extra.returncode, extra.stdout) == (0, ""), extra  # closed at once, nothing served
            await wait_for_stderr(server, r"nc: refused a stream: 1 already open \(--max-conns\)")
            await wait_for_descendants(server.process.pid, 1, depth=1)
            below = descendants(server.process.pid)
            assert await server.terminate() == 0  # SIGTERM: the child is stopped and reaped on the way out
            assert not [pid for pid in below if _cmdline(pid)], [_cmdline(pid) for pid in below]
            assert await exit_code(first) == 0, first.stderr()
        assert_clean_stderr(server.stderr())


async def test_idle_listener_kills_a_child_that_never_ends(engine_process: EngineProcess,
                                                          tmp_path: Path) -> None:
    args = agent_args(engine_process)
    async with cli_process(tmp_path, "nc", "-L", "--idle-timeout", "0.5", "--sh-exec", "sleep 59.25; echo late",
                           "rstrm://sleepy", *args) as server:
        await listening(server, "sleepy")
        async with cli_process(tmp_path, "nc", "rstrm://sleepy", *args, stdin=True) as dialer:
            await wait_for_descendants(server.process.pid, 2)  # /bin/sh and its sleep
            assert await exit_code(server) == 0, server.stderr()  # idle: child group killed, no -k: done
            assert await exit_code(dialer) == 0, dialer.stderr()
            assert await asyncio.wait_for(dialer.process.stdout.read(), WAIT_S) == b""  # type: ignore[union-attr]
        assert "nc: no data for 0.5s, closing" in server.stderr()
        assert_clean_stderr(server.stderr())
    left = [pid for pid in descendants(1) if "sleep 59.25" in _cmdline(pid)]
    assert not left, [_cmdline(pid) for pid in left]  # the whole process group was killed


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return ""


async def test_exec_when_dialing_connects_the_stream_to_the_command(engine_process: EngineProcess,
                                                                   tmp_path: Path) -> None:
    async with sdk_tunnel(engine_process, name="svc") as (_, accepted), cli_process(
            tmp_path, "nc", "-c", UPPER, "rstrm://svc", *agent_args(engine_process)) as dialer:
        stream = await asyncio.wait_for(accepted.get(), WAIT_S)
        try:
            stream.write(b"shout\n")
            await stream.drain()
            assert await asyncio.wait_for(stream.readexactly(6), WAIT_S) == b"SHOUT\n"
            stream.write_eof()  # the child's stdin ends, it exits, nc closes the stream and exits
            assert await asyncio.wait_for(stream.read(), WAIT_S) == b""
        finally:
            await stream.close()
        assert await exit_code(dialer) == 0, dialer.stderr()
        await wait_for_descendants(dialer.process.pid, 0)
        assert_clean_stderr(dialer.stderr())


# ---------------------------------------------------------------- datagrams


async def test_datagram_listener_keeps_datagram_boundaries(engine_process: EngineProcess, tmp_path: Path) -> None:
    async with cli_process(tmp_path, "nc", "-L", "-u", "rstrm://dgram", *agent_args(engine_process),
                           stdin=True) as server:
        await wait_for_stderr(server, r"^nc: listening on rstrm://dgram \(datagram tunnel [0-9a-f]+\)")
        dialed = DatagramStream(await asyncio.wait_for(
            engine_process.client().dial("dgram", zero_rtt=False), WAIT_S))
        try:
            packets = [b"one", b"", b"x" * 1500]
            for packet in packets:
                await dialed.send(packet)
            expected = frame(*packets)
            assert await read_exactly(server, len(expected)) == expected
            # Two datagrams in one write, the second split mid-header: the dialer still gets two packets.
            answer = frame(b"alpha", b"beta")
            await send(server, answer[:8])
            await asyncio.sleep(0.1)
            await send(server, answer[8:])
            assert [await asyncio.wait_for(dialed.recv(), WAIT_S) for _ in range(2)] == [b"alpha", b"beta"]
        finally:
            await dialed.close()
        assert await exit_code(server) == 0, server.stderr()
        assert_clean_stderr(server.stderr())


async def test_datagram_dial_to_an_sh_exec_echo(engine_process: EngineProcess, tmp_path: Path) -> None:
    args = agent_args(engine_process)
    async with cli_process(tmp_path, "nc", "-L", "-k", "-u", "--framing", "rfc4571", "--sh-exec", "cat",
                           "rstrm://echo", *args) as server:
        await listening(server, "echo")
        async with cli_process(tmp_path, "nc", "-u", "rstrm://echo", *args, stdin=True) as dialer:
            datagrams = frame(b"hello", b"", b"world" * 300)
            for start in range(0, len(datagrams), 7):  # arbitrary cuts, mid-header included
                await send(dialer, datagrams[start : start + 7])
            assert await read_exactly(dialer, len(datagrams)) == datagrams
            await dialer.terminate()
        # Input that ends inside a frame is a runtime error: one line, exit 1.
        result = await asyncio.to_thread(subprocess.run, [*PORTWAY, "nc", "-u", "rstrm://echo", *args],
                                         input=b"\x00\x05ab", capture_output=True, timeout=WAIT_S,
                                         env=cli_env(), check=False)
        assert result.returncode == 1, result
        errors = error_lines(result.stderr.decode())
        assert len(errors) == 1 and "inside a datagram frame" in errors[0] and "RFC 4571" in errors[0]
        assert await server.terminate() == 0
        assert_clean_stderr(server.stderr())


# ---------------------------------------------------------------- failures


async def test_listening_on_a_taken_name_fails_with_one_line(engine_process: EngineProcess) -> None:
    async with sdk_tunnel(engine_process, name="taken"):
        result = await asyncio.to_thread(run_cli, "nc", "-L", "rstrm://taken", *agent_args(engine_process))
    assert result.returncode == 1, result
    assert len(error_lines(result.stderr)) == 1 and result.stdout == "", result


@pytest.mark.parametrize(("args", "fragment"), [
    (["nc", "rstrm://"], "invalid endpoint"),
    (["nc", "udp://127.0.0.1:53"], "unsupported endpoint"),
    (["nc", "-L", "rstrm://no spaces"], "invalid tunnel name"),
    (["nc", "-c", "cat", "--sh-exec", "cat", "rstrm://x"], "exclusive"),
    (["nc", "--exec", "", "rstrm://x"], "--exec needs a command"),
    (["nc", "--sh-exec", " ", "rstrm://x"], "--sh-exec needs a command"),
    (["nc", "--exec", "'unbalanced", "rstrm://x"], "cannot split"),
    (["nc", "--exec", "no-such-command-here", "rstrm://x"], "command not found"),
    (["nc", "-u", "--framing", "netstring", "rstrm://x"], "unknown --framing"),
    (["nc", "--framing", "rfc4571", "rstrm://x"], "--framing applies only to datagrams"),
    (["nc", "--idle-timeout", "-1", "rstrm://x"], "must not be negative"),
    (["nc", "--idle-timeout", "soon", "rstrm://x"], "invalid --idle-timeout"),
    (["nc", "-k", "rstrm://x"], "needs -L/--listen"),
    (["nc", "-L", "-k", "--max-conns", "5", "rstrm://x"], "--max-conns needs -L and a command"),
    (["nc", "-L", "-c", "cat", "--max-conns", "0", "rstrm://x"], "invalid --max-conns"),
    (["nc", "--half-close", "-c", "cat", "rstrm://x"], "--half-close applies to stdin"),
    (["ncat", "-k", "rstrm://x"], "needs -L/--listen"),
    (["netcat", "-k", "rstrm://x"], "needs -L/--listen"),
])
def test_usage_errors_exit_2_with_one_line(args: Sequence[str], fragment: str) -> None:
    result = run_cli(*args, "--engine", "127.0.0.1:9", "--token", "unused")
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0] and "(hint: " in lines[0], lines[0]


@pytest.mark.parametrize("name", ["nc", "netcat", "ncat"])
def test_help_has_examples(name: str) -> None:
    result = run_cli(name, "--help")
    assert result.returncode == 0, result
    for text in ("-L, --listen", "-c, --exec", "--sh-exec", "-u, --datagram", "--idle-timeout",
                 "portway nc -L -k --sh-exec"):
        assert text in result.stdout, result.stdout
