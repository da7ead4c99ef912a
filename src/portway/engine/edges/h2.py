"""HTTP/2 edge (ALPN h2): visitors multiplex requests on one connection; each request is relayed to the
tunnel's HTTP/1.1 upstream over a pooled agent stream (see pool.py).

Flow control is what bounds memory both ways: request bodies are acknowledged to the visitor only
while the upstream connection accepts writes, and response bodies are sent within the visitor's
HTTP/2 windows — past a small buffer the upstream connection stops being read until a WINDOW_UPDATE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from portway.engine import summaries
from portway.engine.agentconn import peer_ip
from portway.engine.authorize import may
from portway.engine.broker import StreamFailed
from portway.engine.context import EngineContext
from portway.engine.edges import h2rules, upstreamtls
from portway.engine.edges.h1rules import Reject, host_name, is_engine_host
from portway.engine.edges.h2engine import H2EngineHost
from portway.engine.edges.h2exchange import RESPONSE_BUFFER_BYTES, H1Leg, H2Exchange
from portway.engine.edges.h2shell import H2Shell
from portway.engine.edges.h2upstream import H2Leg, UpstreamH2, h2c_connection
from portway.engine.edges.pages import error_body
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
from portway.engine.edges.watchstream import H2Watch
from portway.engine.policy import bearer_token, take_query_token
from portway.engine.registry import Tunnel

log = logging.getLogger("portway.engine.http")
access_log = logging.getLogger("portway.access")

MAX_CONCURRENT_STREAMS = 100
MAX_HEADER_LIST_BYTES = 64 * 1024
CONNECTION_WINDOW_BYTES = 1024 * 1024


class H2Edge(H2EngineHost, H2Shell):
    """Protocol of one HTTP/2 visitor connection (after TLS)."""

    def __init__(self, ctx: EngineContext, sni: str | None, scheme: str = "https") -> None:
        super().__init__(client_side=False)
        self.ctx = ctx
        self.sni = sni
        self.scheme = scheme.encode()
        self.source_ip: str | None = None
        self._tls_version: str | None = None  # negotiated by the visitor; None in cleartext (h2c)
        self.exchanges: dict[int, H2Exchange] = {}
        self._admitted: set[str] = set()  # tunnels whose network policy admitted this connection
        self._tokens = token_memo(ctx)
        self._visitor_writable = True
        self._tracked = False
        self._idle_timer: asyncio.TimerHandle | None = None
        self._moved_at_last_check = -1
        self._pages: dict[int, bytes] = {}  # edge pages whose body waits for the visitor's window
        self._local: dict[int, tuple[h2rules.H2Request, bytearray]] = {}  # engine API requests with a body
        self._watches: dict[int, H2Watch] = {}  # signaling streams (SSE, WebSocket over extended CONNECT)

    # ---- connection ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.source_ip = peer_ip(transport)
        self._tls_version = tls_version(transport)
        # Initial values, not update(): updated settings only apply once acknowledged, and the first
        # SETTINGS frame would carry the defaults (ENABLE_CONNECT_PROTOCOL=0).
        self.conn.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_BYTES,
            h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1,  # WebSocket over HTTP/2 (RFC 8441)
        })
        self.conn.initiate_connection()
        # A connection window larger than one stream's, so one stalled upload cannot block the others;
        # the per-stream windows (64 KiB × at most 100 streams) still bound what is buffered.
        self.conn.increment_flow_control_window(CONNECTION_WINDOW_BYTES)
        self.flush()
        self._arm_idle_timer()

    def protocol_error(self, error: h2.exceptions.ProtocolError) -> None:
        log.info("HTTP/2 protocol error from %s: %s", self.source_ip, error)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        for exchange in list(self.exchanges.values()):
            self._abandon(exchange)
        for watch in list(self._watches.values()):
            watch.lost()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        self._visitor_writable = False
        for exchange in self.exchanges.values():
            if exchange.leg is not None:
                exchange.leg.pause()

    def resume_writing(self) -> None:
        self._visitor_writable = True
        for exchange in list(self.exchanges.values()):
            if exchange.leg is not None and exchange.pending_bytes <= RESPONSE_BUFFER_BYTES:
                exchange.leg.resume()

    # ---- events ----

    def dispatch(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._request(event)
        elif isinstance(event, h2.events.DataReceived):
            exchange = self.exchanges.get(event.stream_id)
            if event.stream_id in self._watches:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                self._watches[event.stream_id].received(event.data or b"")
            elif event.stream_id in self._local:
                self._local_data(event)
            elif exchange is None:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            else:
                exchange.request_body(event.data, event.flow_controlled_length)
        elif isinstance(event, h2.events.StreamEnded):
            if event.stream_id in self._local:
                request, body = self._local.pop(event.stream_id)
                self._answer_locally(event.stream_id, request, bytes(body))
            exchange = self.exchanges.get(event.stream_id)
            if exchange is not None:
                exchange.end_request()
        elif isinstance(event, h2.events.StreamReset):
            self._local.pop(event.stream_id, None)
            watch = self._watches.pop(event.stream_id, None)
            if watch is not None:
                watch.lost()
            exchange = self.exchanges.pop(event.stream_id, None)
            if exchange is not None:
                self._abandon(exchange)
        elif isinstance(event, h2.events.WindowUpdated):
            targets = self.exchanges.values() if event.stream_id == 0 else [self.exchanges.get(event.stream_id)]
            for exchange in list(targets):
                if exchange is not None:
                    self.send_pending(exchange)
            for stream_id in [s for s in self._pages if event.stream_id in (0, s)]:
                self._send_page(stream_id)
            for watch in [w for s, w in self._watches.items() if event.stream_id in (0, s)]:
                watch.window_opened()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.flush_now()
            self.close()

    def _request(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id
        try:
            request = h2rules.parse_request(list(event.headers or ()))
        except Reject as error:
            self._answer(stream_id, error.status, error.detail, None)
            return
        accept = request.header(b"accept")
        # A plain CONNECT names its target, not the tunnel: it is routed by the TLS server name.
        name = (self.sni or "") if request.connect else host_name(request.authority)
        if is_engine_host(name, self.ctx.host):
            if event.stream_ended is not None or request.method == b"GET" or request.protocol is not None:
                self._answer_locally(stream_id, request, b"")
            else:  # the engine API request has a body: answered at its end (see _local_data)
                self._local[stream_id] = (request, bytearray())
            return
        draft = self._draft_request(request, name) if self.ctx.summary_watchers else None
        tunnel = self.ctx.registry.by_hostname(name)
        if tunnel is None or tunnel.props.protocol != "http":
            self._answer(stream_id, 404, "no tunnel is published at this address", accept, name, draft=draft)
            return
        if draft is not None:
            draft.tunnel = tunnel
        if (self.sni or tunnel.tls is not None) and self.sni != name:  # see HttpEdge: own-context tunnels
            self._answer(stream_id, 421, "the request's authority does not match the TLS server name", accept, name,
                         draft=draft)
            return
        if tunnel.id not in self._admitted:
            # Found by :authority (no SNI, or an IP literal as SNI): the listener could not check the TLS version.
            if self.sni is None and refused_tls(self.ctx, tunnel, self._tls_version, self.source_ip):
                status, detail, extra = self.tls_refusal(name, request.path)
                self._answer(stream_id, status, detail, accept, name, extra=extra, draft=draft, denied=TLS_DENIAL)
                return
            refusal = refused_address(self.ctx, tunnel, self.source_ip)
            if refusal is not None:
                self._answer(stream_id, 403, "your address is not allowed to reach this tunnel", accept, name,
                             draft=draft, denied=refusal)
                return
            self._admitted.add(tunnel.id)
        drop: frozenset[bytes] = frozenset()
        path = request.path
        if tunnel.policy is not None and tunnel.policy.token_auth:
            token = bearer_token(request.header(b"authorization"))
            if token is not None:
                drop = frozenset({b"authorization"})
            query_token, path = take_query_token(path)
            token = token or query_token
            principal = token_principal(self.ctx, self._tokens, tunnel, token, self.source_ip)
            if principal is not None and not may(principal, "connect", tunnel,
                                                 path=path.split(b"?", 1)[0].decode("latin-1")):
                count_denial(self.ctx, tunnel, "token_auth", self.source_ip, NOT_PERMITTED, level=logging.WARNING)
                self._answer(stream_id, 403, "this token may not reach this tunnel or path", accept, name,
                             draft=draft, denied="token_auth")
                return
            if principal is None:
                challenge = b'Bearer realm="portway"' + (b', error="invalid_token"' if token is not None else b"")
                self._answer(stream_id, 401, "a valid token is required: send Authorization: Bearer <token>",
                             accept, name, extra=[(b"www-authenticate", challenge)], draft=draft, denied="token_auth")
                return
        has_body = event.stream_ended is None
        length = request.header(b"content-length")
        if not has_body and length is not None and length.strip() != b"0":
            # h2 checks content-length against DATA only when there is DATA: a head that ends the stream while
            # announcing a body would leave an HTTP/1.1 upstream waiting for bytes that never come (RFC 9113 §8.1.1).
            self._answer(stream_id, 400, "content-length announces a body the request does not have", accept, name,
                         draft=draft)
            return
        websocket = request.protocol is not None
        switching = websocket or request.connect  # the stream becomes a byte relay once the upstream agrees
        chunked = has_body and not switching and request.header(b"content-length") is None
        if request.connect and tunnel.props.http_version == "h2c":
            self._answer(stream_id, 501, "CONNECT to an h2c upstream is not relayed", accept, name, draft=draft)
            return
        if tunnel.props.http_version == "h2c":
            self._start_h2c(stream_id, tunnel, request, drop, path, has_body=has_body, draft=draft)
            return
        key = h2rules.websocket_key() if websocket else None
        head = h2rules.h1_request_head(request, client_ip=self.source_ip or "unknown", scheme=self.scheme,
                                       chunked=chunked, drop=drop, path=path, websocket_key=key)
        # With upstream TLS the upstream may pick HTTP/2 by ALPN: the request is kept in both forms.
        h2_headers = (h2rules.h2_upstream_headers(request, client_ip=self.source_ip or "unknown", scheme=self.scheme,
                                                  drop=drop, path=path, upstream_scheme=b"https")
                      if upstreamtls.wanted(tunnel.props) and not switching else None)
        exchange = H2Exchange(self, stream_id, tunnel, request, head, chunked, websocket_key=key,
                             h2_headers=h2_headers, draft=draft)
        if not has_body:
            exchange.request_ended = True
        self._register(exchange)
        h2_upstream = self.ctx.h2_upstreams.with_room(tunnel) if h2_headers is not None else None
        upstream = self.ctx.upstreams.take_idle(tunnel) if h2_upstream is None else None
        if h2_upstream is not None:
            self._attach_h2(exchange, h2_upstream)
        elif upstream is not None:
            exchange.attach(H1Leg(upstream))
        else:
            self.ctx.spawn(self._connect(exchange))

    def tls_refusal(self, name: str, path: bytes) -> tuple[int, str, list[tuple[bytes, bytes]]]:
        """(status, detail, headers) for a visitor whose TLS is older than the tunnel's project allows: the
        listener's 426. The cleartext listener answers a redirect instead (plainhttp.py)."""
        status, detail = TLS_TOO_OLD
        return status, detail, []

    def _start_h2c(self, stream_id: int, tunnel: Tunnel, request: h2rules.H2Request, drop: frozenset[bytes],
                   path: bytes, *, has_body: bool, draft: summaries.Draft | None) -> None:
        """A request for an h2c upstream: one stream on a pooled upstream HTTP/2 connection. An extended
        CONNECT (WebSocket) stays one: the upstream answers 200 and the stream carries the frames."""
        headers = h2rules.h2_upstream_headers(request, client_ip=self.source_ip or "unknown", scheme=self.scheme,
                                              drop=drop, path=path)
        exchange = H2Exchange(self, stream_id, tunnel, request, b"", chunked=False, h2_headers=headers, draft=draft)
        exchange.request_ended = not has_body
        self._register(exchange)
        upstream = self.ctx.h2_upstreams.with_room(tunnel)
        if upstream is not None:
            exchange.attach(H2Leg(upstream, headers, end_on_head=not has_body))
        else:
            self.ctx.spawn(self._connect_h2c(exchange))

    def _register(self, exchange: H2Exchange) -> None:
        self.exchanges[exchange.stream_id] = exchange
        if not self._tracked:
            self._tracked = True
            self.ctx.streams.track(self, visitor=True)

    def _stream_failed(self, exchange: H2Exchange, error: StreamFailed) -> None:
        log.info("tunnel %s: no stream for %s: %s", exchange.tunnel.id, self.source_ip, error.reason)
        status, detail = failure_page(error)
        if exchange.draft is not None:
            exchange.draft.failure = failure_kind(error)
        self.fail_exchange(exchange, status, detail)

    async def _connect_h2c(self, exchange: H2Exchange) -> None:
        assert exchange.h2_headers is not None
        try:
            h2c = await h2c_connection(self.ctx.broker, self.ctx.h2_upstreams, exchange.tunnel, self.source_ip,
                                       lambda pipe: self.ctx.streams.track(pipe, visitor=False))
        except StreamFailed as error:
            self._stream_failed(exchange, error)
            return
        self._attach_h2(exchange, h2c)

    def _attach_h2(self, exchange: H2Exchange, upstream: UpstreamH2) -> None:
        assert exchange.h2_headers is not None
        if exchange.finished or self.exchanges.get(exchange.stream_id) is not exchange:
            self.ctx.h2_upstreams.settle(upstream)  # no request for it after all: pooled, idle
            return
        # END_STREAM on the head only for a request without any body (one that ended while we connected
        # may still have body bytes queued).
        exchange.attach(H2Leg(upstream, exchange.h2_headers,
                              end_on_head=exchange.request_ended and not exchange.queued))
        self.flush()

    async def _connect(self, exchange: H2Exchange) -> None:
        try:
            agent = await self.ctx.broker.open_stream(exchange.tunnel, self.source_ip)
        except StreamFailed as error:
            self._stream_failed(exchange, error)
            return
        tunnel = exchange.tunnel
        if upstreamtls.wanted(tunnel.props):
            def speak(alpn: str | None) -> UpstreamH1 | UpstreamH2:
                if alpn == "h2":
                    return UpstreamH2(tunnel, self.ctx.h2_upstreams)
                return UpstreamH1(tunnel, self.ctx.upstreams)

            try:
                chosen = await over_tls(agent, speak, self.ctx.config.timeouts.first_message_seconds,
                                        h2=exchange.h2_headers is not None)
            except (OSError, ssl.SSLError, TimeoutError) as error:
                log.info("tunnel %s: TLS to the upstream failed: %s", tunnel.id, error)
                agent.close()
                self.fail_exchange(exchange, 502, "TLS to the service behind this tunnel failed")
                return
            if isinstance(chosen, UpstreamH2):  # the upstream picked HTTP/2: pooled with the h2c ones
                self.ctx.h2_upstreams.add(chosen)
                self.ctx.streams.track(chosen, visitor=False)
                self._attach_h2(exchange, chosen)
                return
            upstream = chosen
        else:
            upstream = UpstreamH1.take(agent, tunnel, self.ctx.upstreams)
        self.ctx.streams.track(upstream, visitor=False)
        if exchange.finished or self.exchanges.get(exchange.stream_id) is not exchange:
            upstream.close()  # the visitor gave up meanwhile; the framing of this connection is unknown
            return
        exchange.attach(H1Leg(upstream))
        self.flush()

    # ---- response side (called by exchanges) ----

    def acknowledge(self, exchange: H2Exchange) -> None:
        """Open the visitor's window for request bytes once the upstream takes them."""
        if (exchange.unacked and exchange.leg is not None and exchange.writable and not exchange.finished
                and not exchange.holding):
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self.conn.acknowledge_received_data(exchange.unacked, exchange.stream_id)
            exchange.unacked = 0
            self.flush()

    def send_head(self, exchange: H2Exchange, headers: list[tuple[bytes, bytes]]) -> None:
        try:
            self.conn.send_headers(exchange.stream_id, headers)
        except h2.exceptions.ProtocolError as error:
            log.info("tunnel %s: response head not relayable over HTTP/2: %s", exchange.tunnel.id, error)
            self.fail_exchange(exchange, 502, "the service behind this tunnel sent a response HTTP/2 cannot carry")
            return
        self.flush()

    def send_pending(self, exchange: H2Exchange) -> None:
        """Send response bytes within the flow-control windows; end the stream once all are out."""
        if exchange.finished:
            return
        sid = exchange.stream_id
        try:
            while exchange.pending:
                window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
                if window <= 0:
                    break
                data = exchange.pending[0]
                if len(data) > window:
                    exchange.pending[0] = data[window:]
                    data = data[:window]
                else:
                    exchange.pending.pop(0)
                exchange.pending_bytes -= len(data)
                self.conn.send_data(sid, data)
            if not exchange.pending and exchange.response_ended:
                if exchange.trailers:
                    self.conn.send_headers(sid, exchange.trailers, end_stream=True)
                else:
                    self.conn.end_stream(sid)
                self._finish(exchange)
        except h2.exceptions.StreamClosedError:
            self._finish(exchange)
        self.flush()
        if (exchange.leg is not None and not exchange.finished and self._visitor_writable
                and exchange.pending_bytes <= RESPONSE_BUFFER_BYTES):
            exchange.leg.resume()

    def fail_exchange(self, exchange: H2Exchange, status: int, detail: str) -> None:
        if exchange.finished:
            return
        if exchange.status:  # the head is out: all the visitor can be told is that the stream broke
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self.conn.reset_stream(exchange.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
            self.flush()
        else:  # the page only: _finish counts and logs the exchange once
            accept = exchange.request.header(b"accept")
            body, content_type = error_body(status, host_name(exchange.request.authority), detail,
                                            accept.decode("latin-1") if accept else None)
            self._respond(exchange.stream_id, status, body, content_type, None)
        exchange.status = exchange.status or status
        self._finish(exchange, detail)
        if exchange.leg is not None:
            exchange.leg.detach()

    def _credit(self, exchange: H2Exchange) -> None:
        """Give back the window of request bytes never acknowledged (a stream that ended, failed or was
        reset): h2 credits the connection window even for a closed stream, and without it the visitor's
        other uploads would stall for good."""
        if exchange.unacked:
            self.conn.acknowledge_received_data(exchange.unacked, exchange.stream_id)
            exchange.unacked = 0
            self.flush()

    def _finish(self, exchange: H2Exchange, error: str | None = None) -> None:
        """The exchange is over (`error`: the edge ended it): counted, logged, summarized."""
        if exchange.finished:
            return
        exchange.finished = True
        self._credit(exchange)
        self.exchanges.pop(exchange.stream_id, None)
        counters = self.ctx.counters
        counters.count(counters.http_responses, exchange.status)
        access_log.info(
            "tunnel=%s src=%s proto=h2 %s %s status=%d bytes_out=%d ms=%.1f", exchange.tunnel.id, self.source_ip,
            exchange.request.method.decode("latin-1"),
            summaries.redact_target(exchange.request.path)[:256].decode("latin-1"),
            exchange.status, exchange.response_bytes, (time.monotonic() - exchange.started) * 1000)
        if exchange.draft is not None:
            publish_http_summary(self.ctx, exchange.draft, time.monotonic(), status=exchange.status,
                                 request_bytes=exchange.request_bytes, response_bytes=exchange.response_bytes,
                                 by="engine", error=error)

    def _abandon(self, exchange: H2Exchange) -> None:
        """The visitor reset the stream or left: an upstream mid-request cannot be reused."""
        if exchange.draft is not None and not exchange.finished:
            publish_http_summary(self.ctx, exchange.draft, time.monotonic(), status=exchange.status,
                                 request_bytes=exchange.request_bytes, response_bytes=exchange.response_bytes,
                                 by="visitor", error="the visitor reset the stream or left")
        exchange.finished = True
        if self.transport is not None and not self.transport.is_closing():
            self._credit(exchange)
        if exchange.leg is not None:
            exchange.leg.detach()

    # ---- local answers ----

    def _answer(self, stream_id: int, status: int, detail: str, accept: bytes | None, host: str | None = None, *,
                extra: list[tuple[bytes, bytes]] | None = None, draft: summaries.Draft | None = None,
                denied: str | None = None) -> None:
        """An edge error page on one stream; the connection stays up for the others. `draft` is the request's
        summary (`denied`: the policy control that refused it)."""
        body, content_type = error_body(status, host or self.sni, detail,
                                        accept.decode("latin-1") if accept else None)
        self._respond(stream_id, status, body, content_type, extra)
        self.ctx.counters.count(self.ctx.counters.http_responses, status)
        access_log.info("src=%s host=%s proto=h2 status=%d %s", self.source_ip, host or self.sni, status, detail)
        if draft is not None:
            draft.denied = denied
            publish_http_summary(self.ctx, draft, time.monotonic(), status=status, request_bytes=0,
                                 response_bytes=len(body), by="engine", error=detail)

    def _draft_request(self, request: h2rules.H2Request, host: str) -> summaries.Draft:
        """The summary draft of a request for a tunnel host, as the visitor sent it."""
        facts = summaries.http_request(request.method.decode("latin-1"), self.scheme.decode(), host,
                                       request.path.decode("latin-1"), summaries.h2_headers(request.headers))
        return http_draft(self.ctx, self.transport, self.source_ip, time.monotonic(), protocol="h2", request=facts)

    def _respond(self, stream_id: int, status: int, body: bytes, content_type: str,
                 extra: list[tuple[bytes, bytes]] | None, *, cache: str = "no-store") -> None:
        headers = [(b":status", str(status).encode()), (b"content-type", content_type.encode()),
                   (b"content-length", str(len(body)).encode()), (b"cache-control", cache.encode()),
                   (b"server", b"portway"), *(extra or [])]
        try:
            self.conn.send_headers(stream_id, headers)
        except h2.exceptions.ProtocolError:
            return  # the stream is gone (reset by the visitor)
        self._pages[stream_id] = body
        self._send_page(stream_id)

    def _send_page(self, stream_id: int) -> None:
        """An edge page's body, within the windows: a visitor busy downloading elsewhere may have used the
        connection window up, and the page then waits for a WINDOW_UPDATE like any response."""
        body = self._pages.get(stream_id, b"")
        try:
            while body:
                window = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
                if window <= 0:
                    break
                self.conn.send_data(stream_id, body[:window], end_stream=len(body) <= window)
                body = body[window:]
        except h2.exceptions.ProtocolError:
            body = b""  # reset meanwhile
        if body:
            self._pages[stream_id] = body
        else:
            self._pages.pop(stream_id, None)
        self.flush()

    # ---- helpers ----

    def _arm_idle_timer(self) -> None:
        self._idle_timer = asyncio.get_running_loop().call_later(
            self.ctx.config.timeouts.http_idle_seconds, self._check_idle)

    def _check_idle(self) -> None:
        """Close a connection with no request in flight and no byte received for `timeouts.http_idle_seconds`."""
        if not self.exchanges and not self._watches and self.bytes_in == self._moved_at_last_check:
            log.info("closing idle HTTP/2 visitor connection from %s", self.source_ip)
            self.conn.close_connection()
            self.flush_now()
            self.close()
            return
        self._moved_at_last_check = self.bytes_in
        self._arm_idle_timer()
