"""Root command group and the first commands: engine, up, forward, nc.

Exit codes: 0 ok, 1 runtime failure, 2 usage error. Errors are one line on stderr with a hint.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import click

from portway import __version__
from portway.agent import Client, TLSOptions, Tunnel, keep_tunnel
from portway.cli.common import fail, target
from portway.cli.config import config_path
from portway.cli.contexts import context_group
from portway.cli.demo import start_demo_service
from portway.cli.doctor import doctor
from portway.cli.forward import forward
from portway.cli.inventory import client_group, tunnel_group
from portway.cli.login import login, logout
from portway.cli.netcat import nc
from portway.cli.runtime import run, setup_logging, until_signal
from portway.cli.token import token_group
from portway.cli.webhook import webhook_group
from portway.engine import Engine, load_config
from portway.engine.auth import mint_token
from portway.engine.state import EngineState, default_state_dir
from portway.errors import ConfigError
from portway.wire.messages import TunnelProperties

READY_TOKEN_TTL_S = 30 * 24 * 3600


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="portway")
@click.option("-l", "--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]), help="Log verbosity (stderr).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="CLI configuration file ($PORTWAY_CONFIG; default ~/.portway/config.yaml; rstream's works too).")
@click.option("--context", "context_name", help="Use this context ($RSTREAM_CONTEXT; default: the file's default).")
@click.pass_context
def cli(ctx: click.Context, log_level: str, config_file: str | None, context_name: str | None) -> None:
    """Portway: self-hosted tunnels, wire-compatible with rstream.

    \b
    Quick start (engine + a demo service, prints the public address):
      portway up
    Expose a local port through a running engine:
      portway forward 8080 --engine localhost:8443 --token-file token --engine-tls-ca-file ca.pem
    """
    setup_logging(log_level)
    ctx.obj = {"config_path": config_path(config_file, os.environ), "context": context_name}


cli.add_command(context_group)
cli.add_command(context_group, name="ctx")
cli.add_command(forward)
cli.add_command(tunnel_group)
cli.add_command(client_group)
cli.add_command(login)
cli.add_command(logout)
cli.add_command(doctor)
cli.add_command(token_group)
cli.add_command(webhook_group)
cli.add_command(nc)
cli.add_command(nc, name="netcat")


# ---------------------------------------------------------------- engine


def _open_engine(config_file: str | None, state_dir: str | None) -> tuple[Engine, EngineState]:
    try:
        config = load_config(config_file, os.environ)
        state = EngineState.open(Path(state_dir) if state_dir else default_state_dir(),
                                 engine_host=config.engine.host, jwt_secret=config.auth.jwt.token_jwt_secret)
    except ConfigError as error:
        fail(str(error), "check the file and RSTREAM_ENGINE_* variables", code=2)
    return Engine(config, state), state


def _engine_banner(engine: Engine, state: EngineState) -> None:
    cfg = engine.config
    host, _ = cfg.tls.address
    click.echo(f"Portway engine {__version__} listening on {host}:{engine.port} (engine host {cfg.engine.host})")
    if cfg.http.enabled:  # worded without "listening on": scripts read the TLS port from that line
        how = "serving http tunnels in cleartext" if cfg.http.serve_tunnels else "redirecting to https"
        click.echo(f"Plain HTTP on {cfg.http.address[0]}:{engine.http_port} ({how})")
    if not cfg.certs.static.enabled:
        click.echo(f"CA certificate: {state.ca_path}")
    if cfg.auth.jwt.enabled:
        secret = cfg.auth.jwt.token_jwt_secret or state.jwt_secret
        click.echo(f"Ready token (30 days): {mint_token(secret, subject='portway-local', ttl_s=READY_TOKEN_TTL_S)}")
    else:
        click.echo("Token auth is disabled (auth.jwt.enabled=false): any agent may connect.")


async def _start(server: Engine) -> None:
    try:
        await server.start()
    except ConfigError as error:
        fail(str(error), "check the engine configuration", code=2)
    except OSError as error:
        fail(f"cannot listen on {server.config.tls.listen_addr}: {error.strerror}",
              "is another engine running? set tls.listen_addr or RSTREAM_ENGINE_TLS__LISTEN_ADDR")


@cli.group(invoke_without_command=True)
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False),
              help="rstream-engine-ce style YAML (default: $RSTREAM_ENGINE_CONFIG).")
@click.option("--state-dir", type=click.Path(file_okay=False), help="Where the CA, certificate and secret live.")
@click.pass_context
def engine(ctx: click.Context, config_file: str | None, state_dir: str | None) -> None:
    """Run the engine in the foreground until SIGINT/SIGTERM."""
    ctx.obj = (config_file, state_dir)
    if ctx.invoked_subcommand is not None:
        return
    server, state = _open_engine(config_file, state_dir)

    async def serve() -> None:
        await _start(server)
        _engine_banner(server, state)
        try:
            await until_signal()
        finally:
            await server.stop()

    run(serve())


@engine.command("token")
@click.option("--ttl", default=3600, show_default=True, type=click.IntRange(1, 366 * 24 * 3600),
              help="Lifetime in seconds.")
@click.option("--subject", default="portway-local", show_default=True)
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False),
              help="Same as 'portway engine --config' (either place works).")
@click.option("--state-dir", type=click.Path(file_okay=False), help="Same as 'portway engine --state-dir'.")
@click.pass_context
def engine_token(ctx: click.Context, ttl: int, subject: str, config_file: str | None, state_dir: str | None) -> None:
    """Print a token signed with this engine's secret (you asked for it: it is shown)."""
    group_config, group_state_dir = ctx.obj
    server, state = _open_engine(config_file or group_config, state_dir or group_state_dir)
    secret = server.config.auth.jwt.token_jwt_secret or state.jwt_secret
    click.echo(mint_token(secret, subject=subject, ttl_s=ttl))


# ---------------------------------------------------------------- agent side


@cli.command()
@click.argument("target", required=False)
@click.option("--state-dir", type=click.Path(file_okay=False), help="Engine state directory.")
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False), help="Engine configuration.")
def up(target: str | None, state_dir: str | None, config_file: str | None) -> None:
    """Start an engine on embedded defaults and expose TARGET (or a built-in demo page) through it."""
    server, state = _open_engine(config_file, state_dir)
    run(_up(server, state, target))


async def _up(server: Engine, state: EngineState, service: str | None) -> None:
    await _start(server)
    _engine_banner(server, state)
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
    """Console-script entry point."""
    cli(prog_name="portway")
