"""HTTP/1.1 edge: route each visitor connection by Host to an http tunnel, streaming both ways.

Requests are parsed (httptools) so their heads can be rewritten — `X-Forwarded-For/Proto/Host` —
and bodies stream through without being buffered whole. Responses from the agent are relayed as raw
bytes: the stream to the agent is bound to the visitor's connection for its whole keep-alive life,
so HTTP/1.1 framing stays intact. An `Upgrade` (WebSocket) or `CONNECT` switches the connection to
raw relaying after the head. Requests for the engine's own host are answered locally.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl

import httptools

from portway.engine.agentconn import peer_ip
from portway.engine.broker import StreamFailed
from portway.engine.context import EngineContext
from portway.engine.edges.stream import count_denial, refused_address, token_memo
from portway.engine.edges.upstreamtls import over_tls
from portway.engine.policy import bearer_token, take_query_token
from portway.engine.registry import Tunnel
from portway.pipe import Pipe
from portway.wire.codes import ErrorCode

from .pages import error_page, response

log = logging.getLogger("portway.engine.http")
access_log = logging.getLogger("portway.access")

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
# Hop-by-hop headers that concern only the visitor's connection, and forwarding headers the edge sets itself.
# `Connection` and `Upgrade` pass: the visitor's connection is relayed 1:1, so the upstream must see them.
_DROPPED = frozenset({b"keep-alive", b"proxy-connection", b"te", b"trailer", b"x-forwarded-proto",
                      b"x-forwarded-host"})


def _route_name(host_header: bytes | None, sni: str | None) -> str:
    """The hostname a request is for: its Host header without port, else the TLS server name."""
    if not host_header:
        return sni or ""
    host = host_header.decode("latin-1").lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rsplit(":", 1)[0].rstrip(".")


class HttpEdge(Pipe):
    """Protocol of one visitor connection (after TLS) on an HTTP surface."""

    def __init__(self, ctx: EngineContext, sni: str | None, scheme: str = "https") -> None:
        super().__init__()
        self.ctx = ctx
        self.sni = sni
        self.scheme = scheme
        self.source_ip: str | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._scheme_bytes = scheme.encode()
        self._url = b""
        self._lines: list[bytes] = []
        self._count = 0
        self._host_header: bytes | None = None
        self._forwarded_for: bytes | None = None
        self._authorization: int | None = None  # index in _lines of the Authorization header
        self._head_bytes = 0
        self._tokens = token_memo(ctx)
        self._out: list[bytes] = []
        self._tunnel: Tunnel | None = None
        self._host: str | None = None
        self._accept: str | None = None
        self._raw = False
        self._local = False
        self._failed = False
        self._idle_timer: asyncio.TimerHandle | None = None
        self._moved_at_last_check = -1

    # ---- connection ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.source_ip = peer_ip(transport)
        self._arm_idle_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        super().connection_lost(exc)

    def _arm_idle_timer(self) -> None:
        self._idle_timer = asyncio.get_running_loop().call_later(
            self.ctx.config.timeouts.http_idle_seconds, self._check_idle)

    def _check_idle(self) -> None:
        """Close a connection on which no byte moved either way for `timeouts.http_idle_seconds`."""
        moved = self.bytes_in + (self.peer.bytes_in if self.peer is not None else 0)
        if moved == self._moved_at_last_check:
            log.info("closing idle visitor connection from %s", self.source_ip)
            self.close()
            return
        self._moved_at_last_check = moved
        self._arm_idle_timer()

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)  # Pipe's count, which this override bypasses: idle check and metrics
        if self._failed:
            return
        if self._raw:
            self._forward(data)
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            # Head of an Upgrade/CONNECT request was forwarded; the rest is opaque bytes.
            self._raw = True
            offset = upgrade.args[0] if upgrade.args else len(data)
            if offset < len(data):
                self._forward(data[offset:])
        except httptools.HttpParserError:
            self._fail(400, "the request is not valid HTTP/1.1")

    def peer_lost(self, peer: Pipe) -> None:
        if peer.bytes_in == 0 and not self._failed and self.transport is not None:
            self._fail(502, "the service behind this tunnel closed the connection without answering")
            return
        super().peer_lost(peer)

    # ---- httptools callbacks ----

    def on_message_begin(self) -> None:
        self._url = b""
        self._lines = []
        self._count = 0
        self._host_header = None
        self._accept = None
        self._forwarded_for = None
        self._authorization = None
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._grow(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        """One pass per header: remember what routing needs and build the upstream head as we go."""
        self._count += 1
        self._grow(len(name) + len(value))
        if self._count > MAX_HEADERS:
            self._fail(431, "too many request headers")
            return
        lower = name.lower()
        if lower == b"host":
            self._host_header = value
        elif lower == b"accept":
            self._accept = value.decode("latin-1")
        elif lower == b"x-forwarded-for":
            self._forwarded_for = value
            return
        elif lower in _DROPPED:
            return
        elif lower == b"authorization":
            self._authorization = len(self._lines)
        self._lines.append(b"%s: %s\r\n" % (name, value))

    def on_headers_complete(self) -> None:
        if self._failed:
            return
        name = _route_name(self._host_header, self.sni)
        if self._local or self._is_engine_host(name):
            self._local = True
            return
        if self._tunnel is None:
            tunnel = self.ctx.registry.by_hostname(name)
            if tunnel is None or tunnel.props.protocol != "http":
                self._fail(404, "no tunnel is published at this address")
                return
            if self.sni and self.sni != name:
                self._fail(421, "the request's Host does not match the TLS server name")
                return
            self._host = name
            if refused_address(self.ctx, tunnel, self.source_ip) is not None:
                self._fail(403, "your address is not allowed to reach this tunnel")
                return
            if not self._admit_token(tunnel):
                return
            self._tunnel = tunnel
            self._open_stream(tunnel)
        elif name != self._host:
            self._fail(421, "one connection serves one tunnel host")
            return
        elif not self._admit_token(self._tunnel):
            return
        self._forward(self._build_head())

    def on_body(self, body: bytes) -> None:
        if not self._local and not self._failed:
            self._forward(body)

    def on_message_complete(self) -> None:
        if self._local:
            self._answer_locally()
            return
        tunnel = self._tunnel
        if tunnel is not None:
            access_log.info("tunnel=%s src=%s %s %s", tunnel.id, self.source_ip,
                            self._parser.get_method().decode("latin-1"), self._url[:256].decode("latin-1"))

    # ---- helpers ----

    def _admit_token(self, tunnel: Tunnel) -> bool:
        """token_auth: this request carries a valid token (header or query), which is then removed so it
        never reaches the upstream. Answers 401 and returns False otherwise."""
        if tunnel.policy is None or not tunnel.policy.token_auth:
            return True
        header = self._lines[self._authorization] if self._authorization is not None else None
        token = bearer_token(header.split(b":", 1)[1] if header else None)
        if token is not None and self._authorization is not None:
            del self._lines[self._authorization]
            self._authorization = None
        query_token, self._url = take_query_token(self._url)
        token = token or query_token
        if token is not None and self._tokens.valid(token):
            return True
        count_denial(self.ctx, tunnel, "token_auth", self.source_ip)
        challenge = 'Bearer realm="portway"' + (', error="invalid_token"' if token is not None else "")
        self._fail(401, "a valid token is required: send Authorization: Bearer <token>",
                   extra=f"WWW-Authenticate: {challenge}\r\n")
        return False

    def _grow(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > MAX_HEAD_BYTES and not self._failed:
            self._fail(431, "request head too large")

    def _is_engine_host(self, name: str) -> bool:
        return name in ("", self.ctx.host) or name.replace(".", "").isdigit() or name.startswith("[")

    def _build_head(self) -> bytes:
        """The request head as sent upstream: hop-by-hop headers dropped, X-Forwarded-* set."""
        parser = self._parser
        client = (self.source_ip or "unknown").encode()
        forwarded_for = self._forwarded_for + b", " + client if self._forwarded_for else client
        return b"%s %s HTTP/%s\r\n%sX-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\nX-Forwarded-Host: %s\r\n\r\n" % (
            parser.get_method(), self._url, parser.get_http_version().encode(), b"".join(self._lines),
            forwarded_for, self._scheme_bytes, self._host_header or b"")

    def _forward(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)
        else:
            self._out.append(data)

    def _open_stream(self, tunnel: Tunnel) -> None:
        assert self.transport is not None
        self.transport.pause_reading()
        self.ctx.spawn(self._connect(tunnel))

    async def _connect(self, tunnel: Tunnel) -> None:
        try:
            agent = await self.ctx.broker.open_stream(tunnel, self.source_ip)
        except StreamFailed as error:
            status = 503 if error.code in (ErrorCode.TUNNEL_NOT_FOUND, ErrorCode.CAPACITY_EXHAUSTED) else 502
            if error.code == ErrorCode.SERVICE_UNAVAILABLE and "in time" in error.reason:
                status = 504
            log.info("tunnel %s: no stream for %s: %s", tunnel.id, self.source_ip, error.reason)
            self._fail(status, "the tunnel's agent is unavailable" if status != 502
                       else "the agent could not reach the service behind this tunnel")
            return
        if tunnel.props.upstream_tls or tunnel.props.http_use_tls:
            try:
                agent = await over_tls(agent, Pipe, self.ctx.config.timeouts.first_message_seconds)
            except (OSError, ssl.SSLError, TimeoutError) as error:
                log.info("tunnel %s: TLS to the upstream failed: %s", tunnel.id, error)
                agent.close()
                self._fail(502, "TLS to the service behind this tunnel failed")
                return
        if self.closed:
            agent.close()
            return
        self.peer, agent.peer = agent, self
        self.ctx.streams.add(self, agent)
        assert agent.transport is not None
        if self._out:
            agent.transport.write(b"".join(self._out))
            self._out.clear()
        agent._flush_backlog()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def _answer_locally(self) -> None:
        """The engine's own host: a health endpoint now; the Engine API comes later."""
        assert self.transport is not None
        path = self._url.split(b"?", 1)[0]
        keep = self._parser.should_keep_alive()
        if path in (b"/healthz", b"/api/health"):
            body = json.dumps({"status": "ok", "version": self.ctx.version,
                               "tunnels": len(self.ctx.registry)}).encode()
            self.transport.write(response(200, body, "application/json", close=not keep))
        else:
            self.transport.write(error_page(404, self.ctx.host, "unknown engine endpoint", "application/json",
                                            close=not keep))
        if not keep:
            self.transport.close()

    def _fail(self, status: int, detail: str, extra: str = "") -> None:
        """Answer with an error page and close; nothing more is read from this visitor."""
        if self._failed:
            return
        self._failed = True
        host = self._host or self.sni
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(error_page(status, host, detail, self._accept, extra=extra))
            self.transport.close()
        access_log.info("src=%s host=%s status=%d %s", self.source_ip, host, status, detail)
        if self.peer is not None:
            self.peer.close()
