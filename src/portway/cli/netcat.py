"""`portway nc`: stdin/stdout to a private tunnel (rstrm://NAME)."""

from __future__ import annotations

import asyncio
import sys

import click

from portway.agent import Client
from portway.cli.common import agent_options, client, fail
from portway.cli.runtime import run
from portway.errors import PortwayError


@click.command()
@click.argument("endpoint")
@agent_options
@click.option("--half-close/--no-half-close", default=False, show_default=True,
              help="At the end of stdin, send end-of-stream and keep reading. Off by default, as in "
                   "rstream's nc for rstrm:// targets: agents such as the official Python SDK end the whole "
                   "stream at end-of-stream, and their answer would be lost.")
@click.pass_context
def nc(ctx: click.Context, endpoint: str, engine_addr: str | None, token: str | None, token_file: str | None,
       ca_file: str | None, insecure: bool, half_close: bool) -> None:
    """Connect stdin/stdout to a private tunnel: portway nc rstrm://NAME.

    Runs until the service ends the stream (the end of stdin alone does not end it)."""
    if not endpoint.startswith("rstrm://") or len(endpoint) <= len("rstrm://"):
        fail(f"invalid endpoint {endpoint!r}", "use rstrm://NAME-OR-ID", code=2)
    agent = client(ctx, engine_addr, token, token_file, ca_file, insecure)
    run(_netcat(agent, endpoint[len("rstrm://"):], half_close))


async def _netcat(client: Client, tunnel: str, half_close: bool = False) -> None:
    try:
        stream = await client.dial(tunnel, zero_rtt=False)
    except PortwayError as error:
        fail(str(error), "is the tunnel published with --no-publish and this name?")
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)

    async def upload() -> None:
        while data := await stdin.read(65536):
            stream.write(data)
            await stream.drain()
        if half_close:
            stream.write_eof()  # end of stdin: the service sees EOF and can still answer

    up_task = asyncio.ensure_future(upload())
    out = sys.stdout.buffer
    while data := await stream.read():
        out.write(data)
        out.flush()
    up_task.cancel()
    await stream.close()
