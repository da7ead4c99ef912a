"""The live status panel of `portway forward` on a terminal (rich): a view of `ForwardStatus`, redrawn a few
times a second. Nothing here decides anything; it formats what the status holds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from portway import __version__
from portway.agent import HttpExchange
from portway.cli.forwardstatus import ForwardStatus

REFRESH_PER_SECOND = 4
_STATE_STYLES = {"online": "bold green", "connecting": "yellow", "connected": "yellow", "reconnecting": "bold red",
                 "failed": "bold red", "closed": "dim"}


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _request_row(exchange: HttpExchange) -> tuple[Text, Text, Text, Text]:
    status = exchange.status.status if exchange.status is not None else None
    style = "green" if status is not None and status < 400 else "red" if status is not None else "dim"
    target = exchange.request.target
    path = target if len(target) <= 60 else target[:57] + "..."
    duration = f"{exchange.duration_s * 1000:.0f} ms" if exchange.duration_s is not None else "…"
    return (Text(exchange.request.method, style="bold"), Text(path), Text(str(status or "…"), style=style),
            Text(duration, style="dim"))


def render(status: ForwardStatus) -> Panel:
    """One frame of the panel."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="cyan", no_wrap=True)
    grid.add_column()
    grid.add_row("Forwarding", Text(f"{status.forwarding or '…'} -> {status.target}"))
    state = Text(status.state, style=_STATE_STYLES.get(status.state, ""))
    if status.last_error and status.state != "online":
        state.append(f"  ({status.last_error})", style="red")
    grid.add_row("Status", state)
    uptime = status.uptime_s
    grid.add_row("Uptime", human_duration(uptime) if uptime is not None else "-")
    grid.add_row("Streams", f"{len(status.open)} open, {status.total_streams} total")
    grid.add_row("Traffic", f"{human_bytes(status.bytes_in)} in, {human_bytes(status.bytes_out)} out")
    parts: list[Table] = [grid]
    if status.total_requests:
        grid.add_row("Requests", str(status.total_requests))
        recent = Table(box=None, show_header=True, header_style="bold", padding=(0, 2), title_justify="left")
        for column in ("Method", "Path", "Status", "Time"):
            recent.add_column(column, no_wrap=True)
        for exchange in reversed(status.recent):
            recent.add_row(*_request_row(exchange))
        parts.append(recent)
    title = f"portway forward {__version__}" + (f" · tunnel {status.tunnel_id}" if status.tunnel_id else "")
    return Panel(Group(*parts), title=title, title_align="left", subtitle="Ctrl-C to stop", subtitle_align="right")


@contextlib.asynccontextmanager
async def live_panel(status: ForwardStatus, console: Console | None = None) -> AsyncIterator[None]:
    """Redraw the panel while the block runs; the last frame stays on screen afterwards.

    Redrawn by a task on the event loop rather than rich's refresh thread: the status is mutated by the
    loop, and reading it from another thread could catch a dict mid-change."""
    with Live(render(status), console=console or Console(), auto_refresh=False,
              redirect_stderr=False, redirect_stdout=False) as live:

        async def redraw() -> None:
            while True:
                await asyncio.sleep(1 / REFRESH_PER_SECOND)
                live.update(render(status), refresh=True)

        task = asyncio.ensure_future(redraw())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            live.update(render(status), refresh=True)
