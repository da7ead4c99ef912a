"""`portway events`: follow the engine's signaling stream (§4.2) — the snapshot, then client and tunnel
events as they happen — as readable lines or JSON, until Ctrl-C or the engine ends the stream. With
`--forward-to URL` each event is also POSTed to a local application; `--webhook` signs it exactly like a
webhook delivery (§4.3), so a receiver can be developed against the real stream (one attempt, no retries)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import click
import httpx

from portway.agent.api import EngineApi
from portway.cli.common import agent_options, client, fail, split_list
from portway.cli.inventory import label_filter
from portway.cli.runtime import run, until_signal
from portway.engine.events import LIFECYCLE_EVENTS, SUMMARY_EVENT
from portway.engine.webhooks.records import DELIVERABLE_EVENTS
from portway.engine.webhooks.secret import check_secret, new_secret
from portway.engine.webhooks.signature import delivery_headers
from portway.engine.webhooks.url import check_url
from portway.errors import EngineApiError, PortwayError


def describe(event: dict[str, Any]) -> str:
    """One line for a person: time, type, and what the object is."""
    kind = event.get("type", "?")
    obj = event.get("object") or {}
    when = event.get("created_at") or ""
    if kind == "state.initial":
        return f"{when} {kind} clients={len(obj.get('clients', []))} tunnels={len(obj.get('tunnels', []))}"
    if kind.startswith("tunnel."):
        where = obj.get("forwarding_address") or (f"rstrm://{obj.get('name')}" if obj.get("name") else "")
        return f"{when} {kind} {obj.get('id')} {obj.get('name') or '-'} {obj.get('protocol') or 'private'} {where}"
    if kind.startswith("client."):
        return f"{when} {kind} {obj.get('id')} {obj.get('agent') or '-'} {obj.get('version') or ''} " \
               f"tunnels={obj.get('tunnels', 0)}"
    if kind == SUMMARY_EVENT:
        http = ((obj.get("request") or {}).get("http") or {}).get("request") or {}
        status = (((obj.get("response") or {}).get("http") or {}).get("response") or {}).get("status")
        return f"{when} {kind} {obj.get('tunnel_id') or '-'} {http.get('method', '')} {http.get('path', '')} " \
               f"{status or ''}".rstrip()
    return f"{when} {kind}"


@dataclass(frozen=True, slots=True)
class Sent:
    result: str  # the HTTP status, or what went wrong
    headers: dict[str, str]


class Forwarder:
    """POSTs events to one URL, once each; signed like webhook deliveries when asked."""

    def __init__(self, url: str, *, webhook: bool, secret: str | None, verify: bool) -> None:
        self.url = check_url(url)
        self.webhook = webhook
        self.secret = check_secret(secret) if secret else None
        if webhook and self.secret is None:
            self.secret = new_secret()
            click.echo(f"Signing with a new secret: {self.secret}", err=True)  # the user asked for signing
        self._verify = verify

    async def send(self, event: dict[str, Any]) -> Sent | None:
        kind = str(event.get("type"))
        if kind == "state.initial" or (self.webhook and kind not in DELIVERABLE_EVENTS):
            return None
        body = json.dumps(event, separators=(",", ":")).encode()
        headers = {"content-type": "application/json"}
        if self.webhook:
            assert self.secret is not None
            headers = delivery_headers(body, [self.secret], int(time.time()), event_id=str(event.get("id")),
                                       event_type=kind, webhook_id="local", delivery_id=f"dlv_{uuid.uuid4().hex}")
        try:
            async with httpx.AsyncClient(verify=self._verify, timeout=10, follow_redirects=False) as http:
                response = await http.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as error:
            return Sent(f"failed: {error or type(error).__name__}", headers)
        return Sent(str(response.status_code), headers)


@click.command()
@agent_options
@click.option("--events", "kinds", multiple=True,
              help=f"Only these event types (comma-separated or repeated): {', '.join(LIFECYCLE_EVENTS)}.")
@click.option("--transport", type=click.Choice(["sse", "websocket"]), default="sse", show_default=True)
@click.option("--tunnel-label", "tunnel_labels", multiple=True, help="Only tunnels with key=value (or key).")
@click.option("--tunnel-name", help="Only the tunnel with this name.")
@click.option("--summaries", is_flag=True, help="Also a stream.summary event for every request/connection.")
@click.option("--forward-to", "forward_to", help="Also POST each event's JSON to this http(s) URL.")
@click.option("--forward-insecure-tls", is_flag=True, help="Do not verify the --forward-to certificate.")
@click.option("--webhook", "as_webhook", is_flag=True,
              help="Forward like a webhook: only the webhook catalog's events, signed, with rstream-* headers.")
@click.option("--webhook-secret", help="whsec_... secret to sign with (default: a new one, printed on stderr).")
@click.option("--include-webhook-headers", is_flag=True, help="-o json: add the headers sent with each event.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def events(ctx: click.Context, engine_addr: str | None, token: str | None, token_file: str | None,
           ca_file: str | None, insecure: bool, kinds: tuple[str, ...], transport: str,
           tunnel_labels: tuple[str, ...], tunnel_name: str | None, summaries: bool, forward_to: str | None,
           forward_insecure_tls: bool, as_webhook: bool, webhook_secret: str | None, include_webhook_headers: bool,
           output: str) -> None:
    """Follow client and tunnel events as they happen.

    \b
    Examples:
      portway events
      portway events --events tunnel.created,tunnel.deleted -o json
      portway events --transport websocket --tunnel-label env=prod --summaries
      portway events --forward-to http://127.0.0.1:3000/hooks --webhook --webhook-secret whsec_...
    """
    forwarder = None
    if forward_to is not None:
        try:
            forwarder = Forwarder(forward_to, webhook=as_webhook, secret=webhook_secret,
                                  verify=not forward_insecure_tls)
        except ValueError as error:
            fail(str(error), "see: portway events --help", code=2)
    elif as_webhook or webhook_secret or include_webhook_headers or forward_insecure_tls:
        fail("--webhook, --webhook-secret, --include-webhook-headers and --forward-insecure-tls need --forward-to",
             code=2)
    wanted = split_list(kinds)
    unknown = sorted(set(wanted) - set(LIFECYCLE_EVENTS))
    if unknown:
        fail(f"unknown event type {unknown[0]!r}", f"choose from {', '.join(LIFECYCLE_EVENTS)}", code=2)
    params: dict[str, object] = {}
    tunnels: dict[str, object] = {}
    if tunnel_labels:
        tunnels["labels"] = label_filter(tunnel_labels)
    if tunnel_name:
        tunnels["name"] = tunnel_name
    if tunnels:
        params["tunnels"] = tunnels
    if wanted:
        params["events"] = list(wanted)
    if summaries:
        params["summaries"] = True
    api = client(ctx, engine_addr, token, token_file, ca_file, insecure).api
    run(_follow(api, params, transport, output, forwarder, include_webhook_headers))


async def _follow(api: EngineApi, params: dict[str, object], transport: str, output: str,
                  forwarder: Forwarder | None, include_headers: bool) -> None:
    async def print_all() -> None:
        async for event in api.watch(params, transport):
            sent = await forwarder.send(event) if forwarder is not None else None
            if output == "json":
                shown = event if sent is None else {**event, "forwarded": sent.result}
                if sent is not None and include_headers:
                    shown["headers"] = sent.headers
                click.echo(json.dumps(shown))
            else:
                click.echo(describe(event) + (f" -> {sent.result}" if sent is not None else ""))

    job = asyncio.ensure_future(print_all())
    stop = asyncio.ensure_future(until_signal())
    done, _ = await asyncio.wait({job, stop}, return_when=asyncio.FIRST_COMPLETED)
    for task in (job, stop):
        task.cancel()
    if job in done and not job.cancelled() and (error := job.exception()) is not None:
        if isinstance(error, EngineApiError):
            fail(str(error), "check the token (portway login)" if error.status in (401, 403) else None)
        if isinstance(error, PortwayError):
            fail(str(error), "check the engine address and CA file (portway doctor)")
        raise error
    if job in done:
        fail("the engine ended the event stream", "run it again to resume (a new snapshot comes first)")
