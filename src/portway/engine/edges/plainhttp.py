"""The optional plain-HTTP listener (`http.enabled`): cleartext port 80 (or any) next to the TLS port.

By default every request is answered with `308 Permanent Redirect` to the same path and query on
`https://<host>[:<public port>]`. Only hosts this engine owns are redirected — its own host, the
`*.t.<host>` zone (`wire.hostnames.is_engine_hostname`) and hostnames of live http tunnels — so the
listener can never be used as an open redirect to an arbitrary host; others get a 404 page.

With `http.serve_tunnels` (a Portway extension) the listener serves published HTTP tunnels in
cleartext instead, through the same `HttpEdge` as the TLS port (`scheme="http"`, no SNI): routing by
Host, `X-Forwarded-Proto: http`, error pages and the engine's health endpoint all behave the same — except
that a tunnel whose project sets `min_tls_version` is never served in cleartext: its requests get the
redirect mode's `308` to HTTPS (counted as a `project_min_tls_version` denial).

In serve mode, HTTP/2 with prior knowledge (h2c, RFC 9113 §3.3) is served too: a connection that opens
with the HTTP/2 preface goes to the same `H2Edge` as ALPN h2 on the TLS port.
"""

from __future__ import annotations

import asyncio
import html
import ipaddress
import logging
import re
import socket
from collections.abc import Callable
from typing import cast

import httptools

from portway.engine.agentconn import peer_ip
from portway.engine.context import EngineContext
from portway.engine.edges.stream import TLS_DENIAL
from portway.engine.listener import listening_socket
from portway.engine.policy import take_query_token
from portway.wire.hostnames import is_engine_hostname

from .h1rules import MAX_HEAD_BYTES, MAX_HEADERS, Reject
from .h2 import H2Edge
from .http1 import HttpEdge
from .pages import error_page, response

log = logging.getLogger("portway.engine.plainhttp")
access_log = logging.getLogger("portway.access")

_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
# Bytes kept verbatim in a Location path: visible ASCII except '#' (fragments never reach a server).
_SAFE = frozenset(range(0x21, 0x7F)) - {ord("#")}


# ------------------------------------------------------------------------------------------------------------
# Pure helpers


def parse_authority(value: bytes) -> str:
    """The host of a `host[:port]` authority, normalised for comparison: lowercase, no trailing dot,
    IPv6 without brackets and compressed. ValueError (visitor-safe text) when it is not one."""
    try:
        text = value.decode("ascii").strip().lower()
    except UnicodeDecodeError:
        raise ValueError("the Host is not ASCII") from None
    if text.startswith("["):
        literal, bracket, port = text[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            raise ValueError("the Host is not a valid IPv6 literal")
        try:
            name = ipaddress.IPv6Address(literal).compressed
        except ValueError:
            raise ValueError("the Host is not a valid IPv6 literal") from None
        port = port[1:]
    else:
        name, _, port = text.partition(":")
        name = name.rstrip(".")
        if not name or len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
            raise ValueError("the Host is not a valid host name")
    if port and not (port.isdigit() and len(port) <= 5 and int(port) <= 65535):
        raise ValueError("the Host has an invalid port")
    return name


def request_host_and_path(url: bytes, host_header: bytes | None) -> tuple[str, bytes]:
    """(host, path-and-query) a request is for: origin-form takes the host from the Host header,
    absolute-form from its own authority (RFC 9112 §3.2.2). ValueError for anything else."""
    if url.startswith(b"/"):
        if host_header is None:
            raise ValueError("a Host header is required")
        return parse_authority(host_header), url.split(b"#", 1)[0]
    if url[:7].lower() == b"http://" or url[:8].lower() == b"https://":
        try:
            parsed = httptools.parse_url(url)
        except httptools.HttpParserInvalidURLError:
            raise ValueError("the request target is not a valid URL") from None
        # The stubs type these as bytes; absent parts are None.
        host, userinfo, path, query = cast("tuple[bytes | None, ...]",
                                           (parsed.host, parsed.userinfo, parsed.path, parsed.query))
        if not host or userinfo is not None:
            raise ValueError("the request target has no usable host")
        authority = b"[%s]" % host if b":" in host else host
        return parse_authority(authority), (path or b"/") + (b"?" + query if query is not None else b"")
    raise ValueError("only origin-form and absolute-form requests can be redirected")


def https_location(host: str, port: int, path: bytes) -> str:
    """`https://host[:port]/path?query`, the port left out when it is 443. Bytes of `path` that are
    not visible ASCII are percent-encoded, so the result is a valid header value, and it always
    starts with '/', so the path can never change the authority (`@evil.example`)."""
    authority = f"[{host}]" if ":" in host else host
    if port != 443:
        authority += f":{port}"
    if not path.startswith(b"/"):
        path = b"/" + path
    encoded = "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in path)
    return f"https://{authority}{encoded}"


# ------------------------------------------------------------------------------------------------------------
# Redirect mode


class RedirectEdge(asyncio.Protocol):
    """One cleartext connection in redirect mode: every request gets a redirect (or an error page)."""

    def __init__(self, ctx: EngineContext, may_redirect: Callable[[str], bool],
                 connections: set[asyncio.BaseTransport]) -> None:
        self.ctx = ctx
        self.transport: asyncio.Transport | None = None
        self.source_ip: str | None = None
        self._may_redirect = may_redirect
        self._connections = connections
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._host_header: bytes | None = None
        self._hosts = 0
        self._count = 0
        self._head_bytes = 0
        self._accept: str | None = None
        self._failed = False
        self._bytes_in = 0
        self._moved_at_last_check = -1
        self._idle_timer: asyncio.TimerHandle | None = None

    # ---- connection ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.source_ip = peer_ip(transport)
        self._connections.add(transport)
        self._arm_idle_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self.transport is not None:
            self._connections.discard(self.transport)
        self.transport = None

    def _arm_idle_timer(self) -> None:
        self._idle_timer = asyncio.get_running_loop().call_later(
            self.ctx.config.timeouts.http_idle_seconds, self._check_idle)

    def _check_idle(self) -> None:
        """Close a connection that sent nothing for `timeouts.http_idle_seconds` (also one that never did)."""
        if self._bytes_in == self._moved_at_last_check:
            log.info("closing idle plain-HTTP connection from %s", self.source_ip)
            self.close()
            return
        self._moved_at_last_check = self._bytes_in
        self._arm_idle_timer()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self._bytes_in += len(data)
        if self._failed:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Upgrade and CONNECT requests were answered at their end; nothing after them is HTTP/1.1.
            self.close()
        except httptools.HttpParserError:
            self._fail(400, "the request is not valid HTTP/1.1")

    # ---- httptools callbacks ----

    def on_message_begin(self) -> None:
        self._url = b""
        self._host_header = None
        self._hosts = 0
        self._count = 0
        self._head_bytes = 0
        self._accept = None

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._grow(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count += 1
        self._grow(len(name) + len(value))
        if self._count > MAX_HEADERS:
            self._fail(431, "too many request headers")
            return
        lower = name.lower()
        if lower == b"host":
            self._hosts += 1
            self._host_header = value
        elif lower == b"accept":
            self._accept = value.decode("latin-1")

    def on_message_complete(self) -> None:
        if self._failed or self.transport is None or self.transport.is_closing():
            return  # requests pipelined after a `Connection: close` answer get none
        if self._hosts > 1:
            self._fail(400, "more than one Host header")
            return
        try:
            host, path = request_host_and_path(self._url, self._host_header)
        except ValueError as error:
            self._fail(400, str(error))
            return
        if not self._may_redirect(host):
            self._fail(404, "no tunnel is published at this address", host)
            return
        location = https_location(host, self.ctx.public_port, path)
        parser = self._parser
        keep = parser.should_keep_alive() and not parser.should_upgrade()
        body = f'<a href="{html.escape(location)}">{html.escape(location)}</a>\n'.encode()
        answer = response(308, body, "text/html; charset=utf-8", close=not keep, extra=f"Location: {location}\r\n")
        if parser.get_method() == b"HEAD":
            answer = answer[: answer.index(b"\r\n\r\n") + 4]
        self.transport.write(answer)
        self.ctx.counters.count(self.ctx.counters.http_responses, 308)
        access_log.info("src=%s host=%s status=308 %s", self.source_ip, host, location[:256])
        if not keep:
            self.transport.close()

    # ---- helpers ----

    def _grow(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > MAX_HEAD_BYTES and not self._failed:
            self._fail(431, "request head too large")

    def _fail(self, status: int, detail: str, host: str | None = None) -> None:
        """Answer with an error page and close; nothing more is read from this connection."""
        if self._failed:
            return
        self._failed = True
        if self.transport is None or self.transport.is_closing():
            return  # already answered and closing (e.g. bytes pipelined after `Connection: close`)
        self.transport.write(error_page(status, host, detail, self._accept))
        self.transport.close()
        self.ctx.counters.count(self.ctx.counters.http_responses, status)
        access_log.info("src=%s host=%s plain-http status=%d %s", self.source_ip, host, status, detail)


# ------------------------------------------------------------------------------------------------------------
# Serve mode


class _Tracked(asyncio.Protocol):
    """Mixin for an edge on this listener: remembers its transport in the listener's set, so shutdown
    can close what is left (idle keep-alive connections are not streams)."""

    connections: set[asyncio.BaseTransport]
    _tracked_transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._tracked_transport = transport
        self.connections.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._tracked_transport is not None:
            self.connections.discard(self._tracked_transport)
        super().connection_lost(exc)


HTTPS_ONLY = "this tunnel's project requires TLS: it is served over HTTPS only"


def https_redirect(ctx: EngineContext, host: str, target: bytes) -> str:
    """Where a cleartext request for a tunnel whose project sets `min_tls_version` is sent: the same path and
    query on HTTPS, as redirect mode would answer, minus any `rstream.token` (it is not echoed back). `host`
    is the tunnel's hostname, so never an open redirect."""
    if target.startswith(b"/"):
        path = target.split(b"#", 1)[0]
    else:  # absolute-form: its path and query; anything else (`*`) goes to the root
        try:
            _, path = request_host_and_path(target, None)
        except ValueError:
            path = b"/"
    return https_location(host, ctx.public_port, take_query_token(path)[1])


class _ClearHttpEdge(_Tracked, HttpEdge):
    """`HttpEdge` without TLS."""

    def __init__(self, ctx: EngineContext, connections: set[asyncio.BaseTransport]) -> None:
        super().__init__(ctx, None, scheme="http")
        self.connections = connections

    def tls_refusal(self, name: str) -> Reject:
        """A tunnel whose project sets a minimum TLS version is never served in cleartext: 308 to HTTPS."""
        location = https_redirect(self.ctx, name, self._url)
        return Reject(308, HTTPS_ONLY, f"Location: {location}\r\n", denied=TLS_DENIAL)


class _ClearH2Edge(_Tracked, H2Edge):
    """`H2Edge` for h2c prior knowledge."""

    def __init__(self, ctx: EngineContext, connections: set[asyncio.BaseTransport]) -> None:
        super().__init__(ctx, None, scheme="http")
        self.connections = connections

    def tls_refusal(self, name: str, path: bytes) -> tuple[int, str, list[tuple[bytes, bytes]]]:
        """As `_ClearHttpEdge.tls_refusal`, on the stream."""
        return 308, HTTPS_ONLY, [(b"location", https_redirect(self.ctx, name, path).encode("ascii"))]


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class _Sniff(asyncio.Protocol):
    """Serve mode: read just enough of a new connection to tell h2c prior knowledge (the 24-byte
    preface) from HTTP/1.1, then hand the transport and the bytes read to the right edge."""

    def __init__(self, ctx: EngineContext, connections: set[asyncio.BaseTransport]) -> None:
        self.ctx = ctx
        self.connections = connections
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.connections.add(transport)
        self.timer = asyncio.get_running_loop().call_later(self.ctx.config.timeouts.http_idle_seconds, self._idle)

    def _idle(self) -> None:
        assert self.transport is not None
        logging.getLogger("portway.engine.http").info(
            "closing idle visitor connection from %s", peer_ip(self.transport))
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) < len(H2_PREFACE) and H2_PREFACE.startswith(self.buffer):
            return  # could still be the preface
        assert self.transport is not None
        if self.timer is not None:
            self.timer.cancel()
        self.connections.discard(self.transport)
        edge: asyncio.Protocol = (_ClearH2Edge(self.ctx, self.connections) if self.buffer.startswith(H2_PREFACE)
                                  else _ClearHttpEdge(self.ctx, self.connections))
        self.transport.set_protocol(edge)
        edge.connection_made(self.transport)
        edge.data_received(self.buffer)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.transport is not None:
            self.connections.discard(self.transport)


# ------------------------------------------------------------------------------------------------------------
# The listener


class PlainHttpListener:
    """The cleartext listening socket and its live connections."""

    def __init__(self, ctx: EngineContext, sock: socket.socket) -> None:
        self.ctx = ctx
        self.sock = sock
        self.serve_tunnels = ctx.config.http.serve_tunnels
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.BaseTransport] = set()
        self._engine_host = _normalised_host(ctx.host)

    @classmethod
    def bind(cls, ctx: EngineContext) -> PlainHttpListener:
        """Bind `http.listen_addr` (OSError if taken); accepting starts with `start()`."""
        host, port = ctx.config.http.address
        return cls(ctx, listening_socket(host, port))

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def mode(self) -> str:
        return "serving http tunnels in cleartext" if self.serve_tunnels else "redirecting to https"

    async def start(self) -> None:
        self._server = await asyncio.get_running_loop().create_server(self._new_connection, sock=self.sock)

    def stop(self) -> None:
        """Stop accepting; connections already open stay until `close_connections()`."""
        if self._server is not None:
            self._server.close()
        else:
            self.sock.close()

    def close_connections(self) -> None:
        """Close what is still open after shutdown's drain phase (idle keep-alive connections)."""
        for transport in list(self._connections):
            transport.close()
        self._connections.clear()

    def _new_connection(self) -> asyncio.Protocol:
        if self.serve_tunnels:
            return _Sniff(self.ctx, self._connections)
        return RedirectEdge(self.ctx, self.may_redirect, self._connections)

    def may_redirect(self, host: str) -> bool:
        """Hosts this engine owns: its own, its tunnel zone, and any live http tunnel's hostname."""
        if host == self._engine_host or is_engine_hostname(host, self.ctx.host):
            return True
        tunnel = self.ctx.registry.by_hostname(host)
        return tunnel is not None and tunnel.props.protocol == "http"


def _normalised_host(host: str) -> str:
    try:
        return ipaddress.ip_address(host.strip("[]")).compressed
    except ValueError:
        return host.lower().rstrip(".")
