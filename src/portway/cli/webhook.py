"""`portway webhook list|create|delete|rotate|deliveries|redeliver`: the engine's webhook endpoints over
the Engine API. A secret is printed once, by the command that made it (create, rotate): that is the only
time the engine shows it."""

from __future__ import annotations

import json
from typing import Any

import click

from portway.agent.api import EngineApi
from portway.cli.common import agent_options, client, fail, print_rows, split_list
from portway.cli.inventory import fetch
from portway.engine.webhooks.records import DELIVERABLE_EVENTS
from portway.engine.webhooks.secret import check_secret
from portway.engine.webhooks.url import check_url

WEBHOOK_COLUMNS = ["id", "url", "events", "enabled", "secret_hint", "secrets_active"]
DELIVERY_COLUMNS = ["id", "event_type", "status", "attempts", "last_status", "next_attempt_at", "event_id"]
_OUTPUT = click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)


def _api(ctx: click.Context, engine_addr: str | None, token: str | None, token_file: str | None,
         ca_file: str | None, insecure: bool) -> EngineApi:
    return client(ctx, engine_addr, token, token_file, ca_file, insecure).api


def _checked_secret(secret: str | None) -> str | None:
    if secret is None:
        return None
    try:
        return check_secret(secret)
    except ValueError as error:
        fail(f"invalid --secret: {error}", "leave it out and the engine generates one", code=2)


def _show_with_secret(row: dict[str, Any], output: str) -> None:
    if output == "json":
        click.echo(json.dumps(row, indent=2))
        return
    print_rows([row], output, WEBHOOK_COLUMNS)
    click.echo(f"Secret (shown once, keep it safe): {row['secret']}")


@click.group(name="webhook")
def webhook_group() -> None:
    """Webhook endpoints: signed POSTs of client and tunnel events.

    \b
    Examples:
      portway webhook create --url https://hooks.example.com/rstream --event tunnel.created
      portway webhook list
      portway webhook deliveries wh_01a2... -o json
      portway webhook rotate wh_01a2...
    """


@webhook_group.command(name="list")
@agent_options
@_OUTPUT
@click.pass_context
def webhook_list(ctx: click.Context, engine_addr: str | None, token: str | None, token_file: str | None,
                 ca_file: str | None, insecure: bool, output: str) -> None:
    """List endpoints (secrets are never shown here).

    \b
    Example:
      portway webhook list -o json
    """
    api = _api(ctx, engine_addr, token, token_file, ca_file, insecure)
    print_rows(fetch(api.webhooks), output, WEBHOOK_COLUMNS)


@webhook_group.command(name="create")
@agent_options
@click.option("--url", required=True, help="http(s) URL that receives the events.")
@click.option("--event", "events", multiple=True,
              help=f"Event type to send (repeatable or comma-separated; default all: {', '.join(DELIVERABLE_EVENTS)}).")
@click.option("--secret", help="Use this whsec_ secret instead of a generated one.")
@click.option("--disabled", is_flag=True, help="Create it switched off (nothing is recorded for it).")
@_OUTPUT
@click.pass_context
def webhook_create(ctx: click.Context, engine_addr: str | None, token: str | None, token_file: str | None,
                   ca_file: str | None, insecure: bool, url: str, events: tuple[str, ...], secret: str | None,
                   disabled: bool, output: str) -> None:
    """Create an endpoint and print its secret (once).

    \b
    Example:
      portway webhook create --url https://app.example.com/hooks --event tunnel.created --event tunnel.deleted
    """
    try:
        check_url(url)
    except ValueError as error:
        fail(f"invalid --url: {error}", code=2)
    kinds = split_list(events)
    unknown = sorted(set(kinds) - set(DELIVERABLE_EVENTS))
    if unknown:
        fail(f"unknown event type {unknown[0]!r}", f"choose from {', '.join(DELIVERABLE_EVENTS)}", code=2)
    body: dict[str, Any] = {"url": url, "enabled": not disabled}
    if kinds:
        body["events"] = list(dict.fromkeys(kinds))
    if (checked := _checked_secret(secret)) is not None:
        body["secret"] = checked
    api = _api(ctx, engine_addr, token, token_file, ca_file, insecure)
    _show_with_secret(fetch(lambda: api.create_webhook(body)), output)


@webhook_group.command(name="delete")
@click.argument("webhook_id")
@agent_options
@click.pass_context
def webhook_delete(ctx: click.Context, webhook_id: str, engine_addr: str | None, token: str | None,
                   token_file: str | None, ca_file: str | None, insecure: bool) -> None:
    """Delete an endpoint with its delivery history.

    \b
    Example:
      portway webhook delete wh_0123456789abcdef
    """
    api = _api(ctx, engine_addr, token, token_file, ca_file, insecure)
    fetch(lambda: api.delete_webhook(webhook_id))
    click.echo(f"Deleted {webhook_id}")


@webhook_group.command(name="rotate")
@click.argument("webhook_id")
@agent_options
@click.option("--secret", help="Use this whsec_ secret instead of a generated one.")
@click.option("--grace", type=click.FloatRange(0, 7 * 86400), metavar="SECONDS",
              help="How long the current secret keeps signing too (default: the engine's, 24 h).")
@_OUTPUT
@click.pass_context
def webhook_rotate(ctx: click.Context, webhook_id: str, engine_addr: str | None, token: str | None,
                   token_file: str | None, ca_file: str | None, insecure: bool, secret: str | None,
                   grace: float | None, output: str) -> None:
    """Give an endpoint a new secret and print it (once).

    \b
    Example:
      portway webhook rotate wh_0123456789abcdef
    """
    body: dict[str, Any] = {}
    if (checked := _checked_secret(secret)) is not None:
        body["secret"] = checked
    if grace is not None:
        body["grace_seconds"] = grace
    api = _api(ctx, engine_addr, token, token_file, ca_file, insecure)
    _show_with_secret(fetch(lambda: api.rotate_webhook(webhook_id, body)), output)


@webhook_group.command(name="deliveries")
@click.argument("webhook_id")
@agent_options
@click.option("--limit", type=click.IntRange(1, 1000), help="At most this many (newest first; default 50).")
@_OUTPUT
@click.pass_context
def webhook_deliveries(ctx: click.Context, webhook_id: str, engine_addr: str | None, token: str | None,
                       token_file: str | None, ca_file: str | None, insecure: bool, limit: int | None,
                       output: str) -> None:
    """Deliveries of an endpoint, newest first (JSON has every attempt).

    \b
    Example:
      portway webhook deliveries wh_0123456789abcdef -o json
    """
    api = _api(ctx, engine_addr, token, token_file, ca_file, insecure)
    rows = fetch(lambda: api.webhook_deliveries(webhook_id, limit))
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        attempts = row.get("attempts") or []
        row["last_status"] = (attempts[-1].get("status_code") or attempts[-1].get("error")) if attempts else None
        row["attempts"] = len(attempts)
    print_rows(rows, output, DELIVERY_COLUMNS)


@webhook_group.command(name="redeliver")
@click.argument("webhook_id")
@click.argument("delivery_id")
@agent_options
@click.pass_context
def webhook_redeliver(ctx: click.Context, webhook_id: str, delivery_id: str, engine_addr: str | None,
                      token: str | None, token_file: str | None, ca_file: str | None, insecure: bool) -> None:
    """Send a delivery's event again (also one that failed for good).

    \b
    Example:
      portway webhook redeliver wh_0123456789abcdef dlv_0123456789abcdef
    """
    api = _api(ctx, engine_addr, token, token_file, ca_file, insecure)
    redone = fetch(lambda: api.redeliver(webhook_id, delivery_id))
    click.echo(f"Redelivering as {redone['id']}")
