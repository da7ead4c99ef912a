"""Edge policy rules (sans-IO): network allow-lists, GeoIP decisions, token extraction from requests."""

from __future__ import annotations

import ipaddress
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portway.engine.policy import EdgePolicy, bearer_token, build_policy, parse_address, take_query_token
from portway.wire.codes import ErrorCode
from portway.wire.errors import InvalidTunnelProperties
from portway.wire.messages import TunnelProperties


def policy(**fields: object) -> EdgePolicy:
    built = build_policy(TunnelProperties(protocol="http", **fields),  # type: ignore[arg-type]
                         geoip_available=True, tokens_enforced=True)
    assert built is not None
    return built


def test_no_controls_means_no_policy() -> None:
    assert build_policy(TunnelProperties(protocol="http"), geoip_available=False, tokens_enforced=False) is None


def test_geoip_without_a_database_is_refused_at_creation() -> None:
    with pytest.raises(InvalidTunnelProperties, match=r"geoip\.database_file") as caught:
        build_policy(TunnelProperties(protocol="tcp", geoip=["FR"]), geoip_available=False, tokens_enforced=True)
    assert caught.value.code == ErrorCode.FEATURE_NOT_AVAILABLE


def test_token_auth_without_token_verification_is_refused_at_creation() -> None:
    with pytest.raises(InvalidTunnelProperties, match=r"auth\.jwt\.enabled") as caught:
        build_policy(TunnelProperties(protocol="http", token_auth=True), geoip_available=True, tokens_enforced=False)
    assert caught.value.code == ErrorCode.FEATURE_NOT_AVAILABLE


@pytest.mark.parametrize(("cidrs", "ip", "refused"), [
    (["127.0.0.0/8"], "127.0.0.1", None),
    (["10.0.0.0/8"], "127.0.0.1", "trusted_ips"),
    (["10.0.0.0/8", "127.0.0.1"], "127.0.0.1", None),
    (["10.0.0.0/8"], "::ffff:10.1.2.3", None),  # IPv4-mapped, from a dual-stack socket
    (["::1/128"], "::1", None),
    (["2001:db8::/32"], "::1", "trusted_ips"),
    (["2001:db8::/32"], "127.0.0.1", "trusted_ips"),
    (["127.0.0.0/8"], None, "trusted_ips"),
    (["127.0.0.0/8"], "not-an-ip", "trusted_ips"),
])
def test_trusted_ips(cidrs: list[str], ip: str | None, refused: str | None) -> None:
    assert policy(trusted_ips=cidrs).refuses(ip, None) == refused


def test_geoip_allows_listed_countries_only_and_refuses_the_unknown() -> None:
    countries = {ipaddress.ip_address("127.0.0.1"): "FR", ipaddress.ip_address("127.0.0.2"): "DE"}
    lookup = countries.get
    rule = policy(geoip=["fr"])
    assert rule.refuses("127.0.0.1", lookup) is None
    assert rule.refuses("127.0.0.2", lookup) == "geoip"
    assert rule.refuses("127.0.0.3", lookup) == "geoip"  # no country known: an allow-list cannot vouch for it
    assert rule.refuses("127.0.0.1", None) == "geoip"


def test_both_network_controls_must_admit() -> None:
    rule = policy(trusted_ips=["127.0.0.0/8"], geoip=["FR"])
    assert rule.refuses("127.0.0.1", lambda _: "FR") is None
    assert rule.refuses("127.0.0.1", lambda _: "US") == "geoip"
    assert rule.refuses("10.0.0.1", lambda _: "FR") == "trusted_ips"


def test_token_auth_alone_admits_every_address() -> None:
    assert policy(token_auth=True).refuses("203.0.113.9", None) is None


def test_parse_address() -> None:
    assert parse_address("::ffff:192.0.2.1") == ipaddress.ip_address("192.0.2.1")
    assert parse_address("fe80::1%eth0") == ipaddress.ip_address("fe80::1")
    assert parse_address("") is None
    assert parse_address("example.com") is None


@pytest.mark.parametrize(("header", "token"), [
    (b"Bearer abc.def.ghi", "abc.def.ghi"),
    (b"bearer   abc", "abc"),
    (b"Basic dXNlcjpwYXNz", None),
    (b"Bearer ", None),
    (b"Bearer", None),
    (None, None),
    (b"Bearer " + b"x" * 9000, None),
])
def test_bearer_token(header: bytes | None, token: str | None) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize(("target", "token", "rest"), [
    (b"/a", None, b"/a"),
    (b"/a?x=1", None, b"/a?x=1"),
    (b"/a?rstream.token=T", "T", b"/a"),
    (b"/a?x=1&rstream.token=T&y=2", "T", b"/a?x=1&y=2"),
    (b"/a?x=%20&rstream%2Etoken=T%2Bx", "T+x", b"/a?x=%20"),
    (b"/a?rstream.token=&x=1", None, b"/a?x=1"),
    (b"/a?rstream.tokenx=1", None, b"/a?rstream.tokenx=1"),
])
def test_take_query_token(target: bytes, token: str | None, rest: bytes) -> None:
    assert take_query_token(target) == (token, rest)


_query_text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="&=#"), max_size=20)


@given(pairs=st.lists(st.tuples(_query_text, _query_text), max_size=6), token=_query_text.filter(bool),
       where=st.integers(min_value=0, max_value=6))
def test_take_query_token_removes_only_the_token(pairs: list[tuple[str, str]], token: str, where: int) -> None:
    """Whatever else the query holds, the token comes out and every other parameter stays, in order."""
    pairs = [(k, v) for k, v in pairs if k and quote(k) != "rstream.token" and k != "rstream.token"]
    encoded = [f"{quote(k)}={quote(v)}".encode() for k, v in pairs]
    with_token = [*encoded]
    with_token.insert(min(where, len(encoded)), b"rstream.token=" + quote(token, safe="").encode())
    found, rest = take_query_token(b"/p?" + b"&".join(with_token))
    assert found == token.encode().decode("latin-1")
    assert rest == (b"/p?" + b"&".join(encoded) if encoded else b"/p")


@given(st.binary(max_size=200))
def test_take_query_token_never_raises(target: bytes) -> None:
    token, rest = take_query_token(target)
    assert len(rest) <= len(target)
    assert token is None or len(token) <= 8192
