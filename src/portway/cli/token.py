"""`portway token create`: mint a short-lived token from the context's token (`POST /api/tokens`); the
engine caps it by the parent's expiry, permissions and resources. The new token is printed: that is what
the user asked for."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from portway.cli.common import agent_options, client, fail, where
from portway.cli.inventory import fetch
from portway.engine.access.mint import mint_app_token


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
@click.option("--client-id", envvar="RSTREAM_CLIENT_ID", help="Application credentials: mint offline "
              "(ES512), no engine call ($RSTREAM_CLIENT_ID).")
@click.option("--client-secret", envvar="RSTREAM_CLIENT_SECRET", help="Its secret ($RSTREAM_CLIENT_SECRET; "
              "prefer the variable: shells keep history).")
@click.option("--project", "project_id", help="With --client-id: the credential's project id (the token's target "
              "when --resources-json does not name one).")
@click.option("--workspace", "workspace_id", help="With --client-id: target a whole workspace id instead of one "
              "project (§3.3).")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def token_create(ctx: click.Context, engine_addr: str | None, token: str | None, token_file: str | None,
                 ca_file: str | None, insecure: bool, expires_in: int, permissions: tuple[str, ...],
                 resources_json: str | None, resources_file: str | None, client_id: str | None,
                 client_secret: str | None, project_id: str | None, workspace_id: str | None, output: str) -> None:
    """Print a new short-lived token: derived from the current one by the engine, or minted offline from
    application credentials (rstream's §3.3: ES512, at most one hour).

    \b
    Examples:
      portway token create --expires-in 300
      TOKEN=$(portway token create -p tunnels.resources.read-only)
      RSTREAM_CLIENT_ID=app_... RSTREAM_CLIENT_SECRET=3081... portway token create --project prj_...
      RSTREAM_CLIENT_ID=app_... RSTREAM_CLIENT_SECRET=3081... portway token create --workspace ws_...
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
    if client_id or client_secret:
        _offline(ctx, client_id, client_secret, (project_id, workspace_id), body, engine_addr, output)
        return
    if project_id or workspace_id:
        fail("--project and --workspace go with --client-id", code=2)
    agent = client(ctx, engine_addr, token, token_file, ca_file, insecure)
    if not agent.options.token:
        fail("no current token to derive from", "portway login, or pass --token", code=2)
    minted = fetch(lambda: agent.api.mint_token(body))
    click.echo(json.dumps(minted) if output == "json" else minted["token"])


def _offline(ctx: click.Context, client_id: str | None, client_secret: str | None,
             target: tuple[str | None, str | None], body: dict[str, Any], engine_addr: str | None,
             output: str) -> None:
    """An app token signed here with the credential's private key (the engine checks it with the public one);
    `target` is (project id, workspace id), at most one of them."""
    if not client_id or not client_secret:
        fail("application credentials need both --client-id and --client-secret", code=2)
    project_id, workspace_id = target
    if project_id and workspace_id:
        fail("give --project or --workspace, not both", code=2)
    if project_id is None and workspace_id is None and "resources" not in body:
        fail("an app token needs a target", "pass --project PROJECT_ID, --workspace WORKSPACE_ID or "
             "--resources-json", code=2)
    now = int(time.time())
    try:
        minted = mint_app_token(client_id, client_secret, expires_in=body["expires_in"], now=now,
                                permissions=body.get("permissions"), resources=body.get("resources"),
                                project_id=project_id, workspace_id=workspace_id,
                                engine=where(ctx, engine_addr, None, None, None, False).engine)
    except ValueError as error:
        fail(str(error), "check the client secret (the hex string shown once at creation)", code=2)
    if output == "json":
        click.echo(json.dumps({"token": minted, "expires_at": now + body["expires_in"], "type": "app"}))
    else:
        click.echo(minted)
