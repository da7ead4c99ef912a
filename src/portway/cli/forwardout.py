"""Line-oriented outputs of `portway forward` for scripts: JSON state objects, the plain text lines, silence.
(The terminal panel is status.py.) Each is a `keep_tunnel` state callback."""

from __future__ import annotations

import json

import click

from portway import __version__
from portway.agent import Tunnel
from portway.agent.reconnect import StateCallback


def json_states(target: tuple[str, int]) -> StateCallback:
    """One JSON object per state change on stdout, with rstream's field names (protocol facts §5)."""
    def report(state: str, tunnel: Tunnel | None, error: BaseException | None) -> None:
        event: dict[str, object] = {"status": state, "forwarded": f"{target[0]}:{target[1]}", "version": __version__}
        if tunnel is not None:
            event |= {"tunnel_id": tunnel.id, "forwarding": tunnel.forwarding_address}
        if error is not None:
            event["error"] = str(error)
        click.echo(json.dumps(event))
    return report


def plain_lines(target: tuple[str, int]) -> StateCallback:
    """`Forwarding ADDRESS -> HOST:PORT` on stdout when online; transient errors as `STATE: ERROR` on stderr."""
    def report(state: str, tunnel: Tunnel | None, error: BaseException | None) -> None:
        if tunnel is not None:
            click.echo(f"Forwarding {tunnel.forwarding_address} -> {target[0]}:{target[1]}")
        elif error is not None and state != "failed":  # a fatal error is reported once, by fail()
            click.echo(f"{state}: {error}", err=True)
    return report


def errors_only(target: tuple[str, int]) -> StateCallback:
    """`-o none`: nothing on stdout; transient errors on stderr (a fatal one is reported by fail())."""
    def report(state: str, tunnel: Tunnel | None, error: BaseException | None) -> None:
        if error is not None and state != "failed":
            click.echo(f"{state}: {error}", err=True)
    return report
