"""Published TCP tunnels: one listening socket per tunnel, on a requested or allocated port.

A port whose agent vanished (connection lost, liveness expired) stays reserved for the same
credential for `tcp.reserve_seconds`: the agent reconnects and gets its public address back, and
nobody else is handed the port meanwhile. Closing the tunnel on purpose releases it at once.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from dataclasses import dataclass

from portway.engine.agentconn import peer_ip
from portway.engine.context import EngineContext
from portway.engine.edges.stream import connect_visitor
from portway.engine.registry import Tunnel
from portway.pipe import Pipe
from portway.wire.codes import ErrorCode
from portway.wire.errors import InvalidTunnelProperties

log = logging.getLogger("portway.engine.tcp")


@dataclass(frozen=True, slots=True)
class Reservation:
    token_id: str
    until: float  # time.monotonic()


class TcpEdge:
    """Binds public ports for tcp tunnels and turns each accepted connection into a stream."""

    def __init__(self) -> None:
        self.ctx: EngineContext | None = None
        self._servers: dict[Tunnel, asyncio.Server] = {}
        self._reserved: dict[int, Reservation] = {}

    def reserved_for(self, port: int) -> str | None:
        """The credential (token id) a port is held for, if its reservation is still running."""
        reservation = self._reserved.get(port)
        if reservation is None:
            return None
        if reservation.until <= time.monotonic():
            del self._reserved[port]
            return None
        return reservation.token_id

    async def publish(self, tunnel: Tunnel, requested: int | None) -> int:
        """Listen for `tunnel`; return the port. A busy or out-of-range request is refused clearly."""
        assert self.ctx is not None
        cfg = self.ctx.config.tcp
        if not cfg.enabled:
            raise InvalidTunnelProperties("published tcp tunnels are disabled on this engine",
                                          ErrorCode.FEATURE_NOT_AVAILABLE)
        token_id = tunnel.owner.token_id
        if requested is not None:
            if not cfg.port_min <= requested <= cfg.port_max:
                raise InvalidTunnelProperties(
                    f"port {requested} is outside this engine's tcp range {cfg.port_min}-{cfg.port_max}")
            holder = self.reserved_for(requested)
            if holder is not None and holder != token_id:
                raise InvalidTunnelProperties(f"port {requested} is reserved for another agent")
            candidates = [requested]
        else:
            used = {t.props.port for t in self._servers}
            candidates = [p for p in range(cfg.port_min, cfg.port_max + 1)
                          if p not in used and self.reserved_for(p) in (None, token_id)]
        for port in candidates:
            try:
                server = await asyncio.get_running_loop().create_server(
                    lambda: _Visitor(self.ctx, tunnel), cfg.listen_host, port, backlog=1024)  # type: ignore[arg-type]
            except OSError as error:
                if error.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise
            self._servers[tunnel] = server
            self._reserved.pop(port, None)
            return port
        if requested is not None:
            raise InvalidTunnelProperties(f"port {requested} is already in use")
        raise InvalidTunnelProperties("no free port left in this engine's tcp range", ErrorCode.CAPACITY_EXHAUSTED)

    def release(self, tunnel: Tunnel, *, reserve: bool = False) -> None:
        """Stop listening for `tunnel`; with `reserve`, hold the port for its credential for a while."""
        server = self._servers.pop(tunnel, None)
        if server is not None:
            server.close()
            assert self.ctx is not None
            reserve_s = self.ctx.config.tcp.reserve_seconds
            port = tunnel.props.port
            if reserve and reserve_s > 0 and port is not None:
                self._reserved[port] = Reservation(tunnel.owner.token_id, time.monotonic() + reserve_s)
                log.info("tunnel %s: port %d reserved for its credential for %.0fs", tunnel.id, port, reserve_s)

    def close(self) -> None:
        for server in self._servers.values():
            server.close()
        self._servers.clear()


class _Visitor(Pipe):
    def __init__(self, ctx: EngineContext, tunnel: Tunnel) -> None:
        super().__init__()
        self._ctx = ctx
        self._tunnel = tunnel

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.pause_reading()
        self._ctx.spawn(connect_visitor(self._ctx, self._tunnel, self, peer_ip(transport)))
