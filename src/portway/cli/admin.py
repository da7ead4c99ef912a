"""`portway admin ...`: the engine's control plane (workspaces, projects, users, personal access tokens,
application credentials, access policies) over the admin API. Needs an operator token
(`portway engine token --operator`). A created token or secret is printed once: the engine keeps only
its hash or public key."""

from __future__ import annotations

import json
from typing import Any

import click
import jwt

from portway.cli.adminshared import OUTPUT, PROJECT, add_get, engine_api, json_option, ref_path, show
from portway.cli.adminusers import user_group
from portway.cli.common import agent_options, fail, print_rows
from portway.cli.inventory import fetch

WORKSPACE_COLUMNS = ["id", "name", "created_at"]
PROJECT_COLUMNS = ["id", "name", "workspace_id", "created_at"]
PAT_COLUMNS = ["id", "name", "project_id", "permissions", "expires_at", "last_used_at", "revoked_at"]
APP_COLUMNS = ["client_id", "name", "project_id", "permissions", "created_at", "revoked_at"]
REVOCATION_COLUMNS = ["kind", "ref", "project_id", "reason", "revoked_at"]
POLICY_COLUMNS = ["version", "created_at", "created_by"]


@click.group(name="admin")
def admin_group() -> None:
    """Manage the engine's control plane (operator token required).

    \b
    Examples:
      portway engine token --operator > admin-token
      portway admin project create web --token-file admin-token
      portway admin user create alice@example.com --role operator
      portway admin pat create ci --project web -p tunnels.tunnels.create-delete
      portway admin policy set --project web --policy-json '{"allow_public": false}'
    """


admin_group.add_command(user_group)


# ---- workspaces ----

@admin_group.group(name="workspace")
def workspace_group() -> None:
    """Workspaces (groups of projects).

    \b
    Examples:
      portway admin workspace list -o json
      portway admin workspace create acme
      portway admin workspace delete acme
    """


@workspace_group.command(name="list")
@agent_options
@OUTPUT
@click.pass_context
def workspace_list(ctx: click.Context, engine_addr: str | None, token: str | None, token_file: str | None,
                   ca_file: str | None, insecure: bool, output: str) -> None:
    """List workspaces.

    \b
    Example:
      portway admin workspace list -o json
    """
    api = engine_api(ctx, engine_addr, token, token_file, ca_file, insecure)
    print_rows(fetch(lambda: api.admin_list("workspaces")), output, WORKSPACE_COLUMNS)


@workspace_group.command(name="create")
@click.argument("name")
@agent_options
@OUTPUT
@click.pass_context
def workspace_create(ctx: click.Context, name: str, engine_addr: str | None, token: str | None,
                     token_file: str | None, ca_file: str | None, insecure: bool, output: str) -> None:
    """Create a workspace named NAME.

    \b
    Example:
      portway admin workspace create acme
    """
    api = engine_api(ctx, engine_addr, token, token_file, ca_file, insecure)
    show(fetch(lambda: api.admin("POST", "workspaces", body={"name": name})), output, WORKSPACE_COLUMNS)


@workspace_group.command(name="delete")
@click.argument("ref")
@agent_options
@click.pass_context
def workspace_delete(ctx: click.Context, ref: str, engine_addr: str | None, token: str | None,
                     token_file: str | None, ca_file: str | None, insecure: bool) -> None:
    """Delete the empty workspace REF (id or name).

    \b
    Example:
      portway admin workspace delete acme
    """
    api = engine_api(ctx, engine_addr, token, token_file, ca_file, insecure)
    fetch(lambda: api.admin("DELETE", ref_path("workspaces", ref)))
    click.echo(f"deleted workspace {ref}")


# ---- projects ----

@admin_group.group(name="project")
def project_group() -> None:
    """Projects (home of credentials and access policies).

    \b
    Examples:
      portway admin project list --workspace default
      portway admin project create web --workspace acme
      portway admin project delete web
    """


@project_group.command(name="list")
@agent_options
@click.option("--workspace", help="Only this workspace's projects (id or name).")
@OUTPUT
@click.pass_context
def project_list(ctx: click.Context, engine_addr: str | None, token: str | None, token_file: str | None,
                 ca_file: str | None, insecure: bool, workspace: str | None, output: str) -> None:
    """List projects.

    \b
    Example:
      portway admin project list --workspace acme
    """
    api = engine_api(ctx, engine_addr, token, token_file, ca_file, insecure)
    print_rows(fetch(lambda: api.admin_list("projects", workspace=workspace)), output, PROJECT_COLUMNS)


@project_group.command(name="create")
@click.argument("name")
@agent_options
@click.option("--workspace", default="default", show_default=True, help="Workspace id or name.")
@OUTPUT
@click.pass_context
def project_create(ctx: click.Context, name: str, engine_addr: str | None, token: str | None,
                   token_file: str | None, ca_file: str | None, insecure: bool, workspace: str, output: str) -> None:
    """Create a project named NAME.

    \b
    Example:
      portway admin project create web --workspace acme
    """
    api = engine_api(ctx, engine_addr, token, token_file, ca_file, insecure)
    row = fetch(lambda: api.admin("POST", "projects", body={"name": name, "workspace": workspace}))
    show(row, output, PROJECT_COLUMNS)


@project_group.command(name="delete")
@click.argument("ref")
@agent_options
@click.pass_context
def project_delete(ctx: click.Context, ref: str, engine_addr: str | None, token: str | None,
                   token_file: str | None, ca_file: str | None, insecure: bool) -> None:
    """Delete project REF (id or name); its credentials must be revoked first.

    \b
    Example:
      portway admin project delete acme/web
    """
    api = engine_api(ctx, engine_addr, token, token_file, ca_file, insecure)
    fetch(lambda: api.admin("DELETE", ref_path("projects", ref)))
    click.echo(f"deleted project {ref}")


# ---- credentials ----

def _grant_body(name: str, project: str | None, permissions: tuple[str, ...], resources_json: str | None,
                resources_file: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "project": project or "default"}
    if permissions:
        body["permissions"] = list(permissions)
    resources = json_option(resources_json, resources_file, "resources")
    if resources is not None:
        body["resources"] = resources
    return body


_PERMISSION = click.option("-p", "--permission", "permissions", multiple=True,
                           help="A permission it holds (repeatable; default: no restriction).")
_RESOURCES_JSON = click.option("--resources-json", help='Resource boundary: {"tunnels": {...}}.')
_RESOURCES_FILE = click.option("--resources-file", type=click.Path(dir_okay=False),
                               help="--resources-json from a file.")
_REASON = click.option("--reason", help="Why (kept in the revocation log).")


@admin_group.group(name="pat")
def pat_group() -> None:
    """Personal access tokens (the engine stores only their SHA-256).

    \b
    Examples:
      portway admin pat create ci --project web -p tunnels.tunnels.create-delete --expires-in 30d
      portway admin pat list --project web
      portway admin pat revoke pat_3f9c... --reason "leaked in a log"
    """


@pat_group.command(name="list")
@agent_options
@PROJECT
@OUTPUT
@click.pass_context
def pat_list(ctx: click.Context, engine_addr: str | None, token: str | None, token_file: str | None,
             ca_file: str | None, insecure: bool, project: str | None, output: str) -> None:
    """List personal access tokens (never the tokens themselves).

    \b
    Example:
      portway admin pat list --project web -o json
    """
    api = engine_api(ctx, engine_addr, token, token_file, ca_file, insecure)
    print_rows(fetch(lambda: api.admin_list("pats", project=project)), output, PAT_COLUMNS)


def _duration(value: str) -> int:
    """`90d`, `12h`, `30m`, `45s` or plain seconds."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    number, unit = (value[:-1], units[value[-1]]) if value and value[-1] in units else (value, 1)
    if not number.isdigit() or int(number) < 1:
        fail(f"invalid duration {value!r}", "use e.g. 90d, 12h, 30m or seconds", code=2)
    return int(number) * unit


@pat_group.command(name="create")
@click.argument("name")
@agent_options
@PROJECT
@_PERMISSION
@_RESOURCES_JSON
@_RESOURCES_FILE
@click.option("--subject", help="Whom the token speaks for (default: the operator's subject).")
@click.option("--expires-in", default="90d", show_default=True, help="Lifetime: 90d, 12h, 30m or seconds.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def pat_create(ctx: click.Context, name: str, engine_addr: str | None, token: str | None, token_file: str | None,
               ca_file: str | None, insecure: bool, project: str | None, permissions: tuple[str, ...],
               resources_json: str | None, resources_file: str | None, subject: str | None, expires_in: str,
               output: str) -> None:
    """Create a PAT named NAME and print it (shown once: store it now).

    \b
    Example:
      portway admin pat create ci --project web -p tunnels.resources.read-only > ci.token
    """
    body = _grant_body(name, project, permissions, resources_json, resources_file)
    body["expires_in"] = _duration(expires_in)
    if subject:
        body["subject"] = subject
    api = engine_api(ctx, engine_addr, token, token_file, ca_file, insecure)
    created = fetch(lambda: api.admin("POST", "pats", body=body))
    if output == "json":
        click.echo(json.dumps(created, indent=2))
        return
    click.echo(created["token"])
    click.echo(f"created {created['pat']['id']} (expires {created['pat']['expires_at']}); the token is not "
               "shown again", err=True)


@pat_group.command(name="revoke")
@click.argument("pat_id")
@agent_options
@_REASON
@click.pass_context
def pat_revoke(ctx: click.Context, pat_id: str, engine_addr: str | None, token: str | None, token_file: str | None,
               ca_file: str | None, insecure: bool, reason: str | None) -> None:
    """Revoke the PAT PAT_ID for good.

    \b
    Example:
      portway admin pat revoke pat_0123456789abcdef
    """
    api = engine_api(ctx, engine_addr, token, token_file, ca_file, insecure)
    revoked = fetch(lambda: api.admin("POST", ref_path("pats", pat_id, "revoke"), body={"reason": reason}))
    click.echo(f"revoked {revoked['id']} at {revoked['revoked_at']}")


@admin_group.group(name="app")
def app_group() -> None:
    """Application credentials (client id + P-521 secret; the engine keeps the public key).

    \b
    Examples:
      portway admin app create backend --project web -p tunnels.streams.create-delete -o json
      portway admin app list
      portway admin app revoke app_51be...
    """


@app_group.command(name="list")
@agent_options
@PROJECT
@OUTPUT
@click.pass_context
def app_list(ctx: click.Context, engine_addr: str | None, token: str | None, token_file: str | None,
             ca_file: str | None, insecure: bool, project: str | None, output: str) -> None:
    """List application credentials.

    \b
    Example:
      portway admin app list -o json
    """
    api = engine_api(ctx, engine_addr, token, token_file, ca_file, insecure)
    print_rows(fetch(lambda: api.admin_list("apps", project=project)), output, APP_COLUMNS)


@app_group.command(name="create")
@click.argument("name")
@agent_options
@PROJECT
@_PERMISSION
@_RESOURCES_JSON
@_RESOURCES_FILE
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def app_create(ctx: click.Context, name: str, engine_addr: str | None, token: str | None, token_file: str | None,
               ca_file: str | None, insecure: bool, project: str | None, permissions: tuple[str, ...],
               resources_json: str | None, resources_file: str | None, output: str) -> None:
    """Create application credentials named NAME; prints the client id and secret (shown once).

    \b
    Example:
      portway admin app create backend --project web
    """
    body = _grant_body(name, project, permissions, resources_json, resources_file)
    api = engine_api(ctx, engine_addr, token, token_file, ca_file, insecure)
    created = fetch(lambda: api.admin("POST", "apps", body=body))
    if output == "json":
        click.echo(json.dumps(created, indent=2))
        return
    click.echo(f"RSTREAM_CLIENT_ID={created['credential']['client_id']}")
    click.echo(f"RSTREAM_CLIENT_SECRET={created['secret']}")
    click.echo("the secret is not shown again", err=True)


@app_group.command(name="revoke")
@click.argument("client_id")
@agent_options
@_REASON
@click.pass_context
def app_revoke(ctx: click.Context, client_id: str, engine_addr: str | None, token: str | None,
               token_file: str | None, ca_file: str | None, insecure: bool, reason: str | None) -> None:
    """Revoke the application credentials CLIENT_ID for good.

    \b
    Example:
      portway admin app revoke app_0123456789abcdef
    """
    api = engine_api(ctx, engine_addr, token, token_file, ca_file, insecure)
    revoked = fetch(lambda: api.admin("POST", ref_path("apps", client_id, "revoke"), body={"reason": reason}))
    click.echo(f"revoked {revoked['client_id']} at {revoked['revoked_at']}")


@admin_group.command(name="revocations")
@agent_options
@PROJECT
@OUTPUT
@click.pass_context
def revocation_list(ctx: click.Context, engine_addr: str | None, token: str | None, token_file: str | None,
                    ca_file: str | None, insecure: bool, project: str | None, output: str) -> None:
    """List the revocation log.

    \b
    Example:
      portway admin revocations -o json
    """
    api = engine_api(ctx, engine_addr, token, token_file, ca_file, insecure)
    print_rows(fetch(lambda: api.admin_list("revocations", project=project)), output, REVOCATION_COLUMNS)


@admin_group.command(name="revoke-token")
@click.option("--jti", help="The token's jti claim.")
@click.option("--from-file", "from_file", type=click.File("r"),
              help="Read the token to revoke from this file ('-': standard input); only its jti is sent on.")
@agent_options
@_REASON
@click.pass_context
def revoke_token(ctx: click.Context, jti: str | None, from_file: click.utils.LazyFile | None,
                 engine_addr: str | None, token: str | None, token_file: str | None, ca_file: str | None,
                 insecure: bool, reason: str | None) -> None:
    """Revoke one token (a derived or minted token that leaked), not its credential.

    The engine refuses it from now on and closes the control channels and signaling streams that
    use it. Revoke a PAT or application credential with 'pat revoke' / 'app revoke' instead.

    \b
    Examples:
      portway admin revoke-token --jti 9f3c0a... --reason "pasted in a ticket"
      portway admin revoke-token --from-file leaked.jwt
      pbpaste | portway admin revoke-token --from-file -
    """
    if (jti is None) == (from_file is None):
        raise click.UsageError("give either --jti or --from-file")
    if from_file is not None:
        try:
            claims = jwt.decode(from_file.read().strip(), options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise click.UsageError("--from-file does not hold a JWT") from None
        found = claims.get("jti")
        if not isinstance(found, str) or not found:
            raise click.UsageError("this token has no jti to revoke it by: revoke its PAT or app credential")
        jti = found
    api = engine_api(ctx, engine_addr, token, token_file, ca_file, insecure)
    revoked = fetch(lambda: api.admin("POST", "revocations", body={"jti": jti, "reason": reason}))
    click.echo(f"revoked token {revoked['ref']} at {revoked['revoked_at']}")


# ---- access policies ----

@admin_group.group(name="policy")
def policy_group() -> None:
    """A project's access policy (versioned).

    \b
    Examples:
      portway admin policy get --project web -o yaml
      portway admin policy set --project web --policy-file policy.yaml --if-version 3
    """


@policy_group.command(name="get")
@agent_options
@PROJECT
@click.option("-o", "--output", type=click.Choice(["json", "yaml"]), default="yaml", show_default=True)
@click.pass_context
def policy_get(ctx: click.Context, engine_addr: str | None, token: str | None, token_file: str | None,
               ca_file: str | None, insecure: bool, project: str | None, output: str) -> None:
    """Print the policy in force (version 0 = the default, nothing set yet).

    \b
    Example:
      portway admin policy get --project web
    """
    api = engine_api(ctx, engine_addr, token, token_file, ca_file, insecure)
    show(fetch(lambda: api.admin("GET", ref_path("projects", project or "default", "policy"))), output, [])


@policy_group.command(name="set")
@agent_options
@PROJECT
@click.option("--policy-json", help='The whole policy, e.g. {"allow_public": false, "allowed_protocols": ["http"]}.')
@click.option("--policy-file", type=click.Path(dir_okay=False), help="The policy from a YAML or JSON file.")
@click.option("--if-version", type=click.IntRange(0), help="Refuse unless this is the version in force.")
@click.option("-o", "--output", type=click.Choice(["json", "yaml"]), default="yaml", show_default=True)
@click.pass_context
def policy_set(ctx: click.Context, engine_addr: str | None, token: str | None, token_file: str | None,
               ca_file: str | None, insecure: bool, project: str | None, policy_json: str | None,
               policy_file: str | None, if_version: int | None, output: str) -> None:
    """Store a new version of the policy (the whole document: unset fields take their defaults).

    \b
    Example:
      portway admin policy set --project web --policy-json '{"allow_public": false}'
    """
    policy = json_option(policy_json, policy_file, "policy")
    if not isinstance(policy, dict):
        fail("give the policy as a JSON/YAML object", "--policy-json '{...}' or --policy-file FILE", code=2)
    api = engine_api(ctx, engine_addr, token, token_file, ca_file, insecure)
    body = {"policy": policy, "expected_version": if_version}
    show(fetch(lambda: api.admin("PUT", ref_path("projects", project or "default", "policy"), body=body)), output,
         [])


add_get(workspace_group, collection="workspaces", what="workspace", columns=WORKSPACE_COLUMNS,
        example="portway admin workspace get acme -o json")
add_get(project_group, collection="projects", what="project", columns=PROJECT_COLUMNS,
        example="portway admin project get web -o json")
add_get(pat_group, collection="pats", what="personal access token (never the token itself)", columns=PAT_COLUMNS,
        example="portway admin pat get pat_0123abcd -o json", ref="its id")
add_get(app_group, collection="apps", what="application credential (never its secret)", columns=APP_COLUMNS,
        example="portway admin app get app_0123abcd -o json", ref="its client id")


@policy_group.command(name="history")
@agent_options
@PROJECT
@OUTPUT
@click.pass_context
def policy_history(ctx: click.Context, engine_addr: str | None, token: str | None, token_file: str | None,
                   ca_file: str | None, insecure: bool, project: str | None, output: str) -> None:
    """Every stored version of the project's policy, oldest first (json/yaml show each document).

    \b
    Example:
      portway admin policy history --project web -o json
    """
    api = engine_api(ctx, engine_addr, token, token_file, ca_file, insecure)
    path = ref_path("projects", project or "default", "policy", "history")
    print_rows(fetch(lambda: api.admin_list(path)), output, POLICY_COLUMNS)
