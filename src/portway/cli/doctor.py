"""`portway doctor`: walk the path from the configuration to a working engine, one check at a time —
config, token, DNS, TCP, TLS trust, the agent protocol, the Engine API — each a pass/fail line with a hint.
A failed check skips the ones that depend on it, so the first failure is the one to fix."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import ssl
import time
from dataclasses import asdict, dataclass
from typing import Any

import click
import jwt

from portway.agent import Client, TLSOptions
from portway.agent.options import AgentOptions, split_engine, ssl_context
from portway.cli.config import Connection, resolve
from portway.cli.config import load as load_config
from portway.cli.runtime import run
from portway.errors import ConfigError, EngineApiError, PortwayError
from portway.wire.codes import PROTOCOL_VERSION

STEP_TIMEOUT_S = 5.0


@dataclass(slots=True)
class Check:
    name: str
    status: str  # pass, fail, warn or skip
    detail: str
    hint: str | None = None


class Doctor:
    """Runs the checks in order; `checks` is the report."""

    def __init__(self) -> None:
        self.checks: list[Check] = []

    def add(self, name: str, status: str, detail: str, hint: str | None = None) -> bool:
        self.checks.append(Check(name, status, detail, hint))
        return status in ("pass", "warn")

    def skip(self, *names: str) -> None:
        for name in names:
            self.add(name, "skip", "an earlier check failed")

    async def run(self, ctx: click.Context, engine: str | None, token: str | None, ca_file: str | None,
                  insecure: bool) -> None:
        later = ("token", "dns", "tcp", "tls", "engine", "api")
        where = self._config(ctx, engine, token, ca_file, insecure)
        if where is None:
            return self.skip(*later)
        self._token(where.token)
        try:
            host, port = split_engine(where.engine)
        except ConfigError as error:
            self.add("dns", "fail", str(error), "set --engine host:port or the context's engine")
            return self.skip(*later[2:])
        if not await self._dns(host, port):
            return self.skip(*later[2:])
        if not await self._tcp(host, port):
            return self.skip(*later[3:])
        options = AgentOptions(engine=where.engine, token=where.token, tls=TLSOptions(
            ca_file=where.ca_file, server_name=where.server_name, insecure_skip_verify=where.insecure))
        if not await self._tls(host, port, options):
            return self.skip(*later[4:])
        await self._engine(options)
        await self._api(options)
        return None

    def _config(self, ctx: click.Context, engine: str | None, token: str | None, ca_file: str | None,
                insecure: bool) -> Connection | None:
        path = ctx.obj["config_path"]
        try:
            config = load_config(path)
            where = resolve(config, ctx.obj["context"], engine=engine, token=token, ca_file=ca_file,
                            insecure=insecure, environ=os.environ)
        except ConfigError as error:
            self.add("config", "fail", str(error), "fix the file, or pick another with --config")
            return None
        context = f"context {where.context}" if where.context else "no context"
        self.add("config", "pass", f"{path} ({context}; engine {where.engine})")
        return where

    def _token(self, token: str | None) -> None:
        if not token:
            self.add("token", "warn", "no token", "portway login TOKEN (engines with auth.jwt.enabled need one)")
            return
        if token.count(".") != 2:
            self.add("token", "warn", "not a JWT: its expiry cannot be checked here")
            return
        try:
            claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            self.add("token", "fail", "the token is not a readable JWT", "portway login with a fresh token")
            return
        exp = claims.get("exp")
        if not isinstance(exp, int | float):
            self.add("token", "pass", "a JWT without expiry")
        elif exp <= time.time():
            self.add("token", "fail", f"expired {int(time.time() - exp)} s ago", "portway login with a fresh token")
        else:
            left = int(exp - time.time())
            self.add("token", "pass" if left > 300 else "warn", f"expires in {_duration(left)}",
                     None if left > 300 else "it expires soon: portway token create, or log in again")

    async def _dns(self, host: str, port: int) -> bool:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), STEP_TIMEOUT_S)
        except (OSError, TimeoutError) as error:
            return self.add("dns", "fail", f"cannot resolve {host}: {_reason(error)}", "check the engine address")
        addresses = sorted({str(info[4][0]) for info in infos})
        return self.add("dns", "pass", f"{host} → {', '.join(addresses[:4])}")

    async def _tcp(self, host: str, port: int) -> bool:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), STEP_TIMEOUT_S)
        except (OSError, TimeoutError) as error:
            return self.add("tcp", "fail", f"cannot connect to {host}:{port}: {_reason(error)}",
                            "is the engine running, and the port open?")
        await _close(writer)
        return self.add("tcp", "pass", f"connected to {host}:{port}")

    async def _tls(self, host: str, port: int, options: AgentOptions) -> bool:
        context = ssl_context(options.tls)
        name = options.tls.server_name or host
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=context, server_hostname=name),
                                               STEP_TIMEOUT_S)
        except ssl.SSLCertVerificationError as error:
            return self.add("tls", "fail", f"the engine certificate is not trusted: {error.verify_message}",
                            "pass --engine-tls-ca-file CA.pem (the engine prints its CA path)")
        except (OSError, TimeoutError) as error:
            return self.add("tls", "fail", f"TLS handshake failed: {_reason(error)}",
                            "is this a Portway/rstream engine?")
        tls = writer.get_extra_info("ssl_object")
        detail = f"{tls.version() if tls else 'TLS'}, certificate valid for {name}"
        await _close(writer)
        if options.tls.insecure_skip_verify:
            return self.add("tls", "warn", f"{detail} (not verified: --insecure-skip-verify)",
                            "trust the engine's CA instead of skipping verification")
        return self.add("tls", "pass", detail)

    async def _engine(self, options: AgentOptions) -> bool:
        client = Client(options.engine, options.token, tls=options.tls, connect_timeout_s=STEP_TIMEOUT_S,
                        operation_timeout_s=STEP_TIMEOUT_S)
        try:
            control = await asyncio.wait_for(client.connect(), STEP_TIMEOUT_S * 2)
        except (PortwayError, OSError, TimeoutError) as error:
            return self.add("engine", "fail", f"control channel refused: {_reason(error)}",
                            "check the token (portway login)")
        server = control.server
        await control.close()
        name = f"{server.agent} {server.version}" if server else "engine"
        return self.add("engine", "pass", f"{name} accepted agent protocol {PROTOCOL_VERSION}")

    async def _api(self, options: AgentOptions) -> bool:
        try:
            who = await asyncio.wait_for(Client(options.engine, options.token, tls=options.tls).api.auth(),
                                         STEP_TIMEOUT_S * 2)
        except EngineApiError as error:
            return self.add("api", "fail", str(error), "check the token (portway login)")
        except (PortwayError, TimeoutError) as error:
            return self.add("api", "fail", _reason(error), "the engine does not serve its API on this address")
        return self.add("api", "pass", f"Engine API: authenticated as {who.get('subject')}")


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), STEP_TIMEOUT_S)


def _reason(error: BaseException) -> str:
    return str(error) or type(error).__name__


def _duration(seconds: int) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds // 86400} days"
    if seconds >= 7200:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min" if seconds >= 120 else f"{seconds} s"


@click.command()
@click.option("--engine", "engine_addr", help="Engine host:port (else environment, then the context).")
@click.option("--token", help="Token to check (else environment, then the context).")
@click.option("--engine-tls-ca-file", "ca_file", type=click.Path(dir_okay=False), help="Trust this CA.")
@click.option("--insecure-skip-verify", "insecure", is_flag=True, help="Do not verify the engine certificate.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def doctor(ctx: click.Context, engine_addr: str | None, token: str | None, ca_file: str | None, insecure: bool,
           output: str) -> None:
    """Check the configuration, token, DNS, TLS trust and the engine; exit 1 if a check fails.

    \b
    Examples:
      portway doctor
      portway --context home doctor -o json
    """
    report = Doctor()
    run(report.run(ctx, engine_addr, token, ca_file, insecure))
    ok = all(check.status != "fail" for check in report.checks)
    if output == "json":
        click.echo(json.dumps({"ok": ok, "checks": [asdict(check) for check in report.checks]}, indent=2))
    else:
        for check in report.checks:
            hint = f" (hint: {check.hint})" if check.hint else ""
            click.echo(f"{check.status.upper():4}  {check.name:<6}  {check.detail}{hint}")
    if not ok:
        ctx.exit(1)
