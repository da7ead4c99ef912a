"""Root command group and the first commands: engine, up, forward, nc.

Exit codes: 0 ok, 1 runtime failure, 2 usage error. Errors are one line on stderr with a hint.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from portway import __version__
from portway.agent import Client, TLSOptions, Tunnel, keep_tunnel
from portway.cli.config import config_path, resolve
from portway.cli.config import load as load_cli_config
from portway.cli.contexts import context_group
from portway.cli.demo import start_demo_service
from portway.cli.runtime import run, setup_logging, until_signal
from portway.engine import Engine, load_config
from portway.engine.auth import mint_token
from portway.engine.state import EngineState, default_state_dir
from portway.errors import ConfigError, PortwayError
from portway.wire.messages import TunnelProperties

READY_TOKEN_TTL_S = 30 * 24 * 3600


def _fail(message: str, hint: str | None = None, code: int = 1) -> None:
    click.echo(f"error: {message}" + (f" (hint: {hint})" if hint else ""), err=True)
    sys.exit(code)


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


# ---------------------------------------------------------------- engine


def _open_engine(config_file: str | None, state_dir: str | None) -> tuple[Engine, EngineState]:
    try:
        config = load_config(config_file, os.environ)
        state = EngineState.open(Path(state_dir) if state_dir else default_state_dir(),
                                 engine_host=config.engine.host, jwt_secret=config.auth.jwt.token_jwt_secret)
    except ConfigError as error:
        _fail(str(error), "check the file and RSTREAM_ENGINE_* variables", code=2)
        raise  # unreachable; keeps type checkers informed
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
        _fail(str(error), "check the engine configuration", code=2)
    except OSError as error:
        _fail(f"cannot listen on {server.config.tls.listen_addr}: {error.strerror}",
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


def _target(value: str | None) -> tuple[str, int]:
    if not value:
        return "127.0.0.1", 8080
    host, _, port = value.rpartition(":")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        _fail(f"invalid target {value!r}", "use PORT or HOST:PORT", code=2)
    return host or "127.0.0.1", int(port)


def _labels(values: tuple[str, ...]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"invalid label {item!r}", "use --label key=value", code=2)
        labels[key] = value
    return labels


def _client(ctx: click.Context, engine_addr: str | None, token: str | None, token_file: str | None,
            ca_file: str | None, insecure: bool) -> Client:
    """An agent client from flags > environment > context (see cli/config.py)."""
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as error:
            _fail(f"cannot read token file: {error.strerror}", code=2)
    try:
        config = load_cli_config(ctx.obj["config_path"])
        where = resolve(config, ctx.obj["context"], engine=engine_addr, token=token, ca_file=ca_file,
                        insecure=insecure, environ=os.environ)
        return Client(where.engine, where.token, tls=TLSOptions(ca_file=where.ca_file, server_name=where.server_name,
                                                               insecure_skip_verify=where.insecure))
    except ConfigError as error:
        _fail(str(error), "see: portway context list", code=2)
        raise


def _agent_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--engine", "engine_addr",
                     help="Engine host:port ($RSTREAM_ENGINE, else the context's, else localhost:8443).")(f)
    f = click.option("--token", help="Token ($RSTREAM_AUTHENTICATION_TOKEN, else the context's).")(f)
    f = click.option("--token-file", type=click.Path(dir_okay=False), help="Read the token from a file.")(f)
    f = click.option("--engine-tls-ca-file", "ca_file", type=click.Path(dir_okay=False),
                     help="Trust this CA for the engine ($PORTWAY_ENGINE_TLS_CA_FILE, else the context's).")(f)
    f = click.option("--insecure-skip-verify", "insecure", is_flag=True,
                     help="Do not verify the engine certificate (diagnostics only).")(f)
    return f


@cli.command()
@click.argument("target", required=False)
@_agent_options
@click.option("--http", "protocol", flag_value="http", default=True, help="Publish as HTTP (default).")
@click.option("--tls", "protocol", flag_value="tls", help="Publish as TLS (SNI passthrough).")
@click.option("--tcp", "protocol", flag_value="tcp", help="Publish as raw TCP on an engine port.")
@click.option("--name", help="Tunnel name (dial key for private tunnels).")
@click.option("--publish/--no-publish", default=True, show_default=True)
@click.option("--label", "labels", multiple=True, help="key=value (repeatable).")
@click.option("--host", "hostname", help="Requested hostname (<label>.t.<engine host>).")
@click.option("--port", type=click.IntRange(1, 65535), help="Requested public port (--tcp).")
@click.option("--trusted-ips", "trusted_ips", multiple=True,
              help="Only these CIDRs may connect (comma-separated or repeated).")
@click.option("--geoip", multiple=True, help="Only visitors from these ISO countries (comma-separated or repeated).")
@click.option("--token-auth", is_flag=True, help="Every HTTP request needs a valid token (--http).")
@click.option("--retry/--no-retry", default=True, show_default=True, help="Reconnect when the engine goes away.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def forward(ctx: click.Context, target: str | None, engine_addr: str | None, token: str | None,
            token_file: str | None, ca_file: str | None,
            insecure: bool, protocol: str, name: str | None, publish: bool, labels: tuple[str, ...],
            hostname: str | None, port: int | None, trusted_ips: tuple[str, ...], geoip: tuple[str, ...],
            token_auth: bool, retry: bool, output: str) -> None:
    """Expose a local service ([HOST:]PORT, default 127.0.0.1:8080) through an engine."""
    client = _client(ctx, engine_addr, token, token_file, ca_file, insecure)
    spec = TunnelProperties(protocol=protocol if publish or protocol != "http" else None, name=name,
                            publish=publish, labels=_labels(labels), hostname=hostname, port=port,
                            trusted_ips=_list(trusted_ips), geoip=tuple(c.upper() for c in _list(geoip)),
                            token_auth=token_auth or None)
    run(_forward(client, spec, _target(target), retry, output))


def _list(values: tuple[str, ...]) -> tuple[str, ...]:
    """Repeated and comma-separated option values, flattened, blanks dropped."""
    return tuple(item.strip() for value in values for item in value.split(",") if item.strip())


def _reporter(output: str, target: tuple[str, int]) -> Callable[[str, Tunnel | None, BaseException | None], None]:
    def report(state: str, tunnel: Tunnel | None, error: BaseException | None) -> None:
        if output == "json":
            event: dict[str, object] = {"status": state, "forwarded": f"{target[0]}:{target[1]}"}
            if tunnel is not None:
                event |= {"tunnel_id": tunnel.id, "forwarding": tunnel.forwarding_address}
            if error is not None:
                event["error"] = str(error)
            click.echo(json.dumps(event), nl=True)
        elif tunnel is not None:
            click.echo(f"Forwarding {tunnel.forwarding_address} -> {target[0]}:{target[1]}")
        elif error is not None and state != "failed":  # a fatal error is reported once, by _fail()
            click.echo(f"{state}: {error}", err=True)
    return report


async def _forward(client: Client, spec: TunnelProperties, target: tuple[str, int], retry: bool,
                   output: str) -> None:
    job = asyncio.ensure_future(keep_tunnel(client, spec, target, on_state=_reporter(output, target), retry=retry))
    stop = asyncio.ensure_future(until_signal())
    done, _ = await asyncio.wait({job, stop}, return_when=asyncio.FIRST_COMPLETED)
    for task in (job, stop):
        task.cancel()
    if job in done and job.exception() is not None:
        error = job.exception()
        _fail(str(error), "check the engine address, token and CA file")


@cli.command()
@click.argument("target", required=False)
@click.option("--state-dir", type=click.Path(file_okay=False), help="Engine state directory.")
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False), help="Engine configuration.")
def up(target: str | None, state_dir: str | None, config_file: str | None) -> None:
    """Start an engine on embedded defaults and expose TARGET (or a built-in demo page) through it."""
    server, state = _open_engine(config_file, state_dir)
    run(_up(server, state, target))


async def _up(server: Engine, state: EngineState, target: str | None) -> None:
    await _start(server)
    _engine_banner(server, state)
    demo = None
    if target is None:
        demo, demo_port = await start_demo_service()
        where = ("127.0.0.1", demo_port)
    else:
        where = _target(target)
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


@cli.command()
@click.argument("endpoint")
@_agent_options
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
        _fail(f"invalid endpoint {endpoint!r}", "use rstrm://NAME-OR-ID", code=2)
    client = _client(ctx, engine_addr, token, token_file, ca_file, insecure)
    run(_netcat(client, endpoint[len("rstrm://"):], half_close))


async def _netcat(client: Client, tunnel: str, half_close: bool = False) -> None:
    try:
        stream = await client.dial(tunnel, zero_rtt=False)
    except PortwayError as error:
        _fail(str(error), "is the tunnel published with --no-publish and this name?")
        return
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


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="portway")
