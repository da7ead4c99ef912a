"""What `portway run` prints: one line per tunnel state change (text), or one JSON object per change.

Tunnel lines go to stdout; errors go to stderr as one `error: ...` line, so a script reading stdout sees
only tunnel states.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import click

from portway.agent import Tunnel
from portway.cli.applyspec import TunnelSpec


class Reporter:
    def __init__(self, output: str, *, errors_inline: bool) -> None:
        self.json = output == "json"
        self.errors_inline = errors_inline  # else a refused tunnel ends the run and `fail` prints it once

    def _emit(self, event: Mapping[str, object]) -> None:
        click.echo(json.dumps(event))

    def connection(self, status: str, error: BaseException | None = None) -> None:
        """connecting / reconnecting (a tunnel-less event)."""
        if self.json:
            self._emit({"status": status} | ({"error": str(error)} if error else {}))
        elif error is not None:
            click.echo(f"{status}: {error}", err=True)

    def tunnel(self, status: str, name: str, spec: TunnelSpec, *, tunnel: Tunnel | None = None,
               error: BaseException | None = None, reason: str | None = None) -> None:
        """online (with the forwarding address), closed (removed/changed), offline (connection lost), failed."""
        forwarded = spec.target
        if self.json:
            event: dict[str, object] = {"status": status, "tunnel": name, "forwarded": forwarded}
            if tunnel is not None:
                event |= {"tunnel_id": tunnel.id, "forwarding": tunnel.forwarding_address,
                          "labels": tunnel.properties.labels}
            if reason is not None:
                event["reason"] = reason
            if error is not None:
                event["error"] = str(error)
            self._emit(event)
        elif tunnel is not None:
            click.echo(f"{name}: {tunnel.forwarding_address} -> {forwarded}")
        elif error is not None:
            if self.errors_inline:
                click.echo(f"error: tunnel {name!r}: {error}", err=True)
        else:
            click.echo(f"{name}: {status}" + (f" ({reason})" if reason else ""))

    def invalid(self, message: str) -> None:
        """An edit of the watched file that does not validate: one line, the running set is kept."""
        click.echo(f"error: {message} (keeping the running tunnels)", err=True)
