"""`Tunnel`: a tunnel this agent published. Streams arrive by `accept()` / `async for`, or are
forwarded to a local service with `forward_to(host, port)`."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from portway.agent.observe import StreamObserver
from portway.agent.stream import Stream
from portway.errors import ClosedError
from portway.wire.hostnames import forwarding_address
from portway.wire.messages import TunnelProperties

if TYPE_CHECKING:
    from portway.agent.control import ControlChannel

ACCEPT_QUEUE = 256


@dataclass(frozen=True, slots=True)
class ForwardTarget:
    host: str
    port: int


class Tunnel:
    """A live tunnel; its effective properties are in `properties`."""

    def __init__(self, control: ControlChannel, properties: TunnelProperties) -> None:
        self.control = control
        self.properties = properties
        self.target: ForwardTarget | None = None
        self.observer: StreamObserver | None = None
        self._queue: asyncio.Queue[Stream | None] = asyncio.Queue(ACCEPT_QUEUE)
        self._closed = asyncio.Event()
        self.streams = 0

    @property
    def id(self) -> str:
        assert self.properties.id is not None
        return self.properties.id

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def forwarding_address(self) -> str:
        return forwarding_address(self.properties)

    async def accept(self) -> Stream:
        """The next stream; raises `ClosedError` once the tunnel is closed."""
        if self.closed and self._queue.empty():
            raise ClosedError("tunnel closed")
        stream = await self._queue.get()
        if stream is None:
            raise ClosedError("tunnel closed")
        return stream

    def __aiter__(self) -> Tunnel:
        return self

    async def __anext__(self) -> Stream:
        try:
            return await self.accept()
        except ClosedError:
            raise StopAsyncIteration from None

    async def forward_to(self, host: str, port: int, *, observer: StreamObserver | None = None) -> None:
        """Relay every stream to `host:port` until the tunnel closes; `observer` hears about each stream."""
        self.target = ForwardTarget(host, port)
        self.observer = observer
        await self._closed.wait()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def close(self) -> None:
        """Close the tunnel on the engine (established streams keep running)."""
        await self.control.close_tunnel(self.id)

    # ---- called by the control channel ----

    def deliver(self, stream: Stream) -> bool:
        if self.closed:
            return False
        try:
            self._queue.put_nowait(stream)
        except asyncio.QueueFull:
            return False
        return True

    def mark_closed(self) -> None:
        if self.closed:
            return
        self._closed.set()
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)
