"""HTTP/1.1 request rules of the edge (engine/edges/h1rules.py), and what llhttp refuses before them."""

from __future__ import annotations

import ipaddress
import re

import httptools
import pytest
from hypothesis import given
from hypothesis import strategies as st

from portway.engine.edges.h1rules import (
    MAX_HEADERS,
    Forwarding,
    Reject,
    RequestHead,
    forwarded,
    forwarded_node,
    is_token,
    quote,
    route_name,
    valid_authority,
)

TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
tokens = st.binary(min_size=1, max_size=20).map(lambda b: bytes(TCHAR[c % len(TCHAR)] for c in b))
# Field values llhttp passes on: visible ASCII, obs-text, inner spaces and tabs.
field_values = st.binary(max_size=40).map(
    lambda b: bytes(c if c >= 0x21 and c != 0x7F else 0x61 for c in b))
labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
hostnames = st.lists(labels, min_size=1, max_size=4).map(".".join)


# ---- what llhttp already refuses (strict by default: no lenient flags are set anywhere) ----

LLHTTP_REFUSES = {
    "duplicate Content-Length": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    "Content-Length list": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc",
    "signed Content-Length": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
    "Transfer-Encoding and Content-Length": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                                            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "coding not ending in chunked": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    "unknown coding": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
    "chunked twice": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n",
    "bare LF in the head": b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n",
    "bare LF line ends": b"GET / HTTP/1.1\nHost: a\n\n",
    "bare CR": b"GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n",
    "NUL in a value": b"GET / HTTP/1.1\r\nHost: a\r\nX: y\x00z\r\n\r\n",
    "control character in a value": b"GET / HTTP/1.1\r\nHost: a\r\nX: y\x01z\r\n\r\n",
    "space in a name": b"GET / HTTP/1.1\r\nHost: a\r\nX Y: z\r\n\r\n",
    "space before the colon": b"GET / HTTP/1.1\r\nHost: a\r\nX : z\r\n\r\n",
    "separator in a name": b"GET / HTTP/1.1\r\nHost: a\r\nX(Y: z\r\n\r\n",
    "NUL in a name": b"GET / HTTP/1.1\r\nHost: a\r\nX\x00: z\r\n\r\n",
    "line without a colon": b"GET / HTTP/1.1\r\nHost: a\r\nXYZ\r\n\r\n",
    "whitespace before the first field": b"GET / HTTP/1.1\r\n Host: a\r\n\r\n",
    "bad chunk size": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1 \r\nx\r\n0\r\n\r\n",
    "chunk data without CRLF": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxY0\r\n\r\n",
    "space in the target": b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
    "control character in the target": b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n",
    "unknown version": b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
}


class _Sink:
    def on_header(self, name: bytes, value: bytes) -> None:
        pass


@pytest.mark.parametrize("data", list(LLHTTP_REFUSES.values()), ids=list(LLHTTP_REFUSES))
def test_llhttp_refuses_by_default(data: bytes) -> None:
    """The edge relies on these refusals; an httptools release that loosened them would fail here."""
    with pytest.raises(httptools.HttpParserError):
        httptools.HttpRequestParser(_Sink()).feed_data(data)


def test_llhttp_lets_these_through_so_the_edge_checks_them() -> None:
    for data in (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                 b"GET / HTTP/1.1\r\n\r\n",
                 b"GET http://b/ HTTP/1.1\r\nHost: a\r\n\r\n",
                 b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"):
        httptools.HttpRequestParser(_Sink()).feed_data(data)


# ---- tokens, quoting, Forwarded ----


@given(st.binary(max_size=30))
def test_is_token_is_one_or_more_tchar(value: bytes) -> None:
    assert is_token(value) == (len(value) > 0 and all(c in TCHAR for c in value))


def unquote(value: bytes) -> bytes:
    """RFC 9110 §5.6.4: a token as is, a quoted-string without its quotes and quoted-pairs."""
    if not value.startswith(b'"'):
        assert is_token(value)
        return value
    assert value.endswith(b'"') and len(value) >= 2
    out, escaped = bytearray(), False
    for c in value[1:-1]:
        if escaped:
            out.append(c)
            escaped = False
        elif c == 0x5C:
            escaped = True
        else:
            assert c != 0x22, "an unescaped quote inside a quoted-string"
            out.append(c)
    assert not escaped
    return bytes(out)


@given(st.binary(max_size=30))
def test_quote_round_trips_or_refuses_control_characters(value: bytes) -> None:
    if any((c < 0x20 and c != 0x09) or c == 0x7F for c in value):
        with pytest.raises(ValueError):
            quote(value)
    else:
        assert unquote(quote(value)) == value


def parse_forwarded(value: bytes) -> dict[bytes, bytes]:
    """One RFC 7239 forwarded-element: `;`-separated pairs, values tokens or quoted-strings."""
    pairs = re.findall(rb'([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)=("(?:[^"\\]|\\.)*"|[^;"]+)(;|$)', value)
    assert b"".join(b"%s=%s%s" % pair for pair in pairs) == value
    return {name.lower(): unquote(raw) for name, raw, _ in pairs}


@given(st.ip_addresses(), st.sampled_from([b"http", b"https"]), hostnames, st.none() | st.integers(0, 65535))
def test_forwarded_element_parses_back(address: ipaddress.IPv4Address | ipaddress.IPv6Address, proto: bytes,
                                       host: str, port: int | None) -> None:
    authority = host.encode() + (b":%d" % port if port is not None else b"")
    element = parse_forwarded(forwarded(str(address), proto, authority))
    node = element[b"for"]
    if address.version == 6:
        assert node == b"[%s]" % address.compressed.encode()
        assert forwarded_node(str(address)).startswith(b'"[')  # RFC 7239 §6: quoted, with brackets
    else:
        assert node == str(address).encode()
    assert element[b"proto"] == proto
    assert element[b"host"] == authority


def test_forwarded_without_address_or_host() -> None:
    assert forwarded(None, b"https", None) == b"for=unknown;proto=https"
    assert forwarded("not-an-ip", b"http", b"") == b"for=unknown;proto=http"
    assert forwarded("::1", b"https", b"a.t.localhost") == b'for="[::1]";proto=https;host=a.t.localhost'


def test_forwarding_fields_follow_the_host() -> None:
    fields = Forwarding("192.0.2.1", b"https")
    assert fields.fields(None, b"a.t.localhost") == (
        b"X-Forwarded-For: 192.0.2.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: a.t.localhost\r\n"
        b"Forwarded: for=192.0.2.1;proto=https;host=a.t.localhost\r\n")
    assert b'host="b.t.localhost:8443"' in fields.fields(b"10.0.0.1", b"b.t.localhost:8443")
    assert fields.fields(b"10.0.0.1", None).startswith(b"X-Forwarded-For: 10.0.0.1, 192.0.2.1\r\n")
    assert b"X-Forwarded-Host" not in fields.fields(None, None)


# ---- authorities and routing ----


@given(hostnames, st.none() | st.integers(0, 65535))
def test_hostnames_with_ports_are_valid_authorities(host: str, port: int | None) -> None:
    authority = host + (f":{port}" if port is not None else "")
    assert valid_authority(authority.encode())
    assert route_name(authority.encode(), None) == host


@given(hostnames, st.sampled_from([" ", "/", "@", "?", "#", "\\", '"', "<", "\t"]), st.integers(0, 30))
def test_authorities_with_foreign_characters_are_refused(host: str, char: str, where: int) -> None:
    where = min(where, len(host))
    assert not valid_authority((host[:where] + char + host[where:]).encode())


def test_authority_edges() -> None:
    assert valid_authority(b"[::1]:8443")
    assert route_name(b"[::1]:8443", None) == "[::1]"
    assert route_name(b"A.T.Localhost.:443", None) == "a.t.localhost"
    assert route_name(None, "sni.example") == "sni.example"
    assert not valid_authority(b"a:70000")
    assert not valid_authority(b"")


# ---- RequestHead ----


def head_of(*fields: tuple[bytes, bytes]) -> RequestHead:
    head = RequestHead()
    for name, value in fields:
        head.add(name, value)
    head.done = True
    return head


def reject_status(*fields: tuple[bytes, bytes], method: bytes = b"GET", version: str = "1.1",
                  target: bytes = b"/", upgrade: bool = False) -> int | None:
    try:
        head_of(*fields).finish(method, version, target, upgrade)
    except Reject as reject:
        return reject.status
    return None


HOST = (b"Host", b"a.t.localhost")


def test_head_rules() -> None:
    assert reject_status(HOST) is None
    assert reject_status() == 400  # HTTP/1.1 without Host
    assert reject_status(version="1.0") is None
    assert reject_status(HOST, version="2.0") == 505
    with pytest.raises(Reject):
        head_of(HOST, HOST)
    with pytest.raises(Reject):
        head_of((b"Host", b"a b"))
    with pytest.raises(Reject):
        head_of(HOST, (b"Transfer-Encoding", b"gzip, chunked"))
    assert head_of(HOST, (b"Transfer-Encoding", b" CHUNKED ")).chunked
    assert reject_status(HOST, (b"Transfer-Encoding", b"chunked"), version="1.0") == 400
    assert reject_status(HOST, target=b"https://A.T.localhost:8443/x") is None
    assert reject_status(HOST, target=b"http://b.t.localhost/x") == 400
    assert reject_status(HOST, target=b"http://u@a.t.localhost/x") == 400
    assert reject_status(HOST, target=b"ftp://a.t.localhost/x") == 400
    assert reject_status(HOST, target=b"*") == 400
    assert reject_status(HOST, method=b"OPTIONS", target=b"*") is None
    assert reject_status(HOST, method=b"CONNECT", target=b"db:5432", upgrade=True) is None
    assert reject_status(HOST, method=b"CONNECT", target=b"[::1]:5432", upgrade=True) is None
    assert reject_status(HOST, method=b"CONNECT", target=b"db", upgrade=True) == 400
    assert reject_status(HOST, method=b"CONNECT", target=b"/db", upgrade=True) == 400
    assert reject_status(HOST, (b"Content-Length", b"0"), upgrade=True) is None
    assert reject_status(HOST, (b"Content-Length", b"3"), upgrade=True) == 400
    assert reject_status(HOST, (b"Transfer-Encoding", b"chunked"), upgrade=True) == 400


def test_too_many_fields() -> None:
    with pytest.raises(Reject) as refused:
        head_of(HOST, *[(b"X-A", b"b")] * MAX_HEADERS)
    assert refused.value.status == 431


def parse_built(head: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """A built head parsed back with httptools: (target, fields)."""
    fields: list[tuple[bytes, bytes]] = []
    url = bytearray()

    class Collect:
        def on_url(self, data: bytes) -> None:
            url.extend(data)

        def on_header(self, name: bytes, value: bytes) -> None:
            fields.append((name, value))

    httptools.HttpRequestParser(Collect()).feed_data(head)
    return bytes(url), fields


def test_build_drops_hop_by_hop_and_connection_listed_fields() -> None:
    head = head_of(HOST, (b"Connection", b"keep-alive, X-Private, content-length, Host"), (b"X-Private", b"1"),
                   (b"Keep-Alive", b"timeout=5"), (b"TE", b"trailers"), (b"Trailer", b"X"), (b"Upgrade", b"h2c"),
                   (b"Proxy-Authorization", b"x"), (b"Forwarded", b"for=6.6.6.6"), (b"X-Forwarded-Host", b"e"),
                   (b"X-Forwarded-Proto", b"http"), (b"Content-Length", b"2"), (b"X-Kept", b"yes"))
    built = head.build(b"POST", b"/p", "1.1", upgrade=False, keep_alive=True,
                       forwarding=Forwarding("192.0.2.1", b"https"))
    target, fields = parse_built(built + b"ok")
    assert target == b"/p"
    assert fields == [
        (b"Host", b"a.t.localhost"), (b"Content-Length", b"2"), (b"X-Kept", b"yes"),
        (b"X-Forwarded-For", b"192.0.2.1"), (b"X-Forwarded-Proto", b"https"),
        (b"X-Forwarded-Host", b"a.t.localhost"), (b"Forwarded", b"for=192.0.2.1;proto=https;host=a.t.localhost")]


def test_build_sets_connection_for_upgrade_close_and_http10() -> None:
    forwarding = Forwarding("192.0.2.1", b"https")
    upgrade = head_of(HOST, (b"Connection", b"Upgrade"), (b"Upgrade", b"websocket"))
    assert b"Connection: upgrade\r\nUpgrade: websocket\r\n" in upgrade.build(
        b"GET", b"/", "1.1", upgrade=True, keep_alive=True, forwarding=forwarding)
    assert b"Connection: close\r\n" in head_of(HOST).build(
        b"GET", b"/", "1.1", upgrade=False, keep_alive=False, forwarding=forwarding)
    assert b"Connection: keep-alive\r\n" in head_of().build(
        b"GET", b"/", "1.0", upgrade=False, keep_alive=True, forwarding=forwarding)
    chunked = head_of(HOST, (b"Transfer-Encoding", b"chunked"))
    assert b"\r\nTransfer-Encoding: chunked\r\n" in chunked.build(
        b"POST", b"/", "1.1", upgrade=False, keep_alive=True, forwarding=forwarding)


def test_trailers_are_ignored_after_the_head() -> None:
    head = head_of(HOST)
    head.add(b"X-Trailer", b"1")
    assert head.lines == [b"Host: a.t.localhost\r\n"]


def test_authorization_can_be_taken_out() -> None:
    head = head_of(HOST, (b"Authorization", b"Bearer abc "), (b"X-A", b"b"))
    assert head.authorization_value() == b"Bearer abc"
    assert head.take_authorization() == b"Bearer abc"
    assert head.lines == [b"Host: a.t.localhost\r\n", b"X-A: b\r\n"]
    assert head.take_authorization() is None


@given(st.lists(st.tuples(tokens, field_values), max_size=20), st.ip_addresses())
def test_any_accepted_head_builds_a_valid_request_keeping_end_to_end_fields(
        fields: list[tuple[bytes, bytes]], address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    try:
        head = head_of(HOST, *fields)
        head.finish(b"GET", "1.1", b"/x", False)
    except Reject:
        return
    built = head.build(b"GET", b"/x", "1.1", upgrade=False, keep_alive=True,
                       forwarding=Forwarding(str(address), b"https"))
    _, parsed = parse_built(built)
    hop_by_hop = {b"connection", b"keep-alive", b"te", b"trailer", b"upgrade", b"proxy-connection",
                  b"proxy-authorization", b"proxy-authenticate", b"transfer-encoding", b"forwarded",
                  b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto", b"host"}
    listed = {t.strip().lower() for name, value in fields if name.lower() == b"connection"
              for t in value.split(b",")}
    expected = [(n, v.rstrip(b" \t") if n.lower() == b"content-length" else v) for n, v in fields
                if n.lower() not in hop_by_hop and (n.lower() not in listed or n.lower() == b"content-length")]
    kept = [(n, v) for n, v in parsed if n.lower() not in hop_by_hop]
    assert [(n, v.rstrip(b" \t")) for n, v in kept] == [(n, v.rstrip(b" \t")) for n, v in expected]
    assert {n.lower(): v for n, v in parsed}[b"forwarded"].startswith(b"for=")
