"""What every agent-side command shares: one-line errors with exit codes, target/label parsing, and the
engine/token/TLS flags resolved flags > environment > context (config.py)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click
import yaml

from portway.agent import Client, TLSOptions
from portway.cli.config import Connection, resolve
from portway.cli.config import load as load_cli_config
from portway.errors import ConfigError


def print_rows(rows: list[dict[str, Any]], output: str, columns: list[str]) -> None:
    """Rows as an aligned table (the given columns; `-` for empty), JSON or YAML (every field)."""
    if output == "json":
        click.echo(json.dumps(rows, indent=2, default=str))
    elif output == "yaml":
        click.echo(yaml.safe_dump(rows, sort_keys=False).rstrip())
    else:
        cells = [[_cell(row.get(column)) for column in columns] for row in rows]
        widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
        click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
        for row in cells:
            click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: object) -> str:
    if value is None or value in ("", {}, []):
        return "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    if value is True:
        return "yes"
    return "no" if value is False else str(value)


def fail(message: str, hint: str | None = None, code: int = 1) -> NoReturn:
    """Print one `error: ...` line (with a hint) on stderr and exit: 1 runtime failure, 2 usage error."""
    click.echo(f"error: {message}" + (f" (hint: {hint})" if hint else ""), err=True)
    sys.exit(code)


def target(value: str | None) -> tuple[str, int]:
    """`[HOST:]PORT` (default 127.0.0.1:8080) as (host, port)."""
    if not value:
        return "127.0.0.1", 8080
    host, _, port = value.rpartition(":")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        fail(f"invalid target {value!r}", "use PORT or HOST:PORT", code=2)
    return host.strip("[]") or "127.0.0.1", int(port)


def labels(values: tuple[str, ...]) -> dict[str, str]:
    """Repeated `key=value` options as a dict."""
    found: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"invalid label {item!r}", "use --label key=value", code=2)
        found[key] = value
    return found


def split_list(values: tuple[str, ...]) -> tuple[str, ...]:
    """Repeated and comma-separated option values, flattened, blanks dropped."""
    return tuple(item.strip() for value in values for item in value.split(",") if item.strip())


def where(ctx: click.Context, engine_addr: str | None, token: str | None, token_file: str | None,
          ca_file: str | None, insecure: bool) -> Connection:
    """Engine address, token and TLS trust from flags > environment > context."""
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as error:
            fail(f"cannot read token file: {error.strerror}", code=2)
    try:
        config = load_cli_config(ctx.obj["config_path"])
        return resolve(config, ctx.obj["context"], engine=engine_addr, token=token, ca_file=ca_file,
                       insecure=insecure, environ=os.environ)
    except ConfigError as error:
        fail(str(error), "see: portway context list", code=2)


def client(ctx: click.Context, engine_addr: str | None, token: str | None, token_file: str | None,
           ca_file: str | None, insecure: bool) -> Client:
    """An agent client from flags > environment > context."""
    found = where(ctx, engine_addr, token, token_file, ca_file, insecure)
    return Client(found.engine, found.token, tls=TLSOptions(ca_file=found.ca_file, server_name=found.server_name,
                                                            insecure_skip_verify=found.insecure))


def agent_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--engine, --token, --token-file, --engine-tls-ca-file, --insecure-skip-verify."""
    f = click.option("--engine", "engine_addr",
                     help="Engine host:port ($RSTREAM_ENGINE, else the context's, else localhost:8443).")(f)
    f = click.option("--token", help="Token ($RSTREAM_AUTHENTICATION_TOKEN, else the context's).")(f)
    f = click.option("--token-file", type=click.Path(dir_okay=False), help="Read the token from a file.")(f)
    f = click.option("--engine-tls-ca-file", "ca_file", type=click.Path(dir_okay=False),
                     help="Trust this CA for the engine ($PORTWAY_ENGINE_TLS_CA_FILE, else the context's).")(f)
    f = click.option("--insecure-skip-verify", "insecure", is_flag=True,
                     help="Do not verify the engine certificate (diagnostics only).")(f)
    return f
