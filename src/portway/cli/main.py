"""Root command group and the first commands: engine, up, forward, nc.

Exit codes: 0 ok, 1 runtime failure, 2 usage error. Errors are one line on stderr with a hint.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from portway import __version__
from portway.agent import Client, TLSOptions, Tunnel, keep_tunnel
from portway.cli.admin import admin_group
from portway.cli.apply import run_command
from portway.cli.common import fail, target
from portway.cli.completion import completion
from portway.cli.config import config_path
from portway.cli.contexts import context_group
from portway.cli.demo import start_demo_service
from portway.cli.doctor import doctor
from portway.cli.engine import READY_TOKEN_TTL_S, engine, engine_banner, open_engine, start_engine
from portway.cli.events import events
from portway.cli.forward import forward
from portway.cli.inventory import client_group, tunnel_group
from portway.cli.logformat import FORMATS, LEVELS, setup_logging
from portway.cli.login import login, logout
from portway.cli.netcat import nc
from portway.cli.runtime import run, until_signal
from portway.cli.token import token_group
from portway.cli.webhook import webhook_group
from portway.engine.auth import mint_token
from portway.engine.state import EngineState
from portway.wire.messages import TunnelProperties

if TYPE_CHECKING:
    from portway.engine.server import Engine


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="portway")
@click.option("-v", "--verbose", is_flag=True, help="Same as --log-level debug.")
@click.option("-l", "--log-level", default="info", show_default=True, type=click.Choice(list(LEVELS)),
              help="Log verbosity on stderr (none: silent).")
@click.option("-f", "--log-format", default="auto", show_default=True, type=click.Choice(FORMATS),
              help="auto: text-pretty on a terminal, else text; json: one object per line.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="CLI configuration file ($PORTWAY_CONFIG; default ~/.portway/config.yaml; rstream's works too).")
@click.option("--context", "context_name", help="Use this context ($RSTREAM_CONTEXT; default: the file's default).")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, log_level: str, log_format: str, config_file: str | None,
        context_name: str | None) -> None:
    """Portway: self-hosted tunnels, wire-compatible with rstream.

    \b
    Quick start (engine + a demo service, prints the public address):
      portway up
    Expose a local port through a running engine:
      portway forward 8080 --engine localhost:8443 --token-file token --engine-tls-ca-file ca.pem
    Tunnels declared in a file, re-applied on change; debug logs as JSON lines:
      portway -v -f json run --apply tunnels.yaml --watch
    """
    explicit = verbose or ctx.get_parameter_source("log_level") is not ParameterSource.DEFAULT
    setup_logging("debug" if verbose else log_level, log_format)
    ctx.obj = {"config_path": config_path(config_file, os.environ), "context": context_name,
               "log_level_explicit": explicit}


cli.add_command(context_group)
cli.add_command(context_group, name="ctx")
cli.add_command(forward)
cli.add_command(tunnel_group)
cli.add_command(client_group)
cli.add_command(login)
cli.add_command(logout)
cli.add_command(doctor)
cli.add_command(events)
cli.add_command(token_group)
cli.add_command(webhook_group)
cli.add_command(nc)
cli.add_command(nc, name="netcat")
cli.add_command(nc, name="ncat")
cli.add_command(run_command)
cli.add_command(engine)
cli.add_command(completion)
cli.add_command(admin_group)


# ---------------------------------------------------------------- agent side


@cli.command()
@click.argument("target", required=False)
@click.option("--state-dir", type=click.Path(file_okay=False), help="Engine state directory.")
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False), help="Engine configuration.")
def up(target: str | None, state_dir: str | None, config_file: str | None) -> None:
    """Start an engine on embedded defaults and expose TARGET (or a built-in demo page) through it.

    \b
    Examples:
      portway up                 # a demo page
      portway up 3000            # your local service on port 3000
    """
    server, state = open_engine(config_file, state_dir)
    run(_up(server, state, target))


async def _up(server: Engine, state: EngineState, service: str | None) -> None:
    await start_engine(server)
    engine_banner(server, state)
    demo = None
    if service is None:
        demo, demo_port = await start_demo_service()
        where = ("127.0.0.1", demo_port)
    else:
        where = target(service)
    secret = server.config.auth.jwt.token_jwt_secret or state.jwt_secret
    client = Client(f"127.0.0.1:{server.port}", mint_token(secret, subject="portway-up", ttl_s=READY_TOKEN_TTL_S),
                    tls=TLSOptions(ca_file=str(server.cert_files.ca or state.ca_path)))
    ready = asyncio.Event()

    def report(status: str, tunnel: Tunnel | None, error: BaseException | None) -> None:
        if tunnel is not None:
            click.echo(f"Forwarding {tunnel.forwarding_address} -> {where[0]}:{where[1]}")
            click.echo(f"Try: curl --cacert {state.ca_path} {tunnel.forwarding_address}/")
            if server.config.http.serve_tunnels and server.http_port is not None:
                click.echo(f"Or in cleartext: curl http://{tunnel.properties.hostname}:{server.http_port}/")
            ready.set()
        elif error is not None:
            click.echo(f"{status}: {error}", err=True)

    job = asyncio.ensure_future(keep_tunnel(client, TunnelProperties(protocol="http"), where, on_state=report))
    try:
        stop = asyncio.ensure_future(until_signal())
        await asyncio.wait({job, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
    finally:
        job.cancel()
        with contextlib.suppress(BaseException):
            await job
        if demo is not None:
            demo.close()
        await server.stop()


def main() -> None:
    """Console-script entry point. Usage errors are one `error:` line (exit 2), like every other error."""
    try:
        code = cli.main(prog_name="portway", standalone_mode=False)
    except click.UsageError as error:
        command = error.ctx.command_path if error.ctx else "portway"
        fail(error.format_message().replace("\n", " "), f"see: {command} --help", code=2)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
