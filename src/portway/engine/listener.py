"""The engine's one TLS port: classify each connection by its ClientHello, then route it.

Routing happens before TLS is terminated, from a `MSG_PEEK` of the ClientHello (which may span
several TCP segments, so we peek until it is whole, under a deadline):
- SNI of a TLS-passthrough tunnel → the raw bytes go to the agent untouched;
- SNI of a terminated TLS tunnel → TLS ends here with that tunnel's context, the agent gets plaintext;
- ALPN `rstrm/1` → agent protocol (TLS 1.3 only);
- anything else → terminated with the engine certificate and served as HTTP (a tunnel's hostname,
  or the engine's own endpoints).
Because peeking leaves the bytes in the socket, the chosen transport reads the hello itself.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl

from portway.engine.agentconn import AgentConnection
from portway.engine.context import EngineContext
from portway.engine.edges import tlsterm
from portway.engine.edges.h2 import H2Edge
from portway.engine.edges.http1 import HttpEdge
from portway.engine.edges.pages import error_page
from portway.engine.edges.stream import TLS_TOO_OLD, connect_visitor, publish_refusal, refused_tls
from portway.pipe import Pipe
from portway.tls import TLSConnection
from portway.wire import clienthello
from portway.wire.codes import ALPN

log = logging.getLogger("portway.engine.listener")

# How long to wait between peeks when only part of a ClientHello has arrived.
_REPEEK_S = 0.005


def listening_socket(host: str, port: int) -> socket.socket:
    """A non-blocking listening TCP socket on `host:port` (IPv6 when the host is an IPv6 literal)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=2048, reuse_port=False)
    sock.setblocking(False)
    return sock


def _server_name(sni: str | None) -> str | None:
    """SNI must not be an IP literal (RFC 6066 §3), yet some clients (wrk) send one: treat it as absent."""
    if sni is None:
        return None
    try:
        ipaddress.ip_address(sni.strip("[]"))
    except ValueError:
        return sni
    return None


def _http_edge(ctx: EngineContext, sni: str | None, tls_conn: TLSConnection, source_ip: str) -> asyncio.Protocol:
    """The HTTP edge for the version the visitor chose by ALPN (no ALPN: HTTP/1.1); a visitor whose TLS is
    older than its tunnel's project allows gets a one-line refusal instead. Without a usable SNI the tunnel
    is only known from each request's Host, so the edges check the TLS version again there."""
    tunnel = ctx.registry.by_hostname(sni) if sni else None
    if refused_tls(ctx, tunnel, tls_conn.ssl_object.version(), source_ip):
        return TooOldTls()
    if tls_conn.ssl_object.selected_alpn_protocol() == "h2":
        return H2Edge(ctx, sni)
    return HttpEdge(ctx, sni)


class TooOldTls(asyncio.Protocol):
    """Answers a visitor refused by `min_tls_version` with a 426 page and closes."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        status, detail = TLS_TOO_OLD
        transport.write(error_page(status, None, detail, None))
        transport.close()


class Listener:
    """Accepts on one socket and classifies connections; owns their classification tasks."""

    def __init__(self, ctx: EngineContext, sock: socket.socket) -> None:
        self.ctx = ctx
        self.sock = sock
        self._loop = asyncio.get_running_loop()
        self._classifying = 0  # connections between accept and routing (ClientHello + TLS handshake)
        self._accepting = False

    @classmethod
    def bind(cls, ctx: EngineContext, host: str, port: int) -> Listener:
        return cls(ctx, listening_socket(host, port))

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def start(self) -> None:
        self._accepting = True
        self._loop.add_reader(self.sock.fileno(), self._on_acceptable)

    def stop(self) -> None:
        if self._accepting:
            self._loop.remove_reader(self.sock.fileno())
            self._accepting = False
        self.sock.close()

    def _on_acceptable(self) -> None:
        for _ in range(64):
            try:
                conn, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                log.warning("accept failed: %s", error)
                return
            if self._classifying >= self.ctx.config.limits.max_connections:
                self.ctx.counters.rejected_connections += 1
                conn.close()
                continue
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._classifying += 1
            self.ctx.spawn(self._classify(conn, addr[0]))

    async def _classify(self, conn: socket.socket, source_ip: str) -> None:
        try:
            await self._route(conn, source_ip)
        finally:
            self._classifying -= 1

    async def _route(self, conn: socket.socket, source_ip: str) -> None:
        ctx = self.ctx
        try:
            hello = await asyncio.wait_for(self._peek(conn), ctx.config.timeouts.first_message_seconds)
        except (TimeoutError, clienthello.NotTLS, ConnectionError, OSError) as error:
            reason = "timed out" if isinstance(error, TimeoutError) else str(error) or type(error).__name__
            log.info("connection from %s dropped before TLS: %s", source_ip, reason)
            ctx.counters.rejected_connections += 1
            conn.close()
            return
        sni = _server_name(hello.server_name)
        tunnel = ctx.registry.by_hostname(sni) if sni else None
        try:
            if tunnel is not None and tunnel.props.protocol == "tls" and tunnel.props.tls_mode == "passthrough":
                _, visitor = await self._loop.connect_accepted_socket(Pipe, conn)
                assert visitor.transport is not None
                visitor.transport.pause_reading()
                await connect_visitor(ctx, tunnel, visitor, source_ip)
                return
            if tunnel is not None and tunnel.tls is not None and tunnel.props.protocol == "tls":
                await tlsterm.serve(ctx, tunnel, conn, source_ip)
                return
            # An http tunnel with edge TLS options (mTLS…) is terminated with its own context.
            edge_tls = tunnel.tls if tunnel is not None and tunnel.tls is not None else ctx.edge_tls
            timeout_s = ctx.config.timeouts.first_message_seconds
            if ALPN in hello.alpn:
                def terminate() -> TLSConnection:
                    return TLSConnection(ctx.agent_tls, lambda: AgentConnection(ctx), server_side=True,
                                         handshake_timeout_s=timeout_s)
            else:
                def terminate() -> TLSConnection:
                    tls_conn = TLSConnection(edge_tls, lambda: _http_edge(ctx, sni, tls_conn, source_ip),
                                             server_side=True, handshake_timeout_s=timeout_s)
                    return tls_conn
            _, tls_conn = await self._loop.connect_accepted_socket(terminate, conn)
            await tls_conn.handshake
        except (ConnectionError, OSError, TimeoutError, ssl.SSLError) as error:
            if tunnel is not None and tunnel.props.mtls_auth and tlsterm.is_mtls_refusal(error):
                ctx.counters.count(ctx.counters.policy_denials, (tunnel.props.protocol or "", "mtls_auth"))
                publish_refusal(ctx, tunnel, None, source_ip, "mtls_auth")
                log.info("tunnel %s: TLS handshake with %s failed (no valid client certificate): %s",
                         tunnel.id, source_ip, error)
            else:
                log.info("TLS handshake with %s failed: %s", source_ip, error)
            conn.close()

    async def _peek(self, conn: socket.socket) -> clienthello.ClientHello:
        seen = -1
        while True:
            await self._readable(conn)
            data = conn.recv(clienthello.MAX_HELLO_BYTES, socket.MSG_PEEK)
            if not data:
                raise ConnectionResetError("closed before the TLS ClientHello")
            hello = clienthello.peek(data)
            if hello is not None:
                return hello
            if len(data) == seen:
                await asyncio.sleep(_REPEEK_S)
            seen = len(data)

    async def _readable(self, conn: socket.socket) -> None:
        future: asyncio.Future[None] = self._loop.create_future()
        fd = conn.fileno()

        def ready() -> None:
            if not future.done():
                future.set_result(None)

        self._loop.add_reader(fd, ready)
        try:
            await future
        finally:
            self._loop.remove_reader(fd)
