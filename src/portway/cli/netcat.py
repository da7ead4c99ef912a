"""`portway nc` (also `netcat`, `ncat`): stdio or a command joined to a private tunnel (rstrm://NAME),
dialing it or, with -L, listening as it. This module only checks flags; ncsession.py does the work."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
import shutil
from typing import NoReturn

import click

from portway.agent import Client
from portway.cli.common import agent_options, client, fail
from portway.cli.ncsession import NcFailed, NcPlan, dial, listen
from portway.cli.runtime import run, until_signal
from portway.wire.errors import InvalidTunnelProperties
from portway.wire.messages import TunnelProperties
from portway.wire.properties import normalize

DEFAULT_MAX_CONNS = 100
_DURATION = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)?$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("endpoint", metavar="rstrm://NAME")
@click.option("-L", "--listen", "listening", is_flag=True,
              help="Publish a private tunnel named NAME and serve the streams that reach it.")
@click.option("-k", "--keep-open", is_flag=True,
              help="With -L: go on accepting streams (stdio: one after another; a command: concurrently).")
@click.option("-c", "--exec", "exec_command", metavar="CMD",
              help="Connect each stream to a new process running CMD (split like a shell, no shell).")
@click.option("--sh-exec", metavar="CMD", help="Like --exec, but CMD runs through /bin/sh -c.")
@click.option("--max-conns", metavar="N", help=f"With -L -k and a command: streams served at once "
                                               f"(default {DEFAULT_MAX_CONNS}); more are refused.")
@click.option("-u", "--datagram", is_flag=True,
              help="Datagram tunnel: stdio (or the command) carries one RFC 4571 frame per datagram.")
@click.option("--framing", metavar="rfc4571", help="Datagram framing on stdio; rfc4571 (the default) is the only one.")
@click.option("--idle-timeout", metavar="SECONDS",
              help="End a session when no data flowed either way this long (5, 2.5, 500ms, 1m; 0: never).")
@click.option("--half-close/--no-half-close", default=False, show_default=True,
              help="At the end of stdin, send end-of-stream and keep reading. Off by default, as in "
                   "rstream's nc for rstrm:// targets: agents such as the official Python SDK end the whole "
                   "stream at end-of-stream, and their answer would be lost.")
@agent_options
@click.pass_context
def nc(ctx: click.Context, endpoint: str, listening: bool, keep_open: bool, exec_command: str | None,
       sh_exec: str | None, max_conns: str | None, datagram: bool, framing: str | None, idle_timeout: str | None,
       half_close: bool, engine_addr: str | None, token: str | None, token_file: str | None, ca_file: str | None,
       insecure: bool) -> None:
    """Join stdin/stdout, or a command, to a private tunnel: dial it, or with -L be it.

    A session runs until the other side ends the stream (the end of stdin alone does not end it, see
    --half-close); with a command, until the command's output ends. Exit codes: 0 done, 1 failure,
    2 usage error.

    \b
    Examples:
      portway nc -L rstrm://chat                 # listen; the tunnel's name and id go to stderr
      portway nc rstrm://chat                    # dial it: type on both sides
      portway nc -L -k --sh-exec 'tr a-z A-Z' rstrm://upper   # a command per stream, concurrently
      printf 'hi' | portway nc --half-close rstrm://upper      # -> HI
      portway nc -L -u rstrm://dns               # datagrams, RFC 4571 framed on stdio
      portway nc --idle-timeout 30s rstrm://chat # hang up after 30 s of silence
    """
    plan = NcPlan(
        tunnel=_endpoint(endpoint, listening),
        listen=listening,
        keep_open=keep_open,
        command=_command(exec_command, sh_exec),
        datagram=datagram,
        half_close=half_close,
        idle_timeout_s=_idle_timeout(idle_timeout),
        max_conns=_max_conns(max_conns),
    )
    _check_combinations(plan, framing, max_conns is not None)
    agent = client(ctx, engine_addr, token, token_file, ca_file, insecure)
    try:
        run(_main(agent, plan))
    except NcFailed as error:
        fail(str(error), error.hint)


async def _main(agent: Client, plan: NcPlan) -> None:
    """Run the session(s) until done or SIGINT/SIGTERM; either way children and streams are closed."""
    job = asyncio.ensure_future(listen(agent, plan) if plan.listen else dial(agent, plan))
    stop = asyncio.ensure_future(until_signal())
    await asyncio.wait({job, stop}, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    job.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await stop
    with contextlib.suppress(asyncio.CancelledError):
        await job  # raises NcFailed if the job failed


def _usage(message: str, hint: str) -> NoReturn:
    fail(message, hint, code=2)


def _endpoint(endpoint: str, listening: bool) -> str:
    scheme, sep, name = endpoint.partition("://")
    if sep and scheme == "udp":
        _usage(f"unsupported endpoint {endpoint!r}", "only rstrm://NAME; for datagrams add -u/--datagram")
    if not sep or scheme != "rstrm" or not name or "/" in name:
        _usage(f"invalid endpoint {endpoint!r}", "use rstrm://NAME (or rstrm://ID when dialing)")
    if listening:
        try:
            normalize(TunnelProperties(publish=False, name=name))
        except InvalidTunnelProperties:
            _usage(f"invalid tunnel name {name!r}", "1-128 letters, digits, '.', '_' or '-', starting alphanumeric")
    return name


def _command(exec_command: str | None, sh_exec: str | None) -> list[str] | None:
    if exec_command is not None and sh_exec is not None:
        _usage("-c/--exec and --sh-exec are exclusive", "use --sh-exec for shell syntax, --exec otherwise")
    if sh_exec is not None:
        if not sh_exec.strip():
            _usage("--sh-exec needs a command", "e.g. --sh-exec 'tr a-z A-Z'")
        return ["/bin/sh", "-c", sh_exec]
    if exec_command is None:
        return None
    try:
        argv = shlex.split(exec_command)
    except ValueError as error:
        _usage(f"cannot split --exec command: {error}", "check the quotes")
    if not argv:
        _usage("--exec needs a command", "e.g. --exec 'cat'")
    if shutil.which(argv[0]) is None:
        _usage(f"command not found: {argv[0]!r}", "give a path, or use --sh-exec for shell built-ins")
    return argv


def _idle_timeout(value: str | None) -> float | None:
    if value is None:
        return None
    if value.strip().startswith("-"):
        _usage(f"--idle-timeout must not be negative, got {value!r}", "give seconds, e.g. 30 or 30s; 0 disables it")
    match = _DURATION.match(value.strip())
    if match is None:
        _usage(f"invalid --idle-timeout {value!r}", "give seconds, e.g. 30, 2.5, 500ms or 1m")
    seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    return seconds or None


def _max_conns(value: str | None) -> int:
    if value is None:
        return DEFAULT_MAX_CONNS
    if not value.isdigit() or int(value) < 1:
        _usage(f"invalid --max-conns {value!r}", "give a whole number of at least 1")
    return int(value)


def _check_combinations(plan: NcPlan, framing: str | None, max_conns_given: bool) -> None:
    if framing is not None and framing.lower() != "rfc4571":
        _usage(f"unknown --framing {framing!r}", "rfc4571 is the only datagram framing")
    if framing is not None and not plan.datagram:
        _usage("--framing applies only to datagrams", "add -u/--datagram")
    if plan.keep_open and not plan.listen:
        _usage("-k/--keep-open needs -L/--listen", "add -L to accept streams, or drop -k")
    if max_conns_given and (not plan.listen or plan.command is None):
        _usage("--max-conns needs -L and a command", "add -L -k with -c/--exec or --sh-exec; stdio serves one "
                                                     "stream at a time")
    if plan.half_close and plan.command is not None:
        _usage("--half-close applies to stdin", "with a command, the end of its output ends the stream")
