"""`portway engine init`: a commented engine configuration and a ready state directory, in one step.

The file lists every key the engine reads with the value it will use (`describe_config`), so an operator
edits a value instead of looking up a key name; it is checked to load back before it is written. The CA,
server certificate and token secret are created by the same `EngineState.open` the engine uses at start.
"""

from __future__ import annotations

import os
from pathlib import Path

import click
import yaml

from portway.cli.common import fail
from portway.engine.configfile import CONFIG_ENV, describe_config, parse_config
from portway.engine.state import EngineState, default_state_dir
from portway.errors import ConfigError
from portway.files import write_atomic

DEFAULT_CONFIG = "engine.yaml"


def render(host: str | None, state_dir: Path, config_path: Path) -> str:
    """The configuration text for `host` (defaults otherwise); raises ConfigError for an invalid host."""
    config = parse_config({"engine": {"host": host}} if host else {}, source="--host")
    return describe_config(config, (
        "Written by `portway engine init`; every key is shown with the value the engine uses.",
        f"State (local CA, server certificate, token secret): {state_dir}",
        f"Start: portway engine --config {config_path} --state-dir {state_dir}",
        "Publish DNS: <engine.host> and *.t.<engine.host> pointing at this machine.",
    )) + "\n"


@click.command("init")
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False),
              help=f"File to write (default: ${CONFIG_ENV}, else ./{DEFAULT_CONFIG}).")
@click.option("--state-dir", type=click.Path(file_okay=False), help="Where to create the CA, certificate and secret.")
@click.option("--host", help="Public DNS name (or IP) of the engine (engine.host; default localhost).")
@click.option("--force", is_flag=True, help="Overwrite an existing configuration file (the CA is always kept).")
@click.pass_context
def init(ctx: click.Context, config_file: str | None, state_dir: str | None, host: str | None, force: bool) -> None:
    """Write a commented engine configuration and create the local CA, certificate and token secret.

    \b
    Examples:
      portway engine init
      portway engine init --host edge.example.com --config /etc/portway/engine.yaml --state-dir /var/lib/portway
      portway engine --config /etc/portway/engine.yaml --state-dir /var/lib/portway
    """
    group_config, group_state_dir = ctx.obj or (None, None)
    path = Path(config_file or group_config or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    state = Path(state_dir or group_state_dir or default_state_dir())
    if path.exists() and not force:
        fail(f"{path} already exists", "use --force to overwrite it", code=2)
    try:
        text = render(host, state.absolute(), path.absolute())
        config = parse_config(yaml.safe_load(text), source=str(path))  # it loads back before it is written
        opened = EngineState.open(state, engine_host=config.engine.host,
                                  jwt_secret=config.auth.jwt.token_jwt_secret)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text.encode(), 0o600)  # operators put secrets here (token_jwt_secret, bearer_token)
    except ConfigError as error:
        fail(str(error), "check --host and --state-dir", code=2)
    except OSError as error:
        fail(f"cannot write {path}: {error.strerror}")
    click.echo(f"Wrote {path}")
    click.echo(f"CA certificate: {opened.ca_path} (give it to agents: --engine-tls-ca-file)")
    click.echo(f"Start: portway engine --config {path} --state-dir {state}")
