"""The Prometheus scrape endpoint (`metrics.prometheus`): a deliberately small HTTP/1.1 server.

It answers one thing — `GET <path>` — so it is written on httptools rather than pulling in a web
framework. It may listen off loopback, so it is bounded like the edge: a request (head and any body)
of at most `MAX_REQUEST_BYTES`, which must arrive within `timeouts.first_message_seconds`; keep-alive
connections idle for `timeouts.http_idle_seconds` are closed; at most `MAX_CONNECTIONS` at once. The
bearer token is compared in constant time and never logged.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from http import HTTPStatus

import httptools
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from portway.engine.agentconn import peer_ip
from portway.engine.config import PrometheusSection, TimeoutsSection
from portway.errors import ConfigError

log = logging.getLogger("portway.engine.metrics")

MAX_REQUEST_BYTES = 8 * 1024
MAX_CONNECTIONS = 64
# Stop: how long open scrape connections get to finish closing.
_CLOSE_WAIT_S = 1.0


class MetricsServer:
    """Serves `registry` at `section.path` on `section.listen_addr` until `close()`."""

    def __init__(self, section: PrometheusSection, timeouts: TimeoutsSection, registry: Collector) -> None:
        self.section = section
        self.registry = registry
        self.head_timeout_s = timeouts.first_message_seconds
        self.idle_timeout_s = timeouts.http_idle_seconds
        self._token = section.bearer_token.encode() if section.bearer_token is not None else None
        self._server: asyncio.Server | None = None
        self.connections: set[_ScrapeConnection] = set()

    async def start(self) -> None:
        """Bind and accept. Raises ConfigError naming the key when the address cannot be bound."""
        host, port = self.section.address
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(lambda: _ScrapeConnection(self), host or None, port)
        except OSError as error:
            raise ConfigError(f"metrics.prometheus.listen_addr: cannot listen on {self.section.listen_addr}: "
                              f"{error.strerror or error}") from None
        shown = f"[{host}]" if ":" in host else (host or "*")
        log.info("metrics listening on http://%s:%d%s%s", shown, self.port, self.section.path,
                 " (bearer token required)" if self._token is not None else "")

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop accepting and close open connections (a response being written is flushed first)."""
        if self._server is None:
            return
        self._server.close()
        for conn in list(self.connections):
            conn.close()
        try:
            await asyncio.wait_for(self._server.wait_closed(), _CLOSE_WAIT_S)
        except TimeoutError:
            for conn in list(self.connections):
                conn.abort()
        self._server = None

    def authorized(self, header: bytes | None) -> str | None:
        """None if the request may scrape, else why not (for the log; never the token itself)."""
        if self._token is None:
            return None
        if header is None:
            return "no Authorization header"
        scheme, _, credentials = header.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return "Authorization is not a bearer token"
        if not hmac.compare_digest(credentials.strip(), self._token):
            return "wrong bearer token"
        return None


class _ScrapeConnection(asyncio.Protocol):
    """One client connection: parse requests, answer each when it is complete."""

    def __init__(self, server: MetricsServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.peer: str | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._timer: asyncio.TimerHandle | None = None
        self._url = b""
        self._authorization: bytes | None = None
        self._accept = ""
        self._size = 0  # bytes of the current request, as parsed
        self._unparsed = 0  # bytes received since the last complete request (httptools buffers partial headers)
        self._head_done = False
        self._closing = False

    # ---- connection ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses
        self.peer = peer_ip(transport)
        if len(self.server.connections) >= MAX_CONNECTIONS:
            log.warning("metrics connection from %s refused: %d connections are open", self.peer, MAX_CONNECTIONS)
            transport.close()
            self._closing = True
            return
        self.server.connections.add(self)
        self._arm(self.server.head_timeout_s, self._no_request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._unparsed += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._finish("an Upgrade or CONNECT request")
        except httptools.HttpParserError:
            self._refuse(HTTPStatus.BAD_REQUEST, "the request is not valid HTTP/1.1")
        if self._unparsed > MAX_REQUEST_BYTES:
            self._too_large()

    def close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # ---- httptools callbacks ----

    def on_message_begin(self) -> None:
        self._url = b""
        self._authorization = None
        self._accept = ""
        self._size = 0
        self._head_done = False
        self._arm(self.server.head_timeout_s, self._no_request)

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._grow(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._grow(len(name) + len(value) + 4)
        lower = name.lower()
        if lower == b"authorization":
            self._authorization = value
        elif lower == b"accept":
            self._accept = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._head_done = True

    def on_body(self, body: bytes) -> None:
        self._grow(len(body))

    def on_message_complete(self) -> None:
        self._unparsed = 0
        if self._closing:
            return
        keep_alive = self._parser.should_keep_alive()
        method = self._parser.get_method()
        path = self._url.split(b"?", 1)[0].decode("latin-1")
        why_not = self.server.authorized(self._authorization)
        if why_not is not None:
            log.info("metrics request from %s refused: %s", self.peer, why_not)
            self._answer(HTTPStatus.UNAUTHORIZED, b"unauthorized\n", close=not keep_alive,
                         headers=b'WWW-Authenticate: Bearer realm="metrics"\r\n')
        elif path != self.server.section.path:
            log.info("metrics request from %s for an unknown path %.100r", self.peer, path)
            self._answer(HTTPStatus.NOT_FOUND, b"not found\n", close=not keep_alive)
        elif method not in (b"GET", b"HEAD"):
            log.info("metrics request from %s with method %.20r refused", self.peer, method.decode("latin-1"))
            self._answer(HTTPStatus.METHOD_NOT_ALLOWED, b"method not allowed\n", close=not keep_alive,
                         headers=b"Allow: GET, HEAD\r\n")
        else:
            encode, content_type = choose_encoder(self._accept)
            self._answer(HTTPStatus.OK, encode(self.server.registry), content_type, close=not keep_alive,
                         head_only=method == b"HEAD")
        if keep_alive:
            self._arm(self.server.idle_timeout_s, self._idle)
        else:
            self._finish(None)

    # ---- helpers ----

    def _grow(self, n: int) -> None:
        self._size += n
        if self._size > MAX_REQUEST_BYTES:
            self._too_large()

    def _too_large(self) -> None:
        if not self._closing:
            too_large = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
            self._refuse(too_large if self._head_done else HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                         f"request over {MAX_REQUEST_BYTES} bytes")

    def _answer(self, status: HTTPStatus, body: bytes, content_type: str = "text/plain; charset=utf-8", *,
                headers: bytes = b"", close: bool = False, head_only: bool = False) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n" % (
                status.value, status.phrase.encode(), content_type.encode(), len(body), headers,
                b"Connection: close\r\n" if close else b"") + (b"" if head_only else body))

    def _refuse(self, status: HTTPStatus, reason: str) -> None:
        """A request this server will not read to its end: answer, then close the connection."""
        log.info("metrics request from %s refused: %s", self.peer, reason)
        self._answer(status, f"{status.phrase.lower()}\n".encode(), close=True)
        self._finish(None)

    def _finish(self, reason: str | None) -> None:
        if reason is not None:
            log.info("metrics connection from %s closed: %s", self.peer, reason)
        if self._timer is not None:
            self._timer.cancel()
        self.close()

    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(seconds, callback)

    def _no_request(self) -> None:
        self._finish(f"no complete request within {self.server.head_timeout_s:g}s")

    def _idle(self) -> None:
        log.debug("closing idle metrics connection from %s", self.peer)
        self.close()
