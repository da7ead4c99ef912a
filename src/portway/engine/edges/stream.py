"""The one place a visitor connection becomes a tunnel stream: ask the broker, then splice."""

from __future__ import annotations

import logging

from portway.engine.broker import StreamFailed
from portway.engine.context import EngineContext
from portway.engine.registry import Tunnel
from portway.pipe import Pipe, splice

log = logging.getLogger("portway.engine.edge")


async def connect_visitor(ctx: EngineContext, tunnel: Tunnel, visitor: Pipe, source_ip: str | None) -> None:
    """Open a stream of `tunnel` for `visitor` (paused until then) and splice them; close it on failure."""
    try:
        agent = await ctx.broker.open_stream(tunnel, source_ip)
    except StreamFailed as error:
        log.info("tunnel %s: stream for %s failed: %s", tunnel.id, source_ip, error.reason)
        visitor.close()
        return
    splice(visitor, agent)
    ctx.streams.add(visitor, agent)
