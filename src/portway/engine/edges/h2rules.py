"""Translating HTTP/2 requests to HTTP/1.1 and HTTP/1.1 responses back (sans-IO), RFC 9113 §8.

An HTTP/2 visitor's request goes to an HTTP/1.1 upstream: pseudo-headers become the request line and
Host, split cookies are joined again, connection-specific headers never cross, and a body without a
declared length is sent chunked. The upstream's response loses its HTTP/1.1 connection headers,
which HTTP/2 forbids.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass

from portway.engine.edges.h1rules import Reject, forwarded, is_token

# Connection-specific headers (RFC 9113 §8.2.2, RFC 9110 §7.6.1): never forwarded across versions.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade",
                        b"te", b"trailer", b"http2-settings"})
# Set by the edge itself; a visitor's own copies are dropped (X-Forwarded-For is appended to instead).
EDGE_SET = frozenset({b"x-forwarded-proto", b"x-forwarded-host", b"forwarded"})
MAX_TARGET_BYTES = 8192


@dataclass(frozen=True, slots=True)
class H2Request:
    """The parts of an HTTP/2 request head the edge needs."""

    method: bytes
    path: bytes
    authority: bytes
    headers: tuple[tuple[bytes, bytes], ...]  # regular headers, names lowercase, in order
    protocol: bytes | None = None  # :protocol of an extended CONNECT (RFC 8441)
    connect: bool = False  # a plain CONNECT: `path` and `authority` are its target host:port

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


def parse_request(headers: list[tuple[bytes, bytes]]) -> H2Request:
    """Split a request's header list into pseudo-headers and regular ones (h2 has validated the syntax)."""
    pseudo: dict[bytes, bytes] = {}
    regular: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name.startswith(b":"):
            pseudo[name] = value
        else:
            regular.append((name.lower(), value))
    method = pseudo.get(b":method", b"")
    authority = pseudo.get(b":authority")
    if authority is None:
        authority = next((v for k, v in regular if k == b"host"), b"")
    if method == b"CONNECT" and b":protocol" not in pseudo:
        # RFC 9113 §8.5: only :method and :authority (the target, host:port); relayed as CONNECT host:port.
        target = pseudo.get(b":authority", b"")
        host, sep, port = target.rpartition(b":")
        if not sep or not host or not port.isdigit() or b":path" in pseudo or b":scheme" in pseudo:
            raise Reject(400, "CONNECT needs :authority host:port and no :path or :scheme")
        return H2Request(method, target, target, tuple(regular), None, connect=True)
    protocol = pseudo.get(b":protocol")
    if protocol is not None and (method != b"CONNECT" or protocol.lower() != b"websocket"):
        raise Reject(501, "only the websocket protocol is relayed by extended CONNECT")
    path = pseudo.get(b":path", b"")
    if not path or not authority:
        raise Reject(400, "the request has no path or authority")
    # h2 allows spaces and other bytes an HTTP/1.1 request line cannot carry: refuse them here.
    if not is_token(method) or any(byte <= 0x20 or byte == 0x7F for byte in path):
        raise Reject(400, "the request method or path cannot be relayed")
    if len(path) > MAX_TARGET_BYTES:
        raise Reject(414, "the request target is too long")
    return H2Request(method, path, authority, tuple(regular), protocol)


def h1_request_head(request: H2Request, *, client_ip: str, scheme: bytes, chunked: bool,
                    drop: frozenset[bytes] = frozenset(), path: bytes | None = None,
                    websocket_key: bytes | None = None) -> bytes:
    """The HTTP/1.1 head sent upstream for an HTTP/2 request.

    `drop` names further headers to leave out (e.g. a credential consumed by the edge); `path`
    replaces the target (e.g. with a token parameter removed). With `websocket_key`, an extended
    CONNECT becomes the HTTP/1.1 WebSocket handshake (RFC 8441 §5 ⇄ RFC 6455 §4.1).
    """
    lines: list[bytes] = []
    method = request.method
    if websocket_key is not None:
        method = b"GET"
        lines.append(b"upgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: %s\r\n" % websocket_key)
    cookies: list[bytes] = []
    forwarded_for: bytes | None = None
    for name, value in request.headers:
        if name in HOP_BY_HOP or name in EDGE_SET or name in drop or name in (b"host", b"sec-websocket-key"):
            continue
        if name == b"cookie":
            cookies.append(value)
        elif name == b"x-forwarded-for":
            forwarded_for = value if forwarded_for is None else forwarded_for + b", " + value
        elif name == b"expect":
            continue  # 100-continue: the body is already on its way; HTTP/2 has no interim answer to wait for
        else:
            lines.append(b"%s: %s\r\n" % (name, value))
    if cookies:
        lines.append(b"cookie: %s\r\n" % b"; ".join(cookies))  # RFC 9113 §8.2.3
    if chunked:
        lines.append(b"transfer-encoding: chunked\r\n")
    client = client_ip.encode()
    forwarded_for = forwarded_for + b", " + client if forwarded_for else client
    target = path if path is not None else request.path
    return (b"%s %s HTTP/1.1\r\nhost: %s\r\n%s" % (method, target, request.authority, b"".join(lines))
            + b"x-forwarded-for: %s\r\nx-forwarded-proto: %s\r\nx-forwarded-host: %s\r\nforwarded: %s\r\n\r\n" % (
                forwarded_for, scheme, request.authority, forwarded(client_ip, scheme, request.authority)))


def h2_upstream_headers(request: H2Request, *, client_ip: str, scheme: bytes, drop: frozenset[bytes] = frozenset(),
                        path: bytes | None = None, upstream_scheme: bytes = b"http") -> list[tuple[bytes, bytes]]:
    """The header list for an HTTP/2 upstream (h2c, or TLS with ALPN h2: `upstream_scheme` https): the
    visitor's request with the edge's forwarding headers; `te: trailers` is kept (gRPC requires it),
    other connection-specific headers are not."""
    out = [(b":method", request.method), (b":scheme", upstream_scheme), (b":authority", request.authority),
           (b":path", path if path is not None else request.path)]
    if request.protocol is not None:  # WebSocket over HTTP/2 (RFC 8441) goes on as extended CONNECT
        out.append((b":protocol", request.protocol))
    forwarded_for: bytes | None = None
    for name, value in request.headers:
        if name == b"te" and value.strip().lower() == b"trailers":
            out.append((name, value))
        elif name in HOP_BY_HOP or name in EDGE_SET or name in drop or name == b"host":
            continue
        elif name == b"x-forwarded-for":
            forwarded_for = value if forwarded_for is None else forwarded_for + b", " + value
        else:
            out.append((name, value))
    client = client_ip.encode()
    out += [(b"x-forwarded-for", forwarded_for + b", " + client if forwarded_for else client),
            (b"x-forwarded-proto", scheme), (b"x-forwarded-host", request.authority),
            (b"forwarded", forwarded(client_ip, scheme, request.authority))]
    return out


def h2_request_from_h1(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], *,
                       upgrade: bool) -> tuple[list[tuple[bytes, bytes]], bytes | None]:
    """An HTTP/1.1 request (already checked and rewritten by the edge; names lower-case) as the header list
    for an h2c upstream, and the visitor's Sec-WebSocket-Key when it is a WebSocket upgrade, which goes
    on as an extended CONNECT (RFC 8441 §5)."""
    authority = next((v for k, v in headers if k == b"host"), b"")
    kind = next((v for k, v in headers if k == b"upgrade"), b"").strip().lower()
    websocket = upgrade and kind == b"websocket" and method == b"GET"
    out = [(b":method", b"CONNECT" if websocket else method), (b":scheme", b"http"), (b":authority", authority),
           (b":path", target)]
    if websocket:
        out.append((b":protocol", b"websocket"))
    out += [(k, v) for k, v in headers
            if k not in HOP_BY_HOP and k not in (b"host", b"content-length", b"expect", b"sec-websocket-key")]
    key = next((v for k, v in headers if k == b"sec-websocket-key"), b"") if websocket else None
    return out, key


def h2_response_headers(status: int, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The HTTP/2 header list for an HTTP/1.1 response: `:status` first, connection headers removed."""
    listed: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            listed.update(token.strip().lower() for token in value.split(b","))
    out = [(b":status", str(status).encode())]
    for name, value in headers:
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in listed:
            continue
        out.append((lower, value))
    return out


WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def websocket_key() -> bytes:
    return base64.b64encode(secrets.token_bytes(16))


def websocket_accept(key: bytes) -> bytes:
    """The Sec-WebSocket-Accept an upstream must answer `key` with (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + WEBSOCKET_GUID).digest())  # noqa: S324 - fixed by the RFC


def websocket_response_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The HTTP/2 200 that accepts an extended CONNECT, from the upstream's 101 (the accept key stays behind)."""
    out = h2_response_headers(200, headers)
    return [(k, v) for k, v in out if k != b"sec-websocket-accept"]


def chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
