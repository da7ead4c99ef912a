"""One `portway nc` session (a tunnel stream joined to stdio or to a child), and the dialing and
listening loops around it. Failures a user must see are `NcFailed`: the command turns them into one
`error:` line and exit code 1, so no coroutine here exits the process itself."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from dataclasses import dataclass

import click

from portway.agent import Client, Stream, Tunnel
from portway.cli.ncio import Child, IdleClock, LocalEnd, LocalGone, RemoteEnd, Stdin, Stdio, remote_end
from portway.errors import ClosedError, PortwayError
from portway.wire.errors import FrameTruncated


class NcFailed(Exception):
    """A runtime failure of nc: `message` and an optional `hint` for the one error line."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True, slots=True)
class NcPlan:
    """What the command line asked for, checked (netcat.py)."""

    tunnel: str
    listen: bool = False
    keep_open: bool = False
    command: list[str] | None = None  # argv of the child per stream; None: stdio
    datagram: bool = False
    half_close: bool = False
    idle_timeout_s: float | None = None
    max_conns: int = 100


def note(text: str) -> None:
    click.echo(f"nc: {text}", err=True)


async def relay(stream: Stream, local: LocalEnd, plan: NcPlan) -> None:
    """Join `stream` and `local` until the session ends, then close both.

    It ends when the stream ends (stdio), or when the child's output ends (exec; the stream's end
    only closes the child's stdin, as with ncat), or after `idle_timeout_s` without data. Raises
    `NcFailed` for input that breaks the datagram framing.
    """
    remote = remote_end(stream, plan.datagram)
    clock = IdleClock(plan.idle_timeout_s)
    child = isinstance(local, Child)
    down = asyncio.ensure_future(_downstream(remote, local, clock))
    up = asyncio.ensure_future(_upstream(local, remote, clock, plan.half_close))
    idle = asyncio.ensure_future(clock.expired())
    ends: set[asyncio.Future[None]] = {up, asyncio.ensure_future(remote.lost())} if child else {down}
    tasks = {down, up, idle, *ends}
    try:
        waiting: set[asyncio.Future[None]] = {idle, up, down, *ends}
        while True:
            done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for pump, where in ((up, "command output" if child else "stdin"),
                                (down, "command input" if child else "stdout")):
                if pump in done and pump.exception() is not None:
                    raise _failure(pump.exception(), where)
            if idle in done:
                note(f"no data for {plan.idle_timeout_s:g}s, closing")
            if done & ({idle} | ends):
                return
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await remote.close()
        await local.close()


def _failure(error: BaseException | None, where: str) -> NcFailed:
    if isinstance(error, FrameTruncated):
        return NcFailed(f"{where}: {error}", "with -u, each datagram is a 2-byte big-endian length, "
                                             "then the payload (RFC 4571)")
    return NcFailed(f"{where}: {error}")


async def _downstream(remote: RemoteEnd, local: LocalEnd, clock: IdleClock) -> None:
    try:
        while data := await remote.receive():
            clock.touch()
            await local.write(data)
    except (ClosedError, LocalGone):
        pass
    finally:
        local.end_input()


async def _upstream(local: LocalEnd, remote: RemoteEnd, clock: IdleClock, half_close: bool) -> None:
    """Raises `FrameTruncated` when datagram input ends inside a frame; the peer going away is an end."""
    try:
        while data := await local.read():
            clock.touch()
            await remote.send(data)
        remote.input_ended(half_close)
    except ClosedError:
        return


# ---------------------------------------------------------------- dialing


async def dial(client: Client, plan: NcPlan) -> None:
    try:
        stream = await client.dial(plan.tunnel, zero_rtt=False)
    except PortwayError as error:
        raise NcFailed(str(error), "is a tunnel listening under this name? (portway nc -L rstrm://NAME)") from None
    if plan.command is not None:
        try:
            child = await _start_child(plan.command)
        except NcFailed:
            await _quietly(stream.close())
            raise
        await relay(stream, child, plan)
        return
    stdin = Stdin()
    try:
        await relay(stream, Stdio(stdin), plan)
    finally:
        stdin.close()


async def _start_child(command: list[str]) -> Child:
    try:
        return await Child.start(command)
    except OSError as error:
        raise NcFailed(f"cannot run {command[0]!r}: {error.strerror or error}") from None


# ---------------------------------------------------------------- listening


async def listen(client: Client, plan: NcPlan) -> None:
    """Publish a private tunnel named `plan.tunnel` and serve its streams: one at a time on stdio, or
    up to `max_conns` children at once. Without `keep_open` the tunnel closes at the first stream."""
    try:
        control = await client.connect()
    except PortwayError as error:
        raise NcFailed(str(error), "check the engine address, token and CA file") from None
    tunnel: Tunnel | None = None
    try:
        try:
            tunnel = await control.create_tunnel(publish=False, name=plan.tunnel,
                                                 type="datagram" if plan.datagram else "bytestream")
        except PortwayError as error:
            raise NcFailed(str(error), "is another listener using this name?") from None
        kind = "datagram " if plan.datagram else ""
        note(f"listening on rstrm://{tunnel.properties.name} ({kind}tunnel {tunnel.id})")
        if plan.command is None:
            await _serve_stdio(tunnel, plan)
        else:
            await _serve_children(tunnel, plan)
    finally:
        await _quietly(control.close())
        if tunnel is not None:
            await _drain(tunnel)


async def _next(tunnel: Tunnel) -> Stream:
    try:
        return await tunnel.accept()
    except ClosedError:
        raise NcFailed("the tunnel was closed (engine gone?)", "check the engine") from None


async def _serve_stdio(tunnel: Tunnel, plan: NcPlan) -> None:
    stdin = Stdin()
    try:
        while True:
            stream = await _next(tunnel)
            if not plan.keep_open:
                await _quietly(tunnel.close())
            await relay(stream, Stdio(stdin), plan)
            if not plan.keep_open:
                return
    finally:
        stdin.close()


async def _serve_children(tunnel: Tunnel, plan: NcPlan) -> None:
    sessions: set[asyncio.Task[None]] = set()
    try:
        while True:
            stream = await _next(tunnel)
            if len(sessions) >= plan.max_conns:
                note(f"refused a stream: {plan.max_conns} already open (--max-conns)")
                await _quietly(stream.close())
                continue
            session = asyncio.ensure_future(_child_session(stream, plan))
            sessions.add(session)
            session.add_done_callback(sessions.discard)
            if not plan.keep_open:
                await _quietly(tunnel.close())
                await session
                return
    finally:
        for session in sessions:
            session.cancel()
        await asyncio.gather(*sessions, return_exceptions=True)


async def _child_session(stream: Stream, plan: NcPlan) -> None:
    """One stream served by its own child; its failures are noted, the listener goes on."""
    assert plan.command is not None
    try:
        child = await _start_child(plan.command)
    except NcFailed as error:
        await _quietly(stream.close())
        if not plan.keep_open:
            raise
        note(str(error))
        return
    try:
        await relay(stream, child, plan)
    except NcFailed as error:
        if not plan.keep_open:
            raise
        note(str(error))


async def _quietly(step: Awaitable[None]) -> None:
    with contextlib.suppress(PortwayError, OSError, TimeoutError):
        await asyncio.wait_for(step, 5.0)


async def _drain(tunnel: Tunnel) -> None:
    """Close the streams that arrived but were never served, or their connections would leak."""
    tunnel.mark_closed()
    with contextlib.suppress(ClosedError, TimeoutError):
        while True:
            stream = await asyncio.wait_for(tunnel.accept(), 1.0)
            await _quietly(stream.close())
