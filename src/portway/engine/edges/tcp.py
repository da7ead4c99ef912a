"""Published TCP tunnels: one listening socket per tunnel, on a requested or allocated port."""

from __future__ import annotations

import asyncio
import errno
import logging

from portway.engine.agentconn import peer_ip
from portway.engine.context import EngineContext
from portway.engine.edges.stream import connect_visitor
from portway.engine.registry import Tunnel
from portway.pipe import Pipe
from portway.wire.codes import ErrorCode
from portway.wire.errors import InvalidTunnelProperties

log = logging.getLogger("portway.engine.tcp")


class TcpEdge:
    """Binds public ports for tcp tunnels and turns each accepted connection into a stream."""

    def __init__(self) -> None:
        self.ctx: EngineContext | None = None
        self._servers: dict[Tunnel, asyncio.Server] = {}

    async def publish(self, tunnel: Tunnel, requested: int | None) -> int:
        """Listen for `tunnel`; return the port. A busy or out-of-range request is refused clearly."""
        assert self.ctx is not None
        cfg = self.ctx.config.tcp
        if not cfg.enabled:
            raise InvalidTunnelProperties("published tcp tunnels are disabled on this engine",
                                          ErrorCode.FEATURE_NOT_AVAILABLE)
        if requested is not None:
            if not cfg.port_min <= requested <= cfg.port_max:
                raise InvalidTunnelProperties(
                    f"port {requested} is outside this engine's tcp range {cfg.port_min}-{cfg.port_max}")
            candidates = [requested]
        else:
            used = {t.props.port for t in self._servers}
            candidates = [p for p in range(cfg.port_min, cfg.port_max + 1) if p not in used]
        for port in candidates:
            try:
                server = await asyncio.get_running_loop().create_server(
                    lambda: _Visitor(self.ctx, tunnel), cfg.listen_host, port, backlog=1024)  # type: ignore[arg-type]
            except OSError as error:
                if error.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise
            self._servers[tunnel] = server
            return port
        if requested is not None:
            raise InvalidTunnelProperties(f"port {requested} is already in use")
        raise InvalidTunnelProperties("no free port left in this engine's tcp range", ErrorCode.CAPACITY_EXHAUSTED)

    def release(self, tunnel: Tunnel) -> None:
        server = self._servers.pop(tunnel, None)
        if server is not None:
            server.close()

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
