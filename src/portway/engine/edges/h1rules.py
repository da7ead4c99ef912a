"""HTTP/1.1 request rules of the edge, sans-IO: what a visitor's request head may contain, and the head
the upstream receives instead.

llhttp (through httptools, strict by default) already refuses malformed syntax: duplicate or invalid
`Content-Length`, `Transfer-Encoding` with `Content-Length`, a coding list not ending in `chunked`,
obs-fold, bare CR or LF, NUL and other control characters, invalid header names. `RequestHead` adds
what llhttp lets through and a proxy must not: a Transfer-Encoding other than exactly `chunked`,
several or invalid `Host` fields, a missing Host on HTTP/1.1, absolute-form targets naming another
host, request-target forms that do not fit the method, bodies on Upgrade/CONNECT requests, and HTTP
versions other than 1.0 and 1.1. The tests in tests/unit/test_h1rules.py pin both halves.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re

MAX_TARGET_BYTES = 8 * 1024  # longer request-targets get 414
MAX_HEAD_BYTES = 64 * 1024  # header names and values together, and trailers: 431
MAX_HEADERS = 100  # 431
MAX_LOGGED_TARGET = 256  # characters of the target in access-log lines

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 3986 authority without userinfo: IP-literal, IPv4 or reg-name, then an optional port.
_AUTHORITY = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(:[0-9]{0,5})?")
_ABSOLUTE = re.compile(rb"[A-Za-z][A-Za-z0-9+.\-]*://([^/?#]*)")
_PORT = re.compile(rb":[0-9]+\Z")
_QUOTED_SPECIALS = re.compile(rb'(["\\])')
_UNQUOTABLE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

# What the edge does with a request header, by lower-case name; any other name passes unchanged.
_HOST, _ACCEPT, _XFF, _DROP, _CONNECTION, _UPGRADE, _TE, _CL, _AUTHORIZATION = range(9)
_SPECIAL = {
    b"host": _HOST,
    b"accept": _ACCEPT,
    b"authorization": _AUTHORIZATION,  # passed on, unless it carries the tunnel's token_auth token
    b"x-forwarded-for": _XFF,  # the chain is kept and the visitor's address appended
    b"forwarded": _DROP,  # the edge's own Forwarded replaces it
    b"x-forwarded-proto": _DROP,
    b"x-forwarded-host": _DROP,
    b"connection": _CONNECTION,
    b"keep-alive": _DROP,  # hop-by-hop (RFC 9110 §7.6.1)
    b"proxy-connection": _DROP,
    b"proxy-authorization": _DROP,
    b"proxy-authenticate": _DROP,
    b"te": _DROP,
    b"trailer": _DROP,  # trailers are discarded: bodies are re-chunked (RFC 9112 §7.1.2)
    b"upgrade": _UPGRADE,  # kept on upgrade requests only
    b"transfer-encoding": _TE,
    b"content-length": _CL,
}
# Never removed because `Connection` lists them: dropping framing or routing fields would let a
# visitor desynchronise the upstream's view of the byte stream.
_PROTECTED = frozenset({b"host", b"content-length", b"transfer-encoding", b"upgrade"})
_CONNECTION_OPTIONS = frozenset({b"close", b"keep-alive", b"upgrade"})
_NOT_LISTED = _CONNECTION_OPTIONS | _PROTECTED


class Reject(Exception):
    """A request the edge answers itself with `status` and closes on; `detail` is shown to the visitor,
    `extra` is more header lines for the page (e.g. WWW-Authenticate); `denied` is the edge policy control
    that refused the request, if one did (for its stream summary)."""

    def __init__(self, status: int, detail: str, extra: str = "", denied: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.extra = extra
        self.denied = denied


def is_token(value: bytes) -> bool:
    """RFC 9110 §5.6.2 token: one or more tchar."""
    return _TOKEN.fullmatch(value) is not None


def valid_authority(value: bytes) -> bool:
    """A Host value or authority-form target: host[:port], no userinfo, no whitespace."""
    match = _AUTHORITY.fullmatch(value)
    if match is None:
        return False
    port = match.group(2)
    return port is None or len(port) == 1 or int(port[1:]) <= 65535


def host_name(authority: bytes) -> str:
    """The host of an authority, lower-case, without port or trailing dot (`[v6]` keeps its brackets)."""
    host = authority.decode("latin-1").lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rsplit(":", 1)[0].rstrip(".")


def is_engine_host(name: str, engine_host: str) -> bool:
    """Requests for the engine itself (its endpoints), not a tunnel: its own name, none, or an IP literal."""
    return name in ("", engine_host) or name.replace(".", "").isdigit() or name.startswith("[")


def route_name(host_header: bytes | None, sni: str | None) -> str:
    """The hostname a request is for: its Host header without port, else the TLS server name."""
    if not host_header:
        return sni or ""
    return host_name(host_header)


def quote(value: bytes) -> bytes:
    """A value as an RFC 7230 token when it is one, else as a quoted-string. ValueError for control
    characters other than HTAB, which neither form can carry."""
    if is_token(value):
        return value
    if _UNQUOTABLE.search(value):
        raise ValueError("control character in a header parameter")
    return b'"' + _QUOTED_SPECIALS.sub(rb"\\\1", value) + b'"'


def forwarded_node(ip: str | None) -> bytes:
    """RFC 7239 §6 node for `for=`: IPv4 bare, IPv6 bracketed and quoted, `unknown` when absent."""
    if not ip:
        return b"unknown"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return b"unknown"
    if address.version == 6:
        return b'"[%s]"' % address.compressed.encode()
    return address.compressed.encode()


def forwarded(ip: str | None, proto: bytes, host: bytes | None) -> bytes:
    """The `Forwarded` value the edge sets: for, proto and (when representable) host."""
    value = b"for=%s;proto=%s" % (forwarded_node(ip), quote(proto))
    if host:
        with contextlib.suppress(ValueError):
            value += b";host=" + quote(host)
    return value


class Forwarding:
    """The forwarding fields of one visitor connection. Its address and scheme are fixed, so all but
    X-Forwarded-For are built once per Host value, not once per request (this is the hot path)."""

    __slots__ = ("_client", "_host", "_ip", "_scheme", "_tail")

    def __init__(self, client_ip: str | None, scheme: bytes) -> None:
        self._ip = client_ip
        self._client = (client_ip or "unknown").encode()
        self._scheme = scheme
        self._host: bytes | None = None
        self._tail = self._build(None)

    def _build(self, host: bytes | None) -> bytes:
        tail = b"X-Forwarded-Proto: %s\r\n" % self._scheme
        if host:
            tail += b"X-Forwarded-Host: %s\r\n" % host
        return tail + b"Forwarded: %s\r\n" % forwarded(self._ip, self._scheme, host)

    def fields(self, xff: bytes | None, host: bytes | None) -> bytes:
        """X-Forwarded-For (the visitor's chain with its address appended), -Proto, -Host, Forwarded."""
        if host != self._host:
            self._host, self._tail = host, self._build(host)
        client = self._client
        return b"X-Forwarded-For: %s\r\n%s" % (xff + b", " + client if xff else client, self._tail)


class RequestHead:
    """The request head being received on a connection: fields go in one at a time (`add`, fast: the
    parser calls it directly), the whole is checked (`finish`), and the head for the upstream comes out
    (`build`); `reset` starts the next request. Raises `Reject` on a rule broken."""

    __slots__ = (
        "_valid_host",
        "accept",
        "authorization",
        "body",
        "connection",
        "count",
        "done",
        "host",
        "lines",
        "size",
        "upgrade",
        "xff",
    )

    def __init__(self) -> None:
        self._valid_host = b""  # the last Host value found valid on this connection
        self.reset()

    def reset(self) -> None:
        self.lines: list[bytes] = []  # header lines passed upstream, in order
        self.size = 0
        self.count = 0
        self.done = False  # fields after the head are trailers: discarded (the body is re-chunked)
        self.host: bytes | None = None
        self.accept: str | None = None
        self.authorization: int | None = None  # index in `lines` of the Authorization field
        self.xff: bytes | None = None
        self.connection: list[bytes] | None = None  # the Connection field values, as received
        self.upgrade: bytes | None = None
        self.body: bytes | None = None  # b"chunked", or the Content-Length value

    def add(self, name: bytes, value: bytes) -> None:
        """One header field (llhttp has checked its syntax; trailing whitespace is still on `value`)."""
        if self.done:
            return
        self.size += len(name) + len(value)
        self.count += 1
        if self.size > MAX_HEAD_BYTES or self.count > MAX_HEADERS:
            raise Reject(431, "the request headers are too large")
        kind = _SPECIAL.get(name.lower())
        if kind is None:
            self.lines.append(b"%s: %s\r\n" % (name, value))
        elif kind == _HOST:
            if self.host is not None:
                raise Reject(400, "the request has more than one Host header")
            value = value.rstrip(b" \t")
            if value != self._valid_host:
                if value and not valid_authority(value):
                    raise Reject(400, "the request's Host header is not a valid host")
                self._valid_host = value
            self.host = value
            self.lines.append(b"Host: %s\r\n" % value)
        elif kind == _ACCEPT:
            self.accept = value.decode("latin-1")
            self.lines.append(b"%s: %s\r\n" % (name, value))
        elif kind == _AUTHORIZATION:
            self.authorization = len(self.lines)
            self.lines.append(b"%s: %s\r\n" % (name, value))
        elif kind == _XFF:
            value = value.strip(b" \t")
            self.xff = value if self.xff is None else self.xff + b", " + value
        elif kind == _CONNECTION:
            if self.connection is None:
                self.connection = [value]
            else:
                self.connection.append(value)
        elif kind == _UPGRADE:
            value = value.strip(b" \t")
            self.upgrade = value if self.upgrade is None else self.upgrade + b", " + value
        elif kind == _TE:
            if self.body is not None or value.strip(b" \t").lower() != b"chunked":
                raise Reject(400, "only a single Transfer-Encoding: chunked is accepted")
            self.body = b"chunked"
        elif kind == _CL:
            self.body = value.strip(b" \t")  # llhttp refused duplicates, lists, non-digits and TE with CL
            self.lines.append(b"%s: %s\r\n" % (name, value))

    def take_authorization(self) -> bytes | None:
        """The Authorization value, removed from what goes upstream (the edge consumed the credential)."""
        if self.authorization is None:
            return None
        line = self.lines.pop(self.authorization)
        self.authorization = None
        return line.split(b":", 1)[1].strip()

    def authorization_value(self) -> bytes | None:
        return None if self.authorization is None else self.lines[self.authorization].split(b":", 1)[1].strip()

    @property
    def chunked(self) -> bool:
        return self.body == b"chunked"

    def finish(self, method: bytes, version: str, target: bytes, upgrade: bool) -> None:
        """Rules that need the whole head. `upgrade` is llhttp's verdict (Upgrade + Connection: upgrade,
        or CONNECT)."""
        if version not in ("1.1", "1.0"):
            raise Reject(505, "only HTTP/1.0 and HTTP/1.1 are served on this connection")
        if self.host is None and version == "1.1":
            raise Reject(400, "HTTP/1.1 requests need a Host header")
        if self.chunked and version == "1.0":
            raise Reject(400, "Transfer-Encoding is not allowed in HTTP/1.0 requests")
        if method == b"CONNECT":
            if not valid_authority(target) or not _PORT.search(target):
                raise Reject(400, "CONNECT needs an authority-form target (host:port)")
        elif target[:1] == b"/":
            pass
        elif target == b"*":
            if method != b"OPTIONS":
                raise Reject(400, "the asterisk target is for OPTIONS only")
        else:
            match = _ABSOLUTE.match(target)
            if match is None or target[:match.start(1)].lower() not in (b"http://", b"https://"):
                raise Reject(400, "the request target is not valid")
            authority = match.group(1)
            if b"@" in authority or not valid_authority(authority):
                raise Reject(400, "the request target's authority is not valid")
            if self.host is None or host_name(authority) != host_name(self.host):
                raise Reject(400, "the request target's host does not match the Host header")
        if upgrade and self.body is not None and (self.chunked or int(self.body) > 0):
            raise Reject(400, "Upgrade and CONNECT requests cannot carry a body")

    def build(self, method: bytes, target: bytes, version: str, *, upgrade: bool, keep_alive: bool,
              forwarding: Forwarding) -> bytes:
        """The head sent upstream: hop-by-hop fields and those `Connection` lists dropped, a Connection
        field of the edge's own, forwarding fields set."""
        lines = self.lines
        connection_values = self.connection
        if connection_values is not None and (len(connection_values) > 1
                                              or connection_values[0].strip(b" \t").lower() not in _NOT_LISTED):
            listed = {t.strip(b" \t").lower() for value in connection_values for t in value.split(b",")} - _NOT_LISTED
            if listed:
                lines = [line for line in lines if line.split(b":", 1)[0].lower() not in listed]
        if upgrade and self.upgrade is not None:
            connection = b"Connection: upgrade\r\nUpgrade: %s\r\n" % self.upgrade
        elif not keep_alive:
            connection = b"Connection: close\r\n"
        elif version == "1.0":
            connection = b"Connection: keep-alive\r\n"
        else:
            connection = b""
        return b"%s %s HTTP/%s\r\n%s%s%s%s\r\n" % (
            method, target, version.encode(), b"".join(lines), connection,
            b"Transfer-Encoding: chunked\r\n" if self.body == b"chunked" else b"",
            forwarding.fields(self.xff, self.host))
