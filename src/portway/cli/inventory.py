"""`portway tunnel list|get` and `portway client list`: the engine's live inventory over the Engine API
(§4.1), filtered on the engine (params.filters) and printed as a table, JSON or YAML."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from portway.cli.common import agent_options, client, fail, print_rows, split_list
from portway.cli.runtime import run
from portway.errors import EngineApiError, PortwayError

T = TypeVar("T")
_OUTPUT = click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table",
                       show_default=True)
_LIMIT = click.option("--limit", type=click.IntRange(1, 10_000), help="At most this many results.")
_LABEL = click.option("--label", "label", multiple=True,
                      help="key=value, or key alone for any value (repeatable; all must match).")
TUNNEL_COLUMNS = ["id", "name", "protocol", "status", "forwarding_address", "labels", "client_id"]
CLIENT_COLUMNS = ["id", "agent", "version", "os", "arch", "tunnels", "remote_address", "user_id"]


def label_filter(values: tuple[str, ...]) -> dict[str, str | None]:
    """`--label k=v` / `--label k` → the API's labels filter (None = any value)."""
    found: dict[str, str | None] = {}
    for item in split_list(values):
        key, sep, value = item.partition("=")
        if not key:
            fail(f"invalid label filter {item!r}", "use --label key=value or --label key", code=2)
        found[key] = value if sep else None
    return found


def fetch(call: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run one Engine API call; its failure is one error line (exit 1) with a hint."""
    try:
        return run(call())
    except EngineApiError as error:
        hint = "check the token (portway login)" if error.status in (401, 403) else None
        fail(str(error), hint)
    except PortwayError as error:
        fail(str(error), "check the engine address and CA file (portway doctor)")


@click.group(name="tunnel")
def tunnel_group() -> None:
    """Live tunnels on the engine.

    \b
    Examples:
      portway tunnel list
      portway tunnel list --label env=prod --protocol http -o json
      portway tunnel get 3f9c1a20be...
    """


@tunnel_group.command(name="list")
@agent_options
@click.option("--name", help="Only the tunnel with this name.")
@click.option("--protocol", type=click.Choice(["http", "tls", "tcp", "dtls", "quic"]), help="Only this protocol.")
@click.option("--status", type=click.Choice(["online", "offline"]))
@click.option("--client-id", help="Only tunnels of this client.")
@click.option("--publish/--no-publish", default=None, help="Only published (or only private) tunnels.")
@_LABEL
@_LIMIT
@_OUTPUT
@click.pass_context
def tunnel_list(ctx: click.Context, engine_addr: str | None, token: str | None, token_file: str | None,
                ca_file: str | None, insecure: bool, name: str | None, protocol: str | None, status: str | None,
                client_id: str | None, publish: bool | None, label: tuple[str, ...], limit: int | None,
                output: str) -> None:
    """List live tunnels (filters are applied by the engine).

    \b
    Examples:
      portway tunnel list --label env=prod --label team
      portway tunnel list --no-publish -o json
    """
    filters: dict[str, object] = {key: value for key, value in (
        ("name", name), ("protocol", protocol), ("status", status), ("client_id", client_id),
        ("publish", publish)) if value is not None}
    if label:
        filters["labels"] = label_filter(label)
    api = client(ctx, engine_addr, token, token_file, ca_file, insecure).api
    rows = fetch(lambda: api.tunnels(filters, limit))
    print_rows(rows, output, TUNNEL_COLUMNS)


@tunnel_group.command(name="get")
@click.argument("tunnel_id")
@agent_options
@click.option("-o", "--output", type=click.Choice(["json", "yaml", "table"]), default="json", show_default=True)
@click.pass_context
def tunnel_get(ctx: click.Context, tunnel_id: str, engine_addr: str | None, token: str | None,
               token_file: str | None, ca_file: str | None, insecure: bool, output: str) -> None:
    """Show one live tunnel by id.

    \b
    Example:
      portway tunnel get 6a8ad7c2ac18dee7fa00687e -o yaml
    """
    api = client(ctx, engine_addr, token, token_file, ca_file, insecure).api
    row = fetch(lambda: api.tunnel(tunnel_id))
    if output == "json":
        click.echo(json.dumps(row, indent=2))
    else:
        print_rows([row], output, TUNNEL_COLUMNS)


@click.group(name="client")
def client_group() -> None:
    """Agents connected to the engine.

    \b
    Examples:
      portway client list
      portway client list --agent portway -o json
    """


@client_group.command(name="list")
@agent_options
@click.option("--id", "client_id", help="Only this client.")
@click.option("--agent", help="Only clients of this agent (e.g. portway, rstream-python).")
@click.option("--version", help="Only this agent version.")
@click.option("--status", type=click.Choice(["online", "offline"]))
@_LABEL
@_LIMIT
@_OUTPUT
@click.pass_context
def client_list(ctx: click.Context, engine_addr: str | None, token: str | None, token_file: str | None,
                ca_file: str | None, insecure: bool, client_id: str | None, agent: str | None, version: str | None,
                status: str | None, label: tuple[str, ...], limit: int | None, output: str) -> None:
    """List connected agents (filters are applied by the engine).

    \b
    Examples:
      portway client list
      portway client list --agent portway --limit 10 -o json
    """
    filters: dict[str, object] = {key: value for key, value in (
        ("id", client_id), ("agent", agent), ("version", version), ("status", status)) if value is not None}
    if label:
        filters["labels"] = label_filter(label)
    api = client(ctx, engine_addr, token, token_file, ca_file, insecure).api
    rows = fetch(lambda: api.clients(filters, limit))
    print_rows(rows, output, CLIENT_COLUMNS)
