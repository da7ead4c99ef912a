"""`portway login [TOKEN]` and `portway logout`: check a token against the engine (`GET /api/auth`) and
keep it in the current context, or remove it. The token is never printed."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from portway.agent.api import EngineApi
from portway.agent.options import AgentOptions, TLSOptions
from portway.cli.common import fail
from portway.cli.config import Auth, Config, Context, EngineTls, TokenAuth, TokenStorage, Transport, resolve, save
from portway.cli.config import load as load_config
from portway.cli.inventory import fetch
from portway.errors import ConfigError


def _config(ctx: click.Context) -> tuple[Path, Config]:
    path: Path = ctx.obj["config_path"]
    try:
        return path, load_config(path)
    except ConfigError as error:
        fail(str(error), "fix or move the file", code=2)


def _context_name(ctx: click.Context, config: Config) -> str | None:
    return ctx.obj["context"] or os.environ.get("RSTREAM_CONTEXT") or config.default_name


@click.command()
@click.argument("token", required=False)
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the token from standard input.")
@click.option("--token-file", type=click.Path(dir_okay=False), help="Read the token from this file.")
@click.option("--engine", "engine_addr", help="Engine host:port (else the context's, else localhost:8443).")
@click.option("--engine-tls-ca-file", "ca_file", type=click.Path(dir_okay=False, exists=True),
              help="Trust this CA for the engine (kept in the context).")
@click.option("--insecure-skip-verify", "insecure", is_flag=True, help="Do not verify the engine certificate.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def login(ctx: click.Context, token: str | None, from_stdin: bool, token_file: str | None, engine_addr: str | None,
          ca_file: str | None, insecure: bool, output: str) -> None:
    """Check TOKEN against the engine and store it in the current context (created when there is none).

    \b
    Examples:
      portway engine token | portway login --stdin --engine edge.example.com:443
      portway --context home login --token-file token
    """
    if sum(1 for given in (token, from_stdin, token_file) if given) != 1:
        fail("give the token once: as an argument, with --stdin or with --token-file", "portway login --help",
             code=2)
    if from_stdin:
        token = sys.stdin.readline().strip()
    elif token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as error:
            fail(f"cannot read token file: {error.strerror}", code=2)
    if not token:
        fail("the token is empty", code=2)
    path, config = _config(ctx)
    name = _context_name(ctx, config)
    try:
        where = resolve(config, name, engine=engine_addr, token=token, ca_file=ca_file, insecure=insecure,
                        environ={})
    except ConfigError as error:
        fail(str(error), "portway context list", code=2)
    api = EngineApi(AgentOptions(engine=where.engine, token=token, tls=TLSOptions(
        ca_file=where.ca_file, server_name=where.server_name, insecure_skip_verify=where.insecure)))
    who = fetch(api.auth)
    context = config.find(name) if name else None
    if context is None:
        context = Context(name=name or "default")
        config.contexts.append(context)
    context.engine = where.engine
    context.auth = context.auth or Auth()
    context.auth.token = TokenAuth(storage=TokenStorage(kind="inline", value=token))
    if ca_file is not None or insecure:
        context.transport = context.transport or Transport()
        context.transport.tls = context.transport.tls or EngineTls()
        if ca_file is not None:
            context.transport.tls.ca_file = str(Path(ca_file).resolve())
        context.transport.tls.insecure_skip_verify = insecure or context.transport.tls.insecure_skip_verify
    if config.default_name is None:
        config.set_default(context.name)
    try:
        save(path, config)
    except OSError as error:
        fail(f"cannot write {path}: {error.strerror}")
    if output == "json":
        click.echo(json.dumps({"context": context.name, "engine": where.engine, **who}))
    else:
        expiry = f", token expires {who['expires_at']}" if who.get("expires_at") else ""
        click.echo(f"Logged in to {where.engine} as {who['subject']} (context {context.name}{expiry})")


@click.command()
@click.pass_context
def logout(ctx: click.Context) -> None:
    """Remove the token from the current context (the engine and TLS settings stay).

    \b
    Example:
      portway logout
    """
    path, config = _config(ctx)
    name = _context_name(ctx, config)
    context = config.find(name) if name else None
    if context is None:
        fail(f"no context named {name!r}" if name else "no current context", "portway context list", code=2)
    if context.auth is None or context.auth.token is None:
        click.echo(f"Context {context.name} holds no token")
        return
    context.auth.token = None
    try:
        save(path, config)
    except OSError as error:
        fail(f"cannot write {path}: {error.strerror}")
    click.echo(f"Logged out: context {context.name} no longer holds a token")
