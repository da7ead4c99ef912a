"""The plain-HTTP listener's pure helpers: Host parsing, request targets and the HTTPS Location."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portway.engine.edges.plainhttp import https_location, parse_authority, request_host_and_path

labels = st.from_regex(r"\A[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,20}[a-zA-Z0-9])?\Z")
hostnames = st.lists(labels, min_size=1, max_size=4).map(".".join)
ports = st.integers(min_value=0, max_value=65535)
ipv6 = st.ip_addresses(v=6)


@given(st.binary(max_size=80))
def test_parse_authority_only_raises_value_error(value: bytes) -> None:
    try:
        name = parse_authority(value)
    except ValueError:
        return
    assert name == name.lower() and not name.endswith(".") and name.isascii()
    assert "@" not in name and "/" not in name and " " not in name


@given(hostnames, st.none() | ports, st.booleans())
def test_parse_authority_keeps_the_name_and_drops_the_port(name: str, port: int | None, dot: bool) -> None:
    authority = name + ("." if dot else "") + (f":{port}" if port is not None else "")
    assert parse_authority(authority.encode()) == name.lower()


@given(ipv6, st.none() | ports)
def test_parse_authority_ipv6_literals_are_compressed(address: ipaddress.IPv6Address, port: int | None) -> None:
    authority = f"[{address.exploded}]" + (f":{port}" if port is not None else "")
    assert parse_authority(authority.encode()) == address.compressed


@pytest.mark.parametrize("value", [
    b"", b":80", b"a b", b"user@localhost", b"localhost/x", b"[::1", b"[::1]x", b"[nope]", b"host:abc",
    b"host:99999", b"host:1:2", b"h\xc3\xa9", b"-bad.example", b"a..b",
])
def test_parse_authority_refuses_malformed_hosts(value: bytes) -> None:
    with pytest.raises(ValueError, match="Host"):
        parse_authority(value)


def test_request_targets() -> None:
    assert request_host_and_path(b"/a?b=1#frag", b"X.t.Localhost:8080") == ("x.t.localhost", b"/a?b=1")
    assert request_host_and_path(b"http://h.example:80/p?q", b"ignored") == ("h.example", b"/p?q")
    assert request_host_and_path(b"HTTP://h.example", None) == ("h.example", b"/")
    assert request_host_and_path(b"http://[::1]:80/a", None) == ("::1", b"/a")
    for url, host, reason in [
        (b"/", None, "Host header is required"),
        (b"*", b"h", "origin-form"),
        (b"h.example:443", b"h.example:443", "origin-form"),  # CONNECT's authority-form
        (b"http://u@h.example/", None, "no usable host"),
        (b"http:///x", None, "not a valid URL"),
        (b"ftp://h.example/", None, "origin-form"),
    ]:
        with pytest.raises(ValueError, match=reason):
            request_host_and_path(url, host)


@given(st.binary(max_size=60), st.one_of(st.none(), st.binary(max_size=30)))
def test_request_host_and_path_only_raises_value_error(url: bytes, host: bytes | None) -> None:
    try:
        name, path = request_host_and_path(url, host)
    except ValueError:
        return
    assert path.startswith(b"/") and b"#" not in path and name


@given(hostnames | ipv6.map(str), ports.filter(bool), st.binary(max_size=60))
def test_https_location_is_a_safe_header_value_that_keeps_the_authority(host: str, port: int, path: bytes) -> None:
    location = https_location(host, port, path)
    assert location.isascii() and all(0x21 <= ord(c) < 0x7F for c in location)
    parts = urlsplit(location)
    assert parts.scheme == "https"
    assert parts.hostname == host.lower()
    assert parts.port == (None if port == 443 else port)
    assert parts.path.startswith("/") and not parts.fragment


@given(st.from_regex(r"\A/[A-Za-z0-9/._~!$&'()*+,;=:@%?-]{0,40}\Z"))
def test_https_location_keeps_a_visible_path_verbatim(path: str) -> None:
    assert https_location("localhost", 8443, path.encode()) == f"https://localhost:8443{path}"


def test_https_location_examples() -> None:
    assert https_location("x.t.localhost", 443, b"/a?b") == "https://x.t.localhost/a?b"
    assert https_location("::1", 8443, b"") == "https://[::1]:8443/"
    assert https_location("h", 443, b"@evil.example/") == "https://h/@evil.example/"
    assert https_location("h", 443, b"/a b\r\n\xff#x") == "https://h/a%20b%0D%0A%FF%23x"
