"""`portway events`: follow the engine's signaling stream (§4.2) — the snapshot, then client and tunnel
events as they happen — as readable lines or JSON, until Ctrl-C or the engine ends the stream."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from portway.agent.api import EngineApi
from portway.cli.common import agent_options, client, fail, split_list
from portway.cli.inventory import label_filter
from portway.cli.runtime import run, until_signal
from portway.engine.events import LIFECYCLE_EVENTS, SUMMARY_EVENT
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


@click.command()
@agent_options
@click.option("--events", "kinds", multiple=True,
              help=f"Only these event types (comma-separated or repeated): {', '.join(LIFECYCLE_EVENTS)}.")
@click.option("--transport", type=click.Choice(["sse", "websocket"]), default="sse", show_default=True)
@click.option("--tunnel-label", "tunnel_labels", multiple=True, help="Only tunnels with key=value (or key).")
@click.option("--tunnel-name", help="Only the tunnel with this name.")
@click.option("--summaries", is_flag=True, help="Also a stream.summary event for every request/connection.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def events(ctx: click.Context, engine_addr: str | None, token: str | None, token_file: str | None,
           ca_file: str | None, insecure: bool, kinds: tuple[str, ...], transport: str,
           tunnel_labels: tuple[str, ...], tunnel_name: str | None, summaries: bool, output: str) -> None:
    """Follow client and tunnel events as they happen.

    \b
    Examples:
      portway events
      portway events --events tunnel.created,tunnel.deleted -o json
      portway events --transport websocket --tunnel-label env=prod --summaries
    """
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
    run(_follow(api, params, transport, output))


async def _follow(api: EngineApi, params: dict[str, object], transport: str, output: str) -> None:
    async def print_all() -> None:
        async for event in api.watch(params, transport):
            click.echo(json.dumps(event) if output == "json" else describe(event))

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
