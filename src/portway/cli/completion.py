"""`portway completion bash|zsh|fish`: the shell script that asks `portway` itself for completions.

Click's own machinery: the script calls `portway` with `_PORTWAY_COMPLETE=<shell>_complete`, and click answers
from the live command tree, so new commands and options complete without regenerating the script.
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

COMPLETE_VAR = "_PORTWAY_COMPLETE"


@click.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
    Examples:
      portway completion bash > ~/.local/share/bash-completion/completions/portway
      portway completion zsh > "${fpath[1]}/_portway"
      portway completion fish > ~/.config/fish/completions/portway.fish
      eval "$(portway completion bash)"          # this shell only
    """
    shell_class = get_completion_class(shell)
    assert shell_class is not None  # the choices are the shells click ships
    root = ctx.find_root()
    click.echo(shell_class(root.command, {}, root.info_name or "portway", COMPLETE_VAR).source())
