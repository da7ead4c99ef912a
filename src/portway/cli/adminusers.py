"""`portway admin user ...`: users, whom PATs speak for — their role (an operator's PATs may use the admin API)
and whether they are disabled (their PATs and what derives from them refused)."""

from __future__ import annotations

from typing import Any

import click

from portway.cli.adminshared import OUTPUT, add_get, engine_api, ref_path, show
from portway.cli.common import agent_options, print_rows
from portway.cli.inventory import fetch

USER_COLUMNS = ["id", "subject", "role", "disabled_at", "created_at"]

_ROLE = click.Choice(["operator", "member"])


@click.group(name="user")
def user_group() -> None:
    """Users: whom PATs speak for. An operator's PATs may use the admin API; a disabled user's PATs (and the
    tokens derived from them) are refused until it is enabled again. REF is a user id or subject.

    \b
    Examples:
      portway admin user list -o json
      portway admin user create alice@example.com --role operator
      portway admin user disable bob@example.com
    """


@user_group.command(name="list")
@agent_options
@OUTPUT
@click.pass_context
def user_list(ctx: click.Context, engine_addr: str | None, token: str | None, token_file: str | None,
              ca_file: str | None, insecure: bool, output: str) -> None:
    """List users.

    \b
    Example:
      portway admin user list -o json
    """
    api = engine_api(ctx, engine_addr, token, token_file, ca_file, insecure)
    print_rows(fetch(lambda: api.admin_list("users")), output, USER_COLUMNS)


@user_group.command(name="create")
@click.argument("subject")
@agent_options
@click.option("--role", type=_ROLE, default="member", show_default=True,
              help="operator: its PATs may use the admin API.")
@OUTPUT
@click.pass_context
def user_create(ctx: click.Context, subject: str, engine_addr: str | None, token: str | None,
                token_file: str | None, ca_file: str | None, insecure: bool, role: str, output: str) -> None:
    """Create the user SUBJECT (the `sub` its tokens carry).

    \b
    Example:
      portway admin user create alice@example.com --role operator
    """
    api = engine_api(ctx, engine_addr, token, token_file, ca_file, insecure)
    show(fetch(lambda: api.admin("POST", "users", body={"subject": subject, "role": role})), output, USER_COLUMNS)


add_get(user_group, collection="users", what="user", columns=USER_COLUMNS,
        example="portway admin user get alice@example.com -o json", ref="its id or subject")


def _patch_user(ctx: click.Context, ref: str, change: dict[str, Any], engine_addr: str | None, token: str | None,
                token_file: str | None, ca_file: str | None, insecure: bool, output: str) -> None:
    api = engine_api(ctx, engine_addr, token, token_file, ca_file, insecure)
    show(fetch(lambda: api.admin("PATCH", ref_path("users", ref), body=change)), output, USER_COLUMNS)


@user_group.command(name="set-role")
@click.argument("ref")
@click.argument("role", type=_ROLE)
@agent_options
@OUTPUT
@click.pass_context
def user_set_role(ctx: click.Context, ref: str, role: str, engine_addr: str | None, token: str | None,
                  token_file: str | None, ca_file: str | None, insecure: bool, output: str) -> None:
    """Give the user REF the role ROLE (operator or member); applies at the next request.

    \b
    Example:
      portway admin user set-role bob@example.com operator
    """
    _patch_user(ctx, ref, {"role": role}, engine_addr, token, token_file, ca_file, insecure, output)


def _add_switch(name: str, disabled: bool, summary: str) -> None:
    """`disable REF` / `enable REF`: the same PATCH of `disabled`."""

    @user_group.command(name=name, help=f"{summary}\n\n\b\nExample:\n  portway admin user {name} bob@example.com")
    @click.argument("ref")
    @agent_options
    @OUTPUT
    @click.pass_context
    def switch(ctx: click.Context, ref: str, engine_addr: str | None, token: str | None, token_file: str | None,
               ca_file: str | None, insecure: bool, output: str) -> None:
        _patch_user(ctx, ref, {"disabled": disabled}, engine_addr, token, token_file, ca_file, insecure, output)


_add_switch("disable", True, "Disable the user REF: its PATs and the tokens derived from them are refused (not "
            "revoked).")
_add_switch("enable", False, "Enable the user REF again: its unrevoked PATs work again.")


@user_group.command(name="delete")
@click.argument("ref")
@agent_options
@click.pass_context
def user_delete(ctx: click.Context, ref: str, engine_addr: str | None, token: str | None, token_file: str | None,
                ca_file: str | None, insecure: bool) -> None:
    """Delete the user REF; its PATs must be revoked first.

    \b
    Example:
      portway admin user delete bob@example.com
    """
    api = engine_api(ctx, engine_addr, token, token_file, ca_file, insecure)
    fetch(lambda: api.admin("DELETE", ref_path("users", ref)))
    click.echo(f"deleted user {ref}")
