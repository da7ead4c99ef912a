"""HTTP/2 ⇄ HTTP/1.1 translation rules (sans-IO)."""

from __future__ import annotations

import httptools
import pytest
from hypothesis import given
from hypothesis import strategies as st

from portway.engine.edges import h2rules
from portway.engine.edges.h1rules import Reject
from portway.engine.edges.h2rules import H2Request, h1_request_head, h2_response_headers, parse_request


def request(*headers: tuple[bytes, bytes], method: bytes = b"GET", path: bytes = b"/p?q=1",
            authority: bytes = b"a.t.localhost") -> H2Request:
    return parse_request([(b":method", method), (b":scheme", b"https"), (b":authority", authority),
                          (b":path", path), *headers])


class _Head:
    """Parses a request head the way an HTTP/1.1 upstream would."""

    def __init__(self, raw: bytes) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.url = b""
        parser = httptools.HttpRequestParser(self)
        parser.feed_data(raw)
        self.method = parser.get_method()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def get(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k == name]


def test_request_head_is_valid_http1_with_forwarding_headers() -> None:
    req = request((b"cookie", b"a=1"), (b"cookie", b"b=2"), (b"te", b"trailers"), (b"x-forwarded-for", b"10.0.0.1"),
                  (b"forwarded", b"for=evil"), (b"x-forwarded-host", b"evil"), (b"expect", b"100-continue"),
                  (b"user-agent", b"t"))
    head = _Head(h1_request_head(req, client_ip="127.0.0.1", scheme=b"https", chunked=False))
    assert head.method == b"GET" and head.url == b"/p?q=1"
    assert head.get(b"host") == [b"a.t.localhost"]
    assert head.get(b"cookie") == [b"a=1; b=2"]
    assert head.get(b"te") == [] and head.get(b"expect") == []
    assert head.get(b"x-forwarded-for") == [b"10.0.0.1, 127.0.0.1"]
    assert head.get(b"x-forwarded-host") == [b"a.t.localhost"]
    assert head.get(b"x-forwarded-proto") == [b"https"]
    assert head.get(b"forwarded") == [b"for=127.0.0.1;proto=https;host=a.t.localhost"]  # the visitor's own is dropped
    assert head.get(b"user-agent") == [b"t"]


def test_chunked_body_and_dropped_credentials() -> None:
    req = request((b"authorization", b"Bearer x"), method=b"POST")
    raw = h1_request_head(req, client_ip="::1", scheme=b"https", chunked=True, drop=frozenset({b"authorization"}),
                          path=b"/p")
    head = _Head(raw)
    assert head.get(b"transfer-encoding") == [b"chunked"]
    assert head.get(b"authorization") == []
    assert head.url == b"/p"


def test_authority_falls_back_to_host_and_plain_connect_is_refused() -> None:
    req = parse_request([(b":method", b"GET"), (b":path", b"/"), (b"host", b"h.t.localhost")])
    assert req.authority == b"h.t.localhost"
    connect = parse_request([(b":method", b"CONNECT"), (b":authority", b"db:5432")])
    assert connect.connect and connect.path == connect.authority == b"db:5432"
    for bad in ([(b":method", b"CONNECT"), (b":authority", b"db")],
                [(b":method", b"CONNECT"), (b":authority", b"db:5432"), (b":path", b"/")]):
        with pytest.raises(Reject) as caught:
            parse_request(bad)
        assert caught.value.status == 400
    with pytest.raises(Reject) as caught:
        parse_request([(b":method", b"GET"), (b":path", b"/")])
    assert caught.value.status == 400
    with pytest.raises(Reject) as caught:
        request(path=b"/" + b"a" * 9000)
    assert caught.value.status == 414
    websocket = parse_request([(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":authority", b"h"),
                               (b":path", b"/ws"), (b":scheme", b"https")])
    assert websocket.protocol == b"websocket"


def test_response_headers_drop_connection_specific_ones() -> None:
    out = h2_response_headers(200, [(b"Content-Type", b"text/plain"), (b"Connection", b"keep-alive, X-Hop"),
                                    (b"Keep-Alive", b"timeout=5"), (b"X-Hop", b"1"), (b"Transfer-Encoding", b"chunked"),
                                    (b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2")])
    assert out == [(b":status", b"200"), (b"content-type", b"text/plain"), (b"set-cookie", b"a=1"),
                   (b"set-cookie", b"b=2")]


_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).map(str.encode)
_value = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30).map(
    lambda s: s.strip().encode())


@given(headers=st.lists(st.tuples(_token, _value), max_size=12), chunked=st.booleans())
def test_any_valid_h2_request_becomes_a_parseable_h1_head(headers: list[tuple[bytes, bytes]], chunked: bool) -> None:
    req = request(*headers)
    raw = h1_request_head(req, client_ip="127.0.0.1", scheme=b"https", chunked=chunked)
    head = _Head(raw)
    assert head.get(b"host") == [b"a.t.localhost"]
    for name, _ in head.headers:
        assert name not in h2rules.HOP_BY_HOP or (name == b"transfer-encoding" and chunked)


def test_chunk_encoding() -> None:
    assert h2rules.chunk(b"hello") == b"5\r\nhello\r\n"
    assert h2rules.chunk(b"x" * 255).startswith(b"ff\r\n")


@pytest.mark.parametrize(("method", "path"), [(b"GET X", b"/"), (b"GET", b"/a b"), (b"GET", b"/a\x7f"),
                                              (b"G\x01T", b"/")])
def test_what_an_http1_request_line_cannot_carry_is_refused(method: bytes, path: bytes) -> None:
    with pytest.raises(Reject) as caught:
        request(method=method, path=path)
    assert caught.value.status == 400


def test_http1_request_as_h2c_headers() -> None:
    headers = [(b"host", b"a.t.localhost"), (b"connection", b"keep-alive"), (b"content-length", b"3"),
               (b"x-forwarded-for", b"127.0.0.1")]
    out, key = h2rules.h2_request_from_h1(b"POST", b"/p?q", headers, upgrade=False)
    assert out == [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"a.t.localhost"),
                   (b":path", b"/p?q"), (b"x-forwarded-for", b"127.0.0.1")]
    assert key is None
    upgrade = [(b"host", b"h"), (b"upgrade", b"WebSocket"), (b"sec-websocket-key", b"k=="),
               (b"sec-websocket-version", b"13")]
    out, key = h2rules.h2_request_from_h1(b"GET", b"/ws", upgrade, upgrade=True)
    assert out[:5] == [(b":method", b"CONNECT"), (b":scheme", b"http"), (b":authority", b"h"), (b":path", b"/ws"),
                       (b":protocol", b"websocket")]
    assert (b"sec-websocket-key", b"k==") not in out and key == b"k=="
