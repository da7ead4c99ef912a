"""HTTP/1.1 edge: route each visitor connection by Host to an http tunnel, streaming both ways.

Requests are parsed (httptools) so their heads can be checked (`h1rules`) and rewritten, and bodies
stream through without being buffered whole (chunked bodies are re-chunked). The stream to the agent
is bound to the visitor's connection for its whole keep-alive life, and responses are relayed as raw
bytes — framing stays the upstream's — while a second httptools parser follows them, to log, count
and time each exchange and to see a `101` or a `2xx` to CONNECT, after which both directions become
raw. Requests for the engine's own host are answered locally.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl

import httptools

from portway.engine import summaries
from portway.engine.agentconn import peer_ip
from portway.engine.api import routes as api_routes
from portway.engine.authorize import may
from portway.engine.broker import StreamFailed
from portway.engine.context import EngineContext
from portway.engine.edges import upstreamtls
from portway.engine.edges.h1toh2 import bridge
from portway.engine.edges.pool import UpstreamH1
from portway.engine.edges.stream import (
    NOT_PERMITTED,
    TLS_DENIAL,
    TLS_TOO_OLD,
    count_denial,
    failure_kind,
    failure_page,
    http_draft,
    publish_http_summary,
    refused_address,
    refused_tls,
    tls_version,
    token_memo,
    token_principal,
)
from portway.engine.edges.upstreamtls import over_tls
from portway.engine.edges.watchstream import H1Watch
from portway.engine.policy import bearer_token, take_query_token
from portway.engine.registry import Tunnel
from portway.pipe import Pipe

from .h1engine import EngineHost
from .h1exchanges import BODY, ENDED, SWITCH, Exchange, Exchanges, access_line, kind_of
from .h1rules import (
    MAX_HEAD_BYTES,
    MAX_LOGGED_TARGET,
    MAX_TARGET_BYTES,
    Forwarding,
    Reject,
    RequestHead,
    is_engine_host,
    route_name,
)
from .h1upstream import Upstream
from .pages import error_page

log = logging.getLogger("portway.engine.http")
access_log = logging.getLogger("portway.access")

# Why the visitor's reading is paused (bits): its stream is being opened; a request waits for the
# responses before it; bytes after an Upgrade/CONNECT wait for the answer; the agent's transport is
# full; the connection failed (_ANSWERING, an engine API answer being worked out, is h1engine's).
_CONNECTING, _HOLDING, _SWITCHING, _BACKPRESSURE, _FAILED = 1, 2, 4, 8, 16


class HttpEdge(EngineHost, Pipe):
    """Protocol of one visitor connection (after TLS) on an HTTP surface.

    Inside httptools callbacks a refusal is raised as `Reject`; everywhere else it is `_fail`."""

    def __init__(self, ctx: EngineContext, sni: str | None, scheme: str = "https") -> None:
        super().__init__()
        self.ctx = ctx
        self.sni = sni
        self.scheme = scheme
        self.source_ip: str | None = None
        self._loop = asyncio.get_running_loop()
        self._head = RequestHead()
        self.on_header = self._head.add  # one call per field from the parser, not two
        self._parser = httptools.HttpRequestParser(self)
        self._forwarding = Forwarding(None, scheme.encode())
        self._route: tuple[bytes | None, str, bool] = (None, "", False)  # last Host, its name, engine's own?
        self._url = b""
        self._started = 0.0
        self._in_message = False
        self._in_head = False
        self._head_read = 0  # bytes read while a head was incomplete (httptools buffers field values)
        self._chunked = False
        self._body_seen = False
        self._quiet = 0  # chunked-body bytes read without body data: trailers, which httptools buffers
        self._current: Exchange | None = None  # the request being received
        self._exchanges = Exchanges()  # owed a response, oldest first
        self._out: list[bytes] = []  # for the agent, before its stream exists
        self._stash: list[bytes] | None = None  # after an Upgrade/CONNECT, until the upstream answers
        self._rx_mark = 0  # visitor bytes already accounted to requests
        self._tx_mark = 0  # agent bytes already accounted to responses
        self._tunnel: Tunnel | None = None
        self._tokens = token_memo(ctx)
        self._count_status = functools.partial(ctx.counters.count, ctx.counters.http_responses)
        self._host: str | None = None
        self._upstream: Upstream | None = None
        self._paused = 0
        self._raw = False
        self._local = False
        self._local_body = bytearray()  # a request body for the engine's own endpoints (bounded)
        self._watching: H1Watch | None = None  # the signaling watch this connection was handed to
        self._failed = False
        self._closing = False
        self._upstream_gone = False
        self._deferred: bytes | None = None  # an error page that waits for the responses owed before it
        self._answering: asyncio.Future[None] | None = None  # the last engine API answer still being awaited
        self._idle_timer: asyncio.TimerHandle | None = None
        self._moved_at_last_check = -1
        self._draft: summaries.Draft | None = None  # the summary of the latest request head (when watched)

    # ---- connection ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.source_ip = peer_ip(transport)
        self._forwarding = Forwarding(self.source_ip, self.scheme.encode())
        self._arm_idle_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._pool_upstream()
        while self._exchanges:
            self._log(self._exchanges.popleft(), error="the connection closed before the response ended", by="visitor")
        super().connection_lost(exc)

    def _arm_idle_timer(self) -> None:
        self._idle_timer = self._loop.call_later(self.ctx.config.timeouts.http_idle_seconds, self._check_idle)

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
        self.bytes_in += len(data)
        if self._raw:
            upstream = self.peer
            if upstream is not None and upstream.transport is not None:
                upstream.transport.write(data)
            return
        if self._failed:
            return
        if self._stash is not None:
            self._stash.append(data)
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            # The Upgrade/CONNECT head went upstream; what follows waits for the upstream's answer.
            offset = upgrade.args[0] if upgrade.args else len(data)
            if self._watching is not None:  # the engine's own WebSocket: what followed the head is its
                if offset < len(data):
                    self._watching.data_received(data[offset:])
                return
            self._stash = [data[offset:]]
            self._pause(_SWITCHING)
            if self._local:
                self.close()
            return
        except httptools.HttpParserCallbackError as error:
            if not isinstance(error.__context__, Reject):
                raise
            reject = error.__context__
            self._fail(reject.status, reject.detail, extra=reject.extra, denied=reject.denied)
            return
        except httptools.HttpParserError as error:
            # in a body already on its way upstream (`_current`), the page cannot wait for earlier responses
            self._fail(400, "the request is not valid HTTP/1.1", f"invalid request: {error}", self._current)
            return
        if self._in_head:
            self._head_read += len(data)
            if self._head_read > MAX_HEAD_BYTES:
                self._fail(431, "the request headers are too large")
        elif self._chunked:
            self._quiet = 0 if self._body_seen else self._quiet + len(data)
            self._body_seen = False
            if self._quiet > MAX_HEAD_BYTES:
                self._fail(431, "the request trailers are too large", ex=self._current)

    def eof_received(self) -> bool:
        """The visitor stopped sending: answer what it asked (TLS half-close), then close."""
        if self._raw:
            return super().eof_received()
        self._eof = True
        if self._answering is not None:
            return self._can_half_close()
        if self._in_message or not self._exchanges:
            return False
        return self._can_half_close()

    def peer_lost(self, peer: Pipe) -> None:
        if not self._raw:
            self.upstream_ended()
        super().peer_lost(peer)

    # ---- httptools callbacks (request) ----

    def on_message_begin(self) -> None:
        self._head.reset()
        self._url = b""
        self._in_message = self._in_head = True
        self._head_read = 0
        self._started = self._loop.time()

    def on_url(self, url: bytes) -> None:
        url = self._url + url
        if len(url) > MAX_TARGET_BYTES:
            raise Reject(414, "the request target is too long")
        self._url = url

    def on_headers_complete(self) -> None:
        self._in_head = False
        head = self._head
        head.done = True
        if self._failed:
            return
        parser, url = self._parser, self._url
        method = parser.get_method()
        upgrade = parser.should_upgrade()
        version = parser.get_http_version()
        head.finish(method, version, url, upgrade)
        # CONNECT's Host names its target; the tunnel is the one the TLS connection was opened for.
        if method == b"CONNECT":
            name = self.sni or ""
            local = is_engine_host(name, self.ctx.host)
        elif head.host is not None and head.host == self._route[0]:
            _, name, local = self._route
        else:
            name = route_name(head.host, self.sni)
            local = is_engine_host(name, self.ctx.host)
            self._route = (head.host, name, local)
        self._local = local
        if local:  # answered at once, so only when no response is owed
            if self._exchanges:
                raise Reject(421, "the engine's own endpoints need a connection of their own")
            return
        if self._answering is not None:  # a tunnel's response must not overtake the engine's answers
            raise Reject(421, "one connection serves one host")
        draft = self._draft_request(method, name) if self.ctx.summary_watchers else None
        if self._tunnel is not None:
            if name != self._host:
                raise Reject(421, "one connection serves one tunnel host")
            if self._tunnel.policy is not None:
                self._admit_token(self._tunnel)
                url = self._url
        else:
            tunnel = self.ctx.registry.by_hostname(name)
            if tunnel is None or tunnel.props.protocol != "http":
                raise Reject(404, "no tunnel is published at this address")
            if draft is not None:
                draft.tunnel = tunnel
            if (self.sni or tunnel.tls is not None) and self.sni != name:
                # A tunnel with its own TLS context (mTLS…) is served only on connections that context ended.
                raise Reject(421, "the request's Host does not match the TLS server name")
            self._host = name
            # Found by Host (no SNI, or an IP literal as SNI): the listener could not check the TLS version.
            if self.sni is None and refused_tls(self.ctx, tunnel, tls_version(self.transport), self.source_ip):
                raise self.tls_refusal(name)
            refusal = refused_address(self.ctx, tunnel, self.source_ip)
            if refusal is not None:
                raise Reject(403, "your address is not allowed to reach this tunnel", denied=refusal)
            if tunnel.policy is not None:
                self._admit_token(tunnel)
                url = self._url
            self._tunnel = tunnel
            self._open_stream(tunnel)
        keep_alive = parser.should_keep_alive()
        ex = Exchange(method, url, self._started, kind_of(method, upgrade), not keep_alive, draft=draft)
        if self._exchanges.open(ex):
            self._pause(_HOLDING)
        self._current = ex
        self._chunked = head.chunked
        self._send(ex, head.build(method, url, version, upgrade=upgrade, keep_alive=keep_alive,
                                  forwarding=self._forwarding))

    def on_body(self, body: bytes) -> None:
        self._body_seen = True
        if self._local:
            self._local_body += body
            if len(self._local_body) > api_routes.MAX_BODY_BYTES:
                raise Reject(413, "the request body is too large for the engine API")
            return
        ex = self._current
        if ex is not None:
            self._send(ex, b"%x\r\n%s\r\n" % (len(body), body) if self._chunked else body)

    def on_message_complete(self) -> None:
        self._in_message = False
        if self._failed:
            return
        if self._local:
            self._answer_locally()
            return
        ex = self._current
        if ex is None:
            return
        self._current = None
        if self._chunked:
            self._chunked = False
            self._send(ex, b"0\r\n\r\n")
        ex.request_bytes = self.bytes_in - self._rx_mark
        self._rx_mark = self.bytes_in

    # ---- responses (called by Upstream) ----

    def response_head(self, status: int) -> bool:
        """A final (or 101) response head for the oldest exchange. True when that response ends here:
        a HEAD's, or a protocol switch after which nothing is parsed."""
        self._count_status(status)
        verdict = self._exchanges.answer(status)
        if verdict == BODY:
            return False
        if verdict == ENDED:
            self.response_done()
        elif verdict == SWITCH:
            self._switch()
        else:
            self.bad_response(f"unexpected {status} response")
        return True

    def response_done(self) -> None:
        ex = self._exchanges.popleft()
        self._log(ex)
        if ex.close_after or self._upstream_gone or (self._eof and not self._exchanges):
            self._close_both()
        elif self._exchanges:
            self._release()
        elif self._deferred is not None:
            self._write_and_close(self._deferred)

    def _switch(self) -> None:
        """101, or 2xx to CONNECT: from now on both directions are relayed as raw bytes."""
        self._log(self._exchanges.popleft())
        upstream = self._upstream
        assert upstream is not None and upstream.transport is not None
        self._raw = upstream.raw = True
        stash, self._stash = self._stash or [], None
        if stash:
            upstream.transport.write(b"".join(stash))
        if self._eof:
            if upstream.transport.can_write_eof():
                upstream.transport.write_eof()
            else:
                upstream.close()
        self._resume(_SWITCHING)

    def bad_response(self, reason: str) -> None:
        """The upstream broke HTTP/1.1: what it sent was relayed, and the connection ends."""
        upstream = self._upstream
        if upstream is not None:
            upstream.raw = True  # stop parsing
        ex = self._exchanges.popleft() if self._exchanges else None
        if ex is not None:
            self._log(ex, error=f"invalid response from the upstream: {reason}")
        else:
            log.info("tunnel %s: invalid response from the upstream: %s", self._tunnel_id(), reason)
        self._close_both()

    def upstream_ended(self) -> None:
        """The agent's side closed or half-closed: it ends a response that runs to the close, or it
        means a request will never be answered."""
        if self._upstream_gone:
            return
        self._upstream_gone = True
        upstream = self._upstream
        if self._exchanges and upstream is not None and not self._closing:
            ex = self._exchanges[0]
            if ex.status:
                self.response_done()
            elif upstream.bytes_in == self._tx_mark and ex.held is None:
                self._fail(502, "the service behind this tunnel closed the connection without answering",
                           "upstream closed before answering", ex)
            else:
                self.bad_response("the connection closed before a complete response head")
        self._close_both()

    def _admit_token(self, tunnel: Tunnel) -> None:
        """token_auth: the request carries a valid token (Bearer header or `rstream.token` query), which
        is then removed so it never reaches the upstream nor the access log. Rejects with 401 otherwise."""
        if tunnel.policy is None or not tunnel.policy.token_auth:
            return  # (callers skip the call when there is no policy at all: this is per request)
        head = self._head
        token = bearer_token(head.authorization_value())
        if token is not None:
            head.take_authorization()
        query_token, self._url = take_query_token(self._url)
        token = token or query_token
        principal = token_principal(self.ctx, self._tokens, tunnel, token, self.source_ip)
        if principal is not None:
            if may(principal, "connect", tunnel, path=self._url.split(b"?", 1)[0].decode("latin-1")):
                return
            count_denial(self.ctx, tunnel, "token_auth", self.source_ip, NOT_PERMITTED, level=logging.WARNING)
            raise Reject(403, "this token may not reach this tunnel or path", denied="token_auth")
        challenge = 'Bearer realm="portway"' + (', error="invalid_token"' if token is not None else "")
        raise Reject(401, "a valid token is required: send Authorization: Bearer <token>",
                     f"WWW-Authenticate: {challenge}\r\n", denied="token_auth")

    def tls_refusal(self, name: str) -> Reject:
        """The answer to a visitor whose TLS is older than the tunnel's project allows: the listener's 426.
        The cleartext listener answers a redirect instead (plainhttp.py)."""
        status, detail = TLS_TOO_OLD
        return Reject(status, detail, denied=TLS_DENIAL)

    def backpressure(self, paused: bool) -> None:
        """The agent's transport is full (or drained): stop (or resume) reading the visitor."""
        if paused:
            self._pause(_BACKPRESSURE)
        else:
            self._resume(_BACKPRESSURE)

    # ---- helpers ----

    def _send(self, ex: Exchange, data: bytes) -> None:
        if ex.held is not None:
            ex.held.append(data)
            return
        upstream = self._upstream
        if upstream is not None and upstream.transport is not None:
            upstream.transport.write(data)
        else:
            self._out.append(data)

    def _release(self) -> None:
        """Send the requests that waited, up to the next one whose response must be alone."""
        data, waiting = self._exchanges.releasable()
        upstream = self._upstream
        if data and upstream is not None and upstream.transport is not None:
            upstream.transport.write(data)
        if not waiting:
            self._resume(_HOLDING)

    def _pause(self, reason: int) -> None:
        if not self._paused and self.transport is not None:
            self.transport.pause_reading()
        self._paused |= reason

    def _resume(self, reason: int) -> None:
        if not self._paused & reason:
            return
        self._paused &= ~reason
        if not self._paused and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def _tunnel_id(self) -> str:
        return self._tunnel.id if self._tunnel is not None else "-"

    def _open_stream(self, tunnel: Tunnel) -> None:
        self._pause(_CONNECTING)
        pooled = self.ctx.upstreams.take_idle(tunnel) if tunnel.props.http_version != "h2c" else None
        if pooled is not None:
            self.ctx.streams.forget(pooled)  # counts its bytes so far; from here on they are this stream's
            pooled.bytes_in = 0
            self._adopt(pooled)
        else:
            self.ctx.spawn(self._connect(tunnel))

    def _pool_upstream(self) -> None:
        """The visitor left between requests: keep the agent stream (an HTTP/1.1 connection at a message
        boundary, kept alive by the upstream) for the tunnel's next visitor, saving it a stream set-up."""
        upstream, tunnel = self._upstream, self._tunnel
        if (upstream is None or tunnel is None or self._raw or self._exchanges or self._in_message
                or self._upstream_gone or not upstream.keep_alive or upstream.closed or upstream.transport is None
                or upstream.transport.is_closing() or tunnel.props.http_version == "h2c"):
            return
        pooled = UpstreamH1(tunnel, self.ctx.upstreams)
        upstream.hand_over(pooled)
        upstream.peer = self.peer = self._upstream = None
        self.ctx.streams.forget(upstream)  # counts its bytes; the pooled side starts from zero
        pooled.bytes_in = 0
        self.ctx.streams.track(pooled, visitor=False)
        pooled.reusable = True
        self.ctx.upstreams.release(pooled)

    async def _connect(self, tunnel: Tunnel) -> None:
        if tunnel.props.http_version == "h2c":  # the upstream speaks HTTP/2: a translating stand-in (h1toh2)
            agent = bridge(self.ctx.broker, self.ctx.h2_upstreams, tunnel, self.source_ip,
                           lambda pipe: self.ctx.streams.track(pipe, visitor=False))
        else:
            try:
                agent = await self.ctx.broker.open_stream(tunnel, self.source_ip)
            except StreamFailed as error:
                status, detail = failure_page(error)
                self._fail(status, detail, error.reason, self._exchanges[0] if self._exchanges else None,
                           failure=failure_kind(error))
                return
        if upstreamtls.wanted(tunnel.props):
            try:
                agent = await over_tls(agent, lambda _alpn: Pipe(), self.ctx.config.timeouts.first_message_seconds)
            except (OSError, ssl.SSLError, TimeoutError) as error:
                agent.close()
                self._fail(502, "TLS to the service behind this tunnel failed", f"TLS to the upstream failed: {error}",
                           self._exchanges[0] if self._exchanges else None, failure="io")
                return
        if self.closed or self._closing:
            agent.close()
            return
        self._adopt(agent)

    def _adopt(self, agent: Pipe) -> None:
        """Take a fresh or pooled agent stream over as this connection's upstream."""
        upstream = Upstream(self)
        agent.hand_over(upstream)
        self.peer = self._upstream = upstream
        self.ctx.streams.add(self, upstream)
        upstream.start(self._out)
        self._resume(_CONNECTING)
        if self.ctx.summary_watchers:  # the requests that waited for this stream (or its head is being read)
            now = self._loop.time()
            for draft in (self._draft, *(ex.draft for ex in self._exchanges)):
                if draft is not None and draft.established is None:
                    draft.established = now

    def _fail(self, status: int, detail: str, reason: str | None = None, ex: Exchange | None = None, *,
              extra: str = "", denied: str | None = None, failure: summaries.FailureKind | None = None) -> None:
        """Answer with an error page and close; nothing more is read from this visitor. `ex` is the
        exchange the page answers (else the request being parsed); a page for a request behind others
        waits for their responses, so it never cuts into one. `denied` (the policy control that refused)
        and `failure` (why no stream) are for the request's summary."""
        if self._closing:
            return
        self._failed = True
        self._pause(_FAILED)
        page = error_page(status, self._host or self._route[1] or self.sni, detail, self._head.accept, extra=extra)
        self._count_status(status)
        draft = ex.draft if ex is not None else self._draft
        if draft is not None and (ex is not None or draft.started == self._started):  # else: an older request's
            draft.denied, draft.failure = denied, failure
        else:
            draft = None
        if ex is not None:
            self._exchanges.remove(ex)
            self._log(ex, status, len(page), reason or detail, by="engine")
        else:
            method = self._parser.get_method() if self._url else b"-"
            self._log_line(method, self._url, status, len(page), self._started, error=reason or detail)
            if draft is not None:  # refused once its head was read
                publish_http_summary(self.ctx, draft, self._loop.time(), status=status,
                                     request_bytes=self.bytes_in - self._rx_mark, response_bytes=len(page),
                                     by="engine", error=reason or detail)
        if ex is None and ((self._exchanges and not self._upstream_gone) or self._answering is not None):
            self._deferred = page
        else:
            self._write_and_close(page)

    def _write_and_close(self, page: bytes) -> None:
        self._closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(page)
        self._close_both()

    def _close_both(self) -> None:
        self._closing = True
        self.close()
        if self.peer is not None:
            self.peer.close()

    def _log(self, ex: Exchange, status: int | None = None, response_bytes: int | None = None,
             error: str | None = None, by: summaries.By = "agent") -> None:
        """The access-log line (and the summary) of an exchange; its response bytes are the agent's bytes
        since the last one. `by` ended it, when it ended with an `error`."""
        if response_bytes is None:
            upstream_in = self._upstream.bytes_in if self._upstream is not None else 0
            response_bytes, self._tx_mark = upstream_in - self._tx_mark, upstream_in
        if access_log.isEnabledFor(logging.INFO):
            self._log_line(ex.method, ex.target, ex.status if status is None else status, response_bytes, ex.started,
                           error=error, request_bytes=ex.request_bytes)
        if ex.draft is not None:
            publish_http_summary(self.ctx, ex.draft, self._loop.time(), status=ex.status if status is None else status,
                                 request_bytes=ex.request_bytes or self.bytes_in - self._rx_mark,
                                 response_bytes=response_bytes, by=by, error=error)

    def _draft_request(self, method: bytes, host: str) -> summaries.Draft:
        """The summary draft of the request whose head was just read (before token_auth takes its token)."""
        request = summaries.http_request(method.decode("latin-1"), self.scheme, host, self._url.decode("latin-1"),
                                         summaries.h1_headers(self._head.lines))
        draft = self._draft = http_draft(self.ctx, self.transport, self.source_ip, self._started, protocol="http/1.1",
                                              request=request)
        draft.tunnel = self._tunnel
        if self._upstream is not None:  # the connection's stream is already there
            draft.established = self._started
        return draft


    def _log_line(self, method: bytes, target: bytes, status: int, response_bytes: int, started: float, *,
                  error: str | None = None, request_bytes: int = 0) -> None:
        """A request's bytes are the visitor's bytes since the last request ended, when not known yet.

        The engine's busiest log line skips `Logger.info`'s caller lookup: the record goes straight to
        `handle` (the logger's filters and handlers, as usual)."""
        if access_log.isEnabledFor(logging.INFO):
            line = access_line(self._tunnel_id(), self.source_ip, method, target[:MAX_LOGGED_TARGET], status=status,
                               request_bytes=request_bytes or self.bytes_in - self._rx_mark,
                               response_bytes=response_bytes, duration_s=self._loop.time() - started, error=error)
            access_log.handle(access_log.makeRecord(access_log.name, logging.INFO, __file__, 0, line, (), None))
