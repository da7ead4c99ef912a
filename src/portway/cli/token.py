"""`portway token create`: mint a short-lived token from the context's token (`POST /api/tokens`); the
engine caps it by the parent's expiry, permissions and resources. The new token is printed: that is what
the user asked for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from portway.cli.common import agent_options, client, fail
from portway.cli.inventory import fetch


@click.group(name="token")
def token_group() -> None:
    """Tokens derived from the current credentials.

    \b
    Examples:
      portway token create --expires-in 300
      portway token create -p tunnels.resources.read-only \\
        --resources-json '{"tunnels": {"scopes": {"tunnels": {"list": true}}}}'
    """


@token_group.command(name="create")
@agent_options
@click.option("--expires-in", type=click.IntRange(1, 3600), default=60, show_default=True,
              help="Lifetime in seconds (capped by the current token's expiry).")
@click.option("-p", "--permission", "permissions", multiple=True,
              help="Keep only these permissions (repeatable; default: the current token's).")
@click.option("--resources-json", help='Narrow the resources: {"tunnels": {...}} (§3.2 of the rstream facts).')
@click.option("--resources-file", type=click.Path(dir_okay=False, exists=True), help="--resources-json from a file.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def token_create(ctx: click.Context, engine_addr: str | None, token: str | None, token_file: str | None,
                 ca_file: str | None, insecure: bool, expires_in: int, permissions: tuple[str, ...],
                 resources_json: str | None, resources_file: str | None, output: str) -> None:
    """Print a new short-lived token derived from the current one.

    \b
    Examples:
      portway token create --expires-in 300
      TOKEN=$(portway token create -p tunnels.resources.read-only)
    """
    if resources_json and resources_file:
        fail("give --resources-json or --resources-file, not both", code=2)
    body: dict[str, Any] = {"expires_in": expires_in}
    if permissions:
        body["permissions"] = list(permissions)
    raw = Path(resources_file).read_text() if resources_file else resources_json
    if raw is not None:
        try:
            body["resources"] = json.loads(raw)
        except ValueError as error:
            fail(f"the resources are not JSON: {error}", code=2)
    agent = client(ctx, engine_addr, token, token_file, ca_file, insecure)
    if not agent.options.token:
        fail("no current token to derive from", "portway login, or pass --token", code=2)
    minted = fetch(lambda: agent.api.mint_token(body))
    click.echo(json.dumps(minted) if output == "json" else minted["token"])
