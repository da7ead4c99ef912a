"""Bidirectional byte pump between two asyncio transports, with backpressure.

Both the engine (visitor ⇄ agent data connection) and the agent (data connection ⇄ local upstream)
splice connections with `Pipe`. A `Pipe` is the protocol of one connection; `splice(a, b)` links two.
Flow control: when the transport we write into is above its high-water mark, asyncio calls our
`pause_writing`, and we stop reading from the peer until `resume_writing`. Nothing is buffered
beyond the transports' own limits plus one bounded pre-splice backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import cast

# Write-buffer high-water mark per transport: large enough to keep TLS records full on fast links.
HIGH_WATER_BYTES = 1024 * 1024
# Bytes a pipe accepts before it is spliced (e.g. a zero-RTT dialer's first request) before pausing.
BACKLOG_BYTES = 256 * 1024


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Disable Nagle: tunnels add a hop, and delayed small writes would cost a round trip each."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Pipe(asyncio.Protocol):
    """Protocol for one end of a splice. Create it, let it connect (or `adopt` a transport), then
    `splice()` it with another pipe. Before the splice, data is held (bounded) and reading pauses.
    """

    def __init__(self, on_close: Callable[[Pipe], None] | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: Pipe | None = None
        self.bytes_in = 0
        self.closed = False
        self._backlog: list[bytes] = []
        self._backlog_bytes = 0
        self._eof = False
        self._on_close = on_close
        self._writing_paused = False
        self._tap: Callable[[bytes], None] | None = None

    @classmethod
    def adopt(cls, transport: asyncio.Transport, initial: bytes = b"") -> Pipe:
        """Take over a live transport from another protocol, keeping bytes it already read."""
        pipe = cls()
        transport.set_protocol(pipe)
        pipe.connection_made(transport)
        if initial:
            pipe.data_received(initial)
        return pipe

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER_BYTES)
        set_nodelay(transport)

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        if self._tap is not None:
            self._tap(data)
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)
            return
        self._backlog.append(data)
        self._backlog_bytes += len(data)
        if self._backlog_bytes >= BACKLOG_BYTES and self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        """The other end stopped sending. Pass the half-close on when both transports can hold one
        (plain TCP, and portway.tls); otherwise the whole splice closes once buffers are flushed."""
        self._eof = True
        peer = self.peer
        if peer is None or peer.transport is None:
            return self._can_half_close()
        if not peer.transport.can_write_eof():
            return False
        peer.transport.write_eof()
        if peer._eof:
            peer.transport.close()
            return False
        return self._can_half_close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.peer is not None:
            self.peer.peer_lost(self)
        if self._on_close is not None:
            self._on_close(self)

    def peer_lost(self, peer: Pipe) -> None:
        """The other end closed: flush what we still hold for our transport, then close it."""
        if self.transport is not None:
            self.transport.close()

    def pause_writing(self) -> None:
        self._writing_paused = True
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self.peer is not None and self.peer.transport is not None and not self.peer.closed:
            self.peer.transport.resume_reading()

    # --- splice management ---

    def _can_half_close(self) -> bool:
        return self.transport is not None and self.transport.can_write_eof()

    def _flush_backlog(self) -> None:
        """Send what arrived before the splice, then resume reading."""
        assert self.peer is not None and self.peer.transport is not None
        if self._backlog:
            self.peer.transport.write(b"".join(self._backlog))
            self._backlog.clear()
            self._backlog_bytes = 0
        if self._eof:
            if self.peer.transport.can_write_eof():
                self.peer.transport.write_eof()
            else:
                self.peer.transport.close()
        elif self.closed:
            self.peer.transport.close()
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def take_over(self, agent: Pipe) -> None:
        """Become the protocol of `agent`'s fresh connection (nothing sent or spliced on it yet), as a
        new connection would: `connection_made` runs, and a connection already lost stays lost."""
        assert agent.transport is not None
        agent.transport.set_protocol(self)
        self.connection_made(agent.transport)
        if agent.closed:
            self.closed = True

    def hand_over(self, successor: Pipe) -> None:
        """Make `successor` (not yet connected) the protocol of this pipe's connection, with its state
        and the bytes held before a splice: an edge that must follow what it relays (HTTP responses)
        takes the agent's pipe over this way. This pipe is left without a transport."""
        successor.transport, self.transport = self.transport, None
        successor.bytes_in, successor.closed, successor._eof = self.bytes_in, self.closed, self._eof
        successor._backlog, self._backlog = self._backlog, []
        successor._backlog_bytes, self._backlog_bytes = self._backlog_bytes, 0
        successor._writing_paused = self._writing_paused
        if successor.transport is not None and not self.closed:
            successor.transport.set_protocol(successor)

    def set_tap(self, tap: Callable[[bytes], None] | None) -> None:
        """Show `tap` each chunk this pipe reads, starting with those it holds before a splice; None unhooks
        it. For observers that look at the first bytes only (agent/observe.py): they unhook themselves."""
        self._tap = tap
        for chunk in list(self._backlog):
            if self._tap is None:
                break
            self._tap(chunk)

    def notify_close(self, callback: Callable[[Pipe], None]) -> None:
        """Call `callback(self)` once the connection is lost (at once if it already is); one per pipe."""
        if self.closed:
            callback(self)
        else:
            self._on_close = callback

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def splice(a: Pipe, b: Pipe) -> None:
    """Connect two pipes: from now on, bytes read on one are written to the other."""
    a.peer, b.peer = b, a
    a._flush_backlog()
    b._flush_backlog()
