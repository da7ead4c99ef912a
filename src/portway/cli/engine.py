"""`portway engine [init|token]`: run the engine in the foreground, write a starting configuration, mint tokens.

`open_engine`, `start_engine` and `engine_banner` are shared with `portway up`, which runs an engine too.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from portway import __version__
from portway.cli.common import fail
from portway.cli.engineinit import init
from portway.cli.logformat import set_level
from portway.cli.runtime import run, until_signal
from portway.engine.auth import mint_token
from portway.engine.configfile import load_config
from portway.engine.state import EngineState, default_state_dir
from portway.errors import ConfigError

if TYPE_CHECKING:
    from portway.engine.server import Engine

READY_TOKEN_TTL_S = 30 * 24 * 3600


def open_engine(config_file: str | None, state_dir: str | None) -> tuple[Engine, EngineState]:
    """The configured engine (not started) and its state directory; configuration errors exit 2."""
    try:
        config = load_config(config_file, os.environ)
        state = EngineState.open(Path(state_dir) if state_dir else default_state_dir(),
                                 engine_host=config.engine.host, jwt_secret=config.auth.jwt.token_jwt_secret)
    except ConfigError as error:
        fail(str(error), "check the file and RSTREAM_ENGINE_* variables", code=2)
    from portway.engine.server import Engine  # noqa: PLC0415 - only commands that run an engine pay for it

    return Engine(config, state), state


def engine_banner(engine: Engine, state: EngineState) -> None:
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


async def start_engine(server: Engine) -> None:
    try:
        await server.start()
    except ConfigError as error:
        fail(str(error), "check the engine configuration", code=2)
    except OSError as error:
        fail(f"cannot listen on {server.config.tls.listen_addr}: {error.strerror}",
              "is another engine running? set tls.listen_addr or RSTREAM_ENGINE_TLS__LISTEN_ADDR")


@click.group(invoke_without_command=True)
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False),
              help="rstream-engine-ce style YAML (default: $RSTREAM_ENGINE_CONFIG).")
@click.option("--state-dir", type=click.Path(file_okay=False), help="Where the CA, certificate and secret live.")
@click.pass_context
def engine(ctx: click.Context, config_file: str | None, state_dir: str | None) -> None:
    """Run the engine in the foreground until SIGINT/SIGTERM.

    \b
    Examples:
      portway engine init --host edge.example.com    # write engine.yaml, create the CA
      portway engine --config engine.yaml
      RSTREAM_ENGINE_TLS__LISTEN_ADDR=0.0.0.0:443 portway engine -c engine.yaml
    """
    ctx.obj = (config_file, state_dir)
    if ctx.invoked_subcommand is not None:
        return
    server, state = open_engine(config_file, state_dir)
    if not ctx.find_root().obj.get("log_level_explicit"):  # -l/-v win over the file's engine.log_level
        set_level(server.config.engine.log_level)

    async def serve() -> None:
        await start_engine(server)
        stop = asyncio.ensure_future(until_signal())
        try:
            await asyncio.sleep(0)  # the handlers are in place before the banner tells anyone we are up
            engine_banner(server, state)
            await stop
        finally:
            stop.cancel()
            await server.stop()

    run(serve())


@engine.command("token")
@click.option("--ttl", default=3600, show_default=True, type=click.IntRange(1, 366 * 24 * 3600),
              help="Lifetime in seconds.")
@click.option("--subject", default="portway-local", show_default=True)
@click.option("--operator", is_flag=True, help="An operator token (claim role=operator): may use 'portway admin'.")
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False),
              help="Same as 'portway engine --config' (either place works).")
@click.option("--state-dir", type=click.Path(file_okay=False), help="Same as 'portway engine --state-dir'.")
@click.pass_context
def engine_token(ctx: click.Context, ttl: int, subject: str, operator: bool, config_file: str | None,
                 state_dir: str | None) -> None:
    """Print a token signed with this engine's secret (you asked for it: it is shown).

    \b
    Examples:
      portway engine token --config engine.yaml --ttl 86400 > token
      portway forward 8080 --token-file token
      portway engine token --operator --ttl 600 > admin-token   # for 'portway admin'
    """
    group_config, group_state_dir = ctx.obj
    server, state = open_engine(config_file or group_config, state_dir or group_state_dir)
    secret = server.config.auth.jwt.token_jwt_secret or state.jwt_secret
    click.echo(mint_token(secret, subject=subject, ttl_s=ttl, extra={"role": "operator"} if operator else None))


engine.add_command(init)
