"""`portway context list|get|use|create|update|delete` (alias `ctx`): named engines with their token and
TLS trust, in the configuration file (see config.py). Tokens are never printed: list and get show how a
token is stored, not its value."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from portway.cli.common import fail, print_rows
from portway.cli.config import Auth, Config, Context, EngineTls, TokenAuth, TokenStorage, Transport, load, save
from portway.errors import ConfigError


def _path(ctx: click.Context) -> Path:
    path = ctx.obj["config_path"]
    assert isinstance(path, Path)
    return path


def _load(ctx: click.Context) -> Config:
    try:
        return load(_path(ctx))
    except ConfigError as error:
        fail(str(error), "fix or move the file", code=2)


def _save(ctx: click.Context, config: Config) -> None:
    try:
        save(_path(ctx), config)
    except OSError as error:
        fail(f"cannot write {_path(ctx)}: {error.strerror}")


def _token_source(context: Context) -> str:
    token = context.auth.token if context.auth else None
    if token is None:
        return "-"
    if token.storage is not None and token.storage.value:
        return token.storage.kind
    return f"file {token.file}" if token.file else "-"


def _row(context: Context, default: str | None) -> dict[str, Any]:
    tls = context.transport.tls if context.transport and context.transport.tls else EngineTls()
    return {"name": context.name, "default": context.name == default, "engine": context.engine,
            "token": _token_source(context), "ca_file": tls.ca_file, "insecure_skip_verify": tls.insecure_skip_verify}


def _print(rows: list[dict[str, Any]], output: str) -> None:
    print_rows([{**row, "default": "*" if row["default"] else ""} if output == "table" else row for row in rows],
               output, ["name", "default", "engine", "token", "ca_file"])


_OUTPUT = click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table",
                       show_default=True)


@click.group(name="context")
def context_group() -> None:
    """Named engines (engine address, token, TLS trust) in the configuration file.

    \b
    Examples:
      portway context create home --engine edge.example.com:443 --token-file token --default
      portway context list
      portway --context home forward 8080
    """


@context_group.command(name="list")
@_OUTPUT
@click.pass_context
def list_contexts(ctx: click.Context, output: str) -> None:
    """Every context; the default one is marked.

    \b
    Examples:
      portway context list
      portway ctx list -o json
    """
    config = _load(ctx)
    _print([_row(c, config.default_name) for c in config.contexts], output)


@context_group.command(name="get")
@click.argument("name", required=False)
@_OUTPUT
@click.pass_context
def get_context(ctx: click.Context, name: str | None, output: str) -> None:
    """One context (the default one without NAME).

    \b
    Examples:
      portway context get
      portway context get home -o yaml
    """
    config = _load(ctx)
    name = name or config.default_name
    context = config.find(name) if name else None
    if context is None:
        fail(f"no context named {name!r}" if name else "no default context", "portway context list", code=2)
    _print([_row(context, config.default_name)], output)


@context_group.command(name="use")
@click.argument("name")
@click.pass_context
def use_context(ctx: click.Context, name: str) -> None:
    """Make NAME the default context.

    \b
    Example:
      portway context use home
    """
    config = _load(ctx)
    if config.find(name) is None:
        fail(f"no context named {name!r}", "portway context list", code=2)
    config.set_default(name)
    _save(ctx, config)
    click.echo(f"Default context: {name}")


def _settings(f: Any) -> Any:
    f = click.option("--default", "make_default", is_flag=True, help="Also make it the default context.")(f)
    f = click.option("--insecure-skip-verify/--verify", "insecure", default=None,
                     help="Do not verify the engine certificate (diagnostics only).")(f)
    f = click.option("--engine-tls-server-name", "server_name", help="Expected name in the engine certificate.")(f)
    f = click.option("--engine-tls-ca-file", "ca_file", type=click.Path(dir_okay=False),
                     help="Trust this CA for the engine.")(f)
    f = click.option("--token-file", type=click.Path(dir_okay=False), help="Read the token from this file on use.")(f)
    f = click.option("--token-stdin", is_flag=True, help="Read the token from standard input.")(f)
    f = click.option("--token", help="Store this token inline (prefer --token-stdin: shells keep history).")(f)
    f = click.option("--engine", "engine", help="Engine host:port.")(f)
    return f


def _apply(context: Context, engine: str | None, token: str | None, token_stdin: bool, token_file: str | None,
           ca_file: str | None, server_name: str | None, insecure: bool | None) -> None:
    sources = sum(1 for s in (token, token_stdin, token_file) if s)
    if sources > 1:
        fail("give one of --token, --token-stdin and --token-file", code=2)
    if token_stdin:
        token = sys.stdin.readline().strip()
        if not token:
            fail("no token on standard input", code=2)
    if engine is not None:
        context.engine = engine
    if token or token_file:
        context.auth = context.auth or Auth()
        context.auth.token = TokenAuth(storage=TokenStorage(kind="inline", value=token)) if token else \
            TokenAuth(file=str(Path(token_file).expanduser().resolve()) if token_file else None)
    if ca_file is not None or server_name is not None or insecure is not None:
        context.transport = context.transport or Transport()
        tls = context.transport.tls or EngineTls()
        if ca_file is not None:
            tls.ca_file = str(Path(ca_file).expanduser().resolve())
        if server_name is not None:
            tls.server_name = server_name
        if insecure is not None:
            tls.insecure_skip_verify = insecure
        context.transport.tls = tls


@context_group.command(name="create")
@click.argument("name")
@_settings
@click.pass_context
def create_context(ctx: click.Context, name: str, engine: str | None, token: str | None, token_stdin: bool,
                   token_file: str | None, ca_file: str | None, server_name: str | None, insecure: bool | None,
                   make_default: bool) -> None:
    """Add a context (the first one becomes the default).

    \b
    Examples:
      portway context create home --engine edge.example.com:443 --token-file token
      portway context create lab --engine 127.0.0.1:8443 --engine-tls-ca-file ca.pem --token-stdin < token
    """
    config = _load(ctx)
    if config.find(name) is not None:
        fail(f"a context named {name!r} exists", f"portway context update {name} ...", code=2)
    context = Context(name=name)
    _apply(context, engine, token, token_stdin, token_file, ca_file, server_name, insecure)
    config.contexts.append(context)
    if make_default or config.default_name is None:
        config.set_default(name)
    _save(ctx, config)
    click.echo(f"Context {name} created in {_path(ctx)}")


@context_group.command(name="update")
@click.argument("name")
@_settings
@click.pass_context
def update_context(ctx: click.Context, name: str, engine: str | None, token: str | None, token_stdin: bool,
                   token_file: str | None, ca_file: str | None, server_name: str | None, insecure: bool | None,
                   make_default: bool) -> None:
    """Change a context's settings (the others stay as they are).

    \b
    Example:
      portway context update home --engine edge2.example.com:443
    """
    config = _load(ctx)
    context = config.find(name)
    if context is None:
        fail(f"no context named {name!r}", f"portway context create {name} ...", code=2)
    _apply(context, engine, token, token_stdin, token_file, ca_file, server_name, insecure)
    if make_default:
        config.set_default(name)
    _save(ctx, config)
    click.echo(f"Context {name} updated")


@context_group.command(name="delete")
@click.argument("name")
@click.pass_context
def delete_context(ctx: click.Context, name: str) -> None:
    """Remove a context (and its stored token).

    \b
    Example:
      portway context delete lab
    """
    config = _load(ctx)
    if config.find(name) is None:
        fail(f"no context named {name!r}", "portway context list", code=2)
    config.contexts = [c for c in config.contexts if c.name != name]
    if config.default_name == name and config.defaults is not None:
        config.defaults.context = None
    _save(ctx, config)
    click.echo(f"Context {name} deleted")
