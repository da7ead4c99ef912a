"""What the `portway admin` command modules share: the output and project options, the admin API client of a
command's context, and how one record or a JSON/YAML option is read and shown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
import yaml

from portway.agent.api import EngineApi
from portway.cli.common import agent_options, client, fail, print_rows
from portway.cli.inventory import fetch

OUTPUT = click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table",
                      show_default=True)
PROJECT = click.option("--project", help="Project id or name (default: every project for lists, else 'default').")


def engine_api(ctx: click.Context, engine_addr: str | None, token: str | None, token_file: str | None,
               ca_file: str | None, insecure: bool) -> EngineApi:
    return client(ctx, engine_addr, token, token_file, ca_file, insecure).api


def show(row: dict[str, Any], output: str, columns: list[str]) -> None:
    if output == "table":
        print_rows([row], output, columns)
    else:
        print_rows(row, output, columns)  # type: ignore[arg-type]  # json/yaml dump any value


def json_option(raw: str | None, path: str | None, what: str) -> Any:
    """`--X-json` or `--X-file` (not both), parsed; a usage error (exit 2) when malformed."""
    if raw is not None and path is not None:
        fail(f"give --{what}-json or --{what}-file, not both", code=2)
    if path is not None:
        try:
            raw = Path(path).read_text()
        except OSError as error:
            fail(f"cannot read {path}: {error.strerror}", code=2)
    if raw is None:
        return None
    try:
        return yaml.safe_load(raw) if path is not None and not path.endswith(".json") else json.loads(raw)
    except (ValueError, yaml.YAMLError) as error:
        fail(f"the {what} is not valid JSON/YAML: {error}", code=2)


def ref_path(collection: str, ref: str, *rest: str) -> str:
    """`collection/<ref>[/rest…]` with `ref` percent-encoded, `/` included: a project may be named
    `workspace/project`, a subject may hold a slash, a space, `?` or `#`."""
    return "/".join((collection, quote(ref, safe="@"), *rest))


def add_get(group: click.Group, *, collection: str, what: str, columns: list[str], example: str,
            ref: str = "its id or name") -> None:
    """Add `get REF` to `group`: one record of the admin API's `collection`, by id (or name where the API
    takes one), percent-encoded into the path."""

    @group.command(name="get", help=f"Show one {what} (REF: {ref}).\n\n"
                                    f"\b\nExample:\n  {example}")
    @click.argument("ref")
    @agent_options
    @OUTPUT
    @click.pass_context
    def get(ctx: click.Context, ref: str, engine_addr: str | None, token: str | None, token_file: str | None,
            ca_file: str | None, insecure: bool, output: str) -> None:
        api = engine_api(ctx, engine_addr, token, token_file, ca_file, insecure)
        show(fetch(lambda: api.admin("GET", ref_path(collection, ref))), output, columns)
