"""`portway forward`: publish a local service through an engine and keep it published."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable

import click

from portway.agent import Backoff, Client, keep_tunnel
from portway.agent.reconnect import StateCallback
from portway.cli.common import agent_options, client, fail, labels, split_list, target
from portway.cli.forwardout import errors_only, json_states, plain_lines
from portway.cli.forwardspec import ForwardFlags, UsageProblem, build_spec
from portway.cli.forwardstatus import ForwardStatus
from portway.cli.runtime import run, until_signal
from portway.wire.messages import TunnelProperties

EXAMPLES = """
\b
Examples:
  portway forward 8080                                 # https://<generated>.t.<engine host> -> 127.0.0.1:8080
  portway forward 5432 --tcp                           # tcp://<engine>:<port>
  portway forward 22 --no-publish --name ssh           # private: reached by name (portway nc rstrm://ssh)
  portway forward 8080 --token-auth --trusted-ips 10.0.0.0/8
  portway forward 8443 --upstream-tls                  # the local service speaks HTTPS
  portway forward 50051 --http-version h2c             # the local service speaks HTTP/2 in cleartext
  portway forward 9000 --tls --tls-mode terminated --tls-alpn myproto --mtls --mtls-cacert-file ca.pem
  portway forward 5353 --datagram --no-publish --name dns   # UDP, reached by name
  portway forward 8080 -o json | jq .status            # one JSON object per state change
"""


def _one_of(*values: str, hint: str) -> Callable[[click.Context, click.Parameter, str | None], str | None]:
    """A choice checked into one `error:` line (click's own message spans several)."""
    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is not None and value not in values:
            fail(f"invalid {param.opts[-1]} {value!r}", hint, code=2)
        return value
    return check


def _positive(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or not 1 <= int(value) <= (65535 if param.name == "port" else 3_600_000):
        fail(f"invalid {param.opts[-1]} {value!r}",
             "use a port 1-65535" if param.name == "port" else "use milliseconds, e.g. 5000", code=2)
    return int(value)


@click.command(epilog=EXAMPLES)
@click.argument("where", required=False, metavar="[HOST:]PORT")
@agent_options
@click.option("--http", "protocol", flag_value="http", default=True, help="Publish as HTTP (default).")
@click.option("--tls", "protocol", flag_value="tls", help="Publish as TLS (SNI passthrough unless --tls-mode).")
@click.option("--tcp", "protocol", flag_value="tcp", help="Publish as raw TCP on an engine port.")
@click.option("--bytestream/--datagram", "bytestream", default=None,
              help="Tunnel type; --datagram relays UDP packets (private tunnels on this engine).")
@click.option("--name", help="Tunnel name (dial key for private tunnels).")
@click.option("--publish/--no-publish", default=True, show_default=True)
@click.option("--label", "label", multiple=True, help="key=value (repeatable).")
@click.option("--host", "hostname", help="Requested hostname (<label>.t.<engine host>).")
@click.option("--port", callback=_positive, help="Requested public port (--tcp).")
@click.option("--trusted-ips", "trusted_ips", multiple=True,
              help="Only these CIDRs may connect (comma-separated or repeated).")
@click.option("--geoip", multiple=True, help="Only visitors from these ISO countries (comma-separated or repeated).")
@click.option("--token-auth", is_flag=True, help="Every HTTP request needs a valid token (--http).")
@click.option("--tls-mode", callback=_one_of("passthrough", "terminated", hint="use passthrough or terminated"),
              help="--tls: passthrough (SNI routing, default) or terminated (the engine ends TLS).")
@click.option("--tls-min-version", callback=_one_of("tls1.2", "tls1.3", hint="use tls1.2 or tls1.3"),
              help="Oldest TLS version visitors may use (--http, or --tls --tls-mode terminated).")
@click.option("--tls-alpn", "tls_alpn", multiple=True,
              help="ALPN protocols offered to visitors, in order (--tls --tls-mode terminated; comma or repeat).")
@click.option("--tls-ciphers", multiple=True,
              help="TLS 1.2 cipher suites allowed, OpenSSL or IANA names (comma or repeat).")
@click.option("--mtls", is_flag=True, help="Visitors must present a client certificate (needs --mtls-cacert-file).")
@click.option("--mtls-cacert-file", type=click.Path(dir_okay=False),
              help="PEM CA that issues visitor certificates (sent to the engine with the tunnel).")
@click.option("--http-version", help="Upstream protocol: http/1.1 (default) or h2c.")
@click.option("--upstream-tls", is_flag=True, help="The engine speaks TLS to the local service (self-signed is fine).")
@click.option("--retry/--no-retry", default=True, show_default=True, help="Reconnect when the engine goes away.")
@click.option("--retry-interval", callback=_positive, metavar="MS",
              help="First reconnect delay in milliseconds (then doubling, jittered, up to 30 s).")
@click.option("-o", "--output", default="text", show_default=True,
              callback=_one_of("text", "json", "none", hint="use text, json or none"),
              help="text (a live panel on a terminal), json (one object per state change), none.")
@click.pass_context
def forward(ctx: click.Context, where: str | None, engine_addr: str | None, token: str | None,
            token_file: str | None, ca_file: str | None, insecure: bool, protocol: str, bytestream: bool | None,
            name: str | None, publish: bool, label: tuple[str, ...], hostname: str | None, port: int | None,
            trusted_ips: tuple[str, ...], geoip: tuple[str, ...], token_auth: bool, tls_mode: str | None,
            tls_min_version: str | None, tls_alpn: tuple[str, ...], tls_ciphers: tuple[str, ...], mtls: bool,
            mtls_cacert_file: str | None, http_version: str | None, upstream_tls: bool, retry: bool,
            retry_interval: int | None, output: str) -> None:
    """Expose a local service ([HOST:]PORT, default 127.0.0.1:8080) through an engine."""
    flags = ForwardFlags(
        protocol=protocol, publish=publish, tunnel_type=None if bytestream is None else
        ("bytestream" if bytestream else "datagram"), name=name, labels=tuple(labels(label).items()),
        hostname=hostname, port=port, trusted_ips=split_list(trusted_ips), geoip=split_list(geoip),
        token_auth=token_auth, tls_mode=tls_mode, tls_min_version=tls_min_version, tls_alpns=split_list(tls_alpn),
        tls_ciphers=split_list(tls_ciphers), mtls=mtls, mtls_cacert_file=mtls_cacert_file,
        http_version=http_version, upstream_tls=upstream_tls)
    try:
        spec = build_spec(flags)
    except UsageProblem as problem:
        fail(str(problem), problem.hint, code=2)
    where_to = target(where)
    agent = client(ctx, engine_addr, token, token_file, ca_file, insecure)
    backoff = Backoff(initial_s=retry_interval / 1000) if retry_interval else Backoff()
    run(_forward(agent, spec, where_to, retry, backoff, output))


async def _forward(client: Client, spec: TunnelProperties, target: tuple[str, int], retry: bool, backoff: Backoff,
                   output: str) -> None:
    status = ForwardStatus(target)
    panel = output == "text" and sys.stdout.isatty()
    lines = {"json": json_states, "none": errors_only}.get(output, plain_lines)
    report: StateCallback = status.on_state if panel else lines(target)
    job = asyncio.ensure_future(keep_tunnel(client, spec, target, on_state=report, retry=retry, backoff=backoff,
                                            observer=status if panel else None))
    stop = asyncio.ensure_future(until_signal())
    async with contextlib.AsyncExitStack() as stack:
        if panel:
            from portway.cli.status import live_panel  # noqa: PLC0415 - rich loads only for the panel

            await stack.enter_async_context(live_panel(status))
        done, _ = await asyncio.wait({job, stop}, return_when=asyncio.FIRST_COMPLETED)
        for task in (job, stop):
            task.cancel()
    if job in done and job.exception() is not None:
        fail(str(job.exception()), "check the engine address, token and CA file")
