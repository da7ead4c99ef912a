"""Let connections that are still shutting down finish before a test's event loop closes.

The official SDK closes some connections without awaiting them (e.g. the control channel after
CloseControlChannelRsp), so their TLS shutdown can still be in flight when a test returns; once the
loop is closed such a socket is reported as an unclosed resource (an error under
`filterwarnings = error`)."""

from __future__ import annotations

import asyncio
import gc
import time
from asyncio import selector_events

from tests.conftest import UNIT_S


def _open_transports(loop: asyncio.AbstractEventLoop) -> list[asyncio.BaseTransport]:
    return [obj for obj in gc.get_objects()
            if isinstance(obj, selector_events._SelectorSocketTransport)
            and obj._loop is loop and not obj.is_closing()]  # type: ignore[attr-defined]


async def wait_transports_closed(timeout: float = 5 * UNIT_S) -> None:
    """Wait (bounded) until no socket transport of the running loop is still open."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + timeout
    await asyncio.sleep(0)
    while _open_transports(loop) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
