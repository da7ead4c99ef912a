"""`portway forward`: publish a local service through an engine and keep it published."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import click

from portway.agent import Client, Tunnel, keep_tunnel
from portway.cli.common import agent_options, client, fail, labels, split_list, target
from portway.cli.runtime import run, until_signal
from portway.wire.messages import TunnelProperties


@click.command()
@click.argument("where", required=False, metavar="[HOST:]PORT")
@agent_options
@click.option("--http", "protocol", flag_value="http", default=True, help="Publish as HTTP (default).")
@click.option("--tls", "protocol", flag_value="tls", help="Publish as TLS (SNI passthrough).")
@click.option("--tcp", "protocol", flag_value="tcp", help="Publish as raw TCP on an engine port.")
@click.option("--name", help="Tunnel name (dial key for private tunnels).")
@click.option("--publish/--no-publish", default=True, show_default=True)
@click.option("--label", "label", multiple=True, help="key=value (repeatable).")
@click.option("--host", "hostname", help="Requested hostname (<label>.t.<engine host>).")
@click.option("--port", type=click.IntRange(1, 65535), help="Requested public port (--tcp).")
@click.option("--trusted-ips", "trusted_ips", multiple=True,
              help="Only these CIDRs may connect (comma-separated or repeated).")
@click.option("--geoip", multiple=True, help="Only visitors from these ISO countries (comma-separated or repeated).")
@click.option("--token-auth", is_flag=True, help="Every HTTP request needs a valid token (--http).")
@click.option("--retry/--no-retry", default=True, show_default=True, help="Reconnect when the engine goes away.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def forward(ctx: click.Context, where: str | None, engine_addr: str | None, token: str | None,
            token_file: str | None, ca_file: str | None,
            insecure: bool, protocol: str, name: str | None, publish: bool, label: tuple[str, ...],
            hostname: str | None, port: int | None, trusted_ips: tuple[str, ...], geoip: tuple[str, ...],
            token_auth: bool, retry: bool, output: str) -> None:
    """Expose a local service ([HOST:]PORT, default 127.0.0.1:8080) through an engine."""
    agent = client(ctx, engine_addr, token, token_file, ca_file, insecure)
    spec = TunnelProperties(protocol=protocol if publish or protocol != "http" else None, name=name,
                            publish=publish, labels=labels(label), hostname=hostname, port=port,
                            trusted_ips=split_list(trusted_ips), geoip=tuple(c.upper() for c in split_list(geoip)),
                            token_auth=token_auth or None)
    run(_forward(agent, spec, target(where), retry, output))


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
        elif error is not None and state != "failed":  # a fatal error is reported once, by fail()
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
        fail(str(error), "check the engine address, token and CA file")
