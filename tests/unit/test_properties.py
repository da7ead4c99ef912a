"""Tunnel property rules (protocol facts §2.5): every rule of `normalize`, and its defaults."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portway.wire.codes import ErrorCode
from portway.wire.errors import InvalidTunnelProperties, WireError
from portway.wire.messages import TunnelProperties
from portway.wire.properties import (
    HTTP_VERSIONS,
    MAX_LABEL_KEY,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    PUBLISHED_PROTOCOLS,
    TLS_MODES,
    TYPES,
    default_type,
    normalize,
)


def ok(**values: Any) -> TunnelProperties:
    return normalize(TunnelProperties(**values))


def rejected(**values: Any) -> str:
    with pytest.raises(InvalidTunnelProperties) as caught:
        normalize(TunnelProperties(**values))
    assert caught.value.code is ErrorCode.INVALID_REQUEST
    return str(caught.value)


# ---- defaults ------------------------------------------------------------------------------------


def test_publish_defaults_to_true() -> None:
    assert ok(protocol="http").publish is True


def test_explicit_values_are_kept() -> None:
    result = ok(protocol="tls", publish=True, name="svc", labels={"a": "b"}, tls_mode="terminated")
    assert (result.name, result.labels, result.tls_mode) == ("svc", {"a": "b"}, "terminated")
    assert result.protocol == "tls"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"protocol": "http"}, "bytestream"),
        ({"protocol": "http", "http_version": "http/1.1"}, "bytestream"),
        ({"protocol": "http", "http_version": "h2c"}, "bytestream"),
        ({"protocol": "http", "http_version": "h3"}, "datagram"),
        ({"protocol": "tls"}, "bytestream"),
        ({"protocol": "tcp"}, "bytestream"),
        ({"protocol": "webtty"}, "bytestream"),
        ({"protocol": "dtls"}, "datagram"),
        ({"protocol": "quic"}, "datagram"),
        ({"publish": False}, "bytestream"),
        ({"publish": False, "protocol": "http"}, "bytestream"),
        ({"publish": False, "type": "datagram"}, "datagram"),
    ],
)
def test_type_defaults_by_protocol(values: dict[str, Any], expected: str) -> None:
    assert ok(**values).type == expected


@pytest.mark.parametrize(
    ("protocol", "http_version", "expected"),
    [
        (None, None, "bytestream"),
        ("http", None, "bytestream"),
        ("http", "h3", "datagram"),
        ("tls", "h3", "bytestream"),
        ("dtls", None, "datagram"),
        ("quic", None, "datagram"),
        ("tcp", None, "bytestream"),
    ],
)
def test_default_type(protocol: str | None, http_version: str | None, expected: str) -> None:
    assert default_type(protocol, http_version) == expected


def test_h2_is_an_alias_of_h2c() -> None:
    assert ok(protocol="http", http_version="h2").http_version == "h2c"
    assert ok(protocol="http", http_version="h2c").http_version == "h2c"
    assert ok(protocol="http", http_version="http/1.1").http_version == "http/1.1"
    assert ok(protocol="http").http_version is None


def test_private_raw_tunnel() -> None:
    result = ok(publish=False)
    assert (result.publish, result.protocol, result.type) == (False, None, "bytestream")


# ---- read-only, unknown enumerations -------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("id", "t1"), ("creation_date", datetime(2024, 1, 1, tzinfo=UTC)), ("host", "x.example.com")],
)
def test_read_only_fields_cannot_be_requested(field: str, value: Any) -> None:
    assert field in rejected(protocol="http", **{field: value})


def test_unknown_protocol() -> None:
    message = rejected(protocol="ftp")
    assert "protocol" in message
    assert "'ftp'" in message


def test_published_tunnel_needs_a_protocol() -> None:
    assert "protocol" in rejected()
    assert "protocol" in rejected(publish=True)


@pytest.mark.parametrize("protocol", ["dtls", "quic"])
def test_private_dtls_and_quic_are_not_supported(protocol: str) -> None:
    assert f"private {protocol}" in rejected(publish=False, protocol=protocol)


def test_unknown_type() -> None:
    message = rejected(protocol="http", type="stream")
    assert "type" in message
    assert "'stream'" in message


def test_unknown_http_version() -> None:
    message = rejected(protocol="http", http_version="spdy/3")
    assert "http_version" in message
    assert "'spdy/3'" in message


def test_unknown_tls_mode() -> None:
    message = rejected(protocol="tls", tls_mode="mirror")
    assert "tls_mode" in message
    assert "'mirror'" in message


def test_unknown_tls_min_version() -> None:
    message = rejected(protocol="tls", tls_min_version="tls1.0")
    assert "tls_min_version" in message
    assert "'tls1.0'" in message


def test_vocabularies() -> None:
    assert {"http", "tls", "tcp", "dtls", "quic", "webtty"} == PUBLISHED_PROTOCOLS
    assert {"bytestream", "datagram"} == TYPES
    assert {"terminated", "passthrough"} == TLS_MODES
    assert {"http/1.1", "h2c", "h3"} == HTTP_VERSIONS


# ---- name, labels, network policy ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "web-1", "a.b_c-d", "A" * 128, "0start"])
def test_valid_names(name: str) -> None:
    assert ok(protocol="http", name=name).name == name


@pytest.mark.parametrize("name", ["", "-x", ".x", "_x", "a b", "a/b", "é", "a" * 129])
def test_invalid_names(name: str) -> None:
    assert "name" in rejected(protocol="http", name=name)


def test_label_limits() -> None:
    many = {f"k{i}": "v" for i in range(MAX_LABELS)}
    assert ok(protocol="http", labels=many).labels == many
    assert "labels" in rejected(protocol="http", labels={**many, "one-more": "v"})
    assert ok(protocol="http", labels={"k" * MAX_LABEL_KEY: "v" * MAX_LABEL_VALUE})
    assert "label" in rejected(protocol="http", labels={"": "v"})
    assert "label" in rejected(protocol="http", labels={"k" * (MAX_LABEL_KEY + 1): "v"})
    assert "label" in rejected(protocol="http", labels={"k": "v" * (MAX_LABEL_VALUE + 1)})
    assert ok(protocol="http", labels={"k": ""}).labels == {"k": ""}


@pytest.mark.parametrize("cidr", ["10.0.0.0/8", "192.168.1.1/24", "203.0.113.7", "::1", "2001:db8::/32"])
def test_valid_trusted_ips(cidr: str) -> None:
    assert ok(protocol="http", trusted_ips=(cidr,)).trusted_ips == (cidr,)


@pytest.mark.parametrize("cidr", ["nope", "10.0.0.0/33", "", "300.1.1.1"])
def test_invalid_trusted_ips(cidr: str) -> None:
    message = rejected(protocol="http", trusted_ips=("10.0.0.0/8", cidr))
    assert "trusted_ips" in message
    assert repr(cidr) in message


def test_geoip() -> None:
    assert ok(protocol="http", geoip=("FR", "US")).geoip == ("FR", "US")
    for bad in ("fr", "USA", "F", "", "F1"):
        message = rejected(protocol="http", geoip=(bad,))
        assert "geoip" in message
        assert repr(bad) in message


# ---- port ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("port", [1, 443, 65_535])
def test_tcp_port_in_range(port: int) -> None:
    assert ok(protocol="tcp", port=port).port == port


@pytest.mark.parametrize("port", [0, 65_536, 2**32 - 1])
def test_tcp_port_out_of_range(port: int) -> None:
    assert "port" in rejected(protocol="tcp", port=port)


@pytest.mark.parametrize("protocol", ["http", "tls", "dtls", "quic", "webtty"])
def test_port_only_with_tcp(protocol: str) -> None:
    message = rejected(protocol=protocol, port=8080)
    assert "port" in message
    assert "tcp" in message


def test_port_on_private_raw_tunnel() -> None:
    assert "port" in rejected(publish=False, port=8080)


# ---- tcp -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hostname", "abc.t.localhost"),
        ("tls_mode", "terminated"),
        ("tls_min_version", "tls1.3"),
        ("mtls_auth", False),
        ("mtls_cacert_pem", "-----BEGIN CERTIFICATE-----"),
        ("http_version", "h2c"),
        ("upstream_tls", False),
        ("http_use_tls", False),
        ("token_auth", False),
        ("rstream_auth", True),
        ("challenge_mode", True),
        ("tls_alpns", ("h2",)),
        ("tls_ciphers", ("TLS_AES_128_GCM_SHA256",)),
    ],
)
def test_tcp_forbids_hostname_tls_http_and_edge_options(field: str, value: Any) -> None:
    message = rejected(protocol="tcp", **{field: value})
    assert "tcp" in message
    assert field in message


def test_tcp_lists_every_offending_option() -> None:
    message = rejected(protocol="tcp", hostname="a.t.localhost", token_auth=True)
    assert "hostname" in message
    assert "token_auth" in message


def test_tcp_must_be_published() -> None:
    message = rejected(protocol="tcp", publish=False)
    assert "tcp" in message
    assert "published" in message


def test_tcp_must_be_bytestream() -> None:
    message = rejected(protocol="tcp", type="datagram")
    assert "tcp" in message
    assert "bytestream" in message


def test_tcp_datagram_guaranteed_delivery() -> None:
    assert "datagram_guaranteed_delivery" in rejected(protocol="tcp", datagram_guaranteed_delivery=True)


def test_plain_tcp() -> None:
    result = ok(protocol="tcp", name="db", trusted_ips=("10.0.0.0/8",))
    assert (result.type, result.publish) == ("bytestream", True)


# ---- http-only options ---------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["tls", "dtls", "quic", "webtty"])
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("http_version", "h2c"),
        ("token_auth", True),
        ("rstream_auth", True),
        ("challenge_mode", True),
        ("http_use_tls", True),
    ],
)
def test_http_options_only_on_http(protocol: str, field: str, value: Any) -> None:
    message = rejected(protocol=protocol, **{field: value})
    assert field in message
    assert "http" in message


def test_http_options_on_private_raw_tunnel() -> None:
    assert "token_auth" in rejected(publish=False, token_auth=True)


def test_false_http_flags_are_harmless_elsewhere() -> None:
    assert ok(protocol="tls", token_auth=False, http_use_tls=False).protocol == "tls"


def test_http_options_on_http() -> None:
    result = ok(protocol="http", http_version="h2", token_auth=True, rstream_auth=True, challenge_mode=True)
    assert result.http_version == "h2c"


def test_upstream_tls_conflicts_with_http_version() -> None:
    message = rejected(protocol="http", upstream_tls=True, http_version="http/1.1")
    assert "upstream_tls" in message
    assert "http_version" in message
    assert ok(protocol="http", upstream_tls=False, http_version="http/1.1").upstream_tls is False
    assert ok(protocol="http", upstream_tls=True).upstream_tls is True


@pytest.mark.parametrize(("http_use_tls", "upstream_tls"), [(True, False), (False, True)])
def test_http_use_tls_conflicts_with_upstream_tls(http_use_tls: bool, upstream_tls: bool) -> None:
    message = rejected(protocol="http", http_use_tls=http_use_tls, upstream_tls=upstream_tls)
    assert "http_use_tls" in message
    assert "upstream_tls" in message


@pytest.mark.parametrize("flag", [True, False])
def test_http_use_tls_agreeing_with_upstream_tls(flag: bool) -> None:
    result = ok(protocol="http", http_use_tls=flag, upstream_tls=flag)
    assert (result.http_use_tls, result.upstream_tls) == (flag, flag)


# ---- TLS options ---------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["http", "dtls", "quic", "webtty"])
def test_tls_mode_only_on_tls(protocol: str) -> None:
    assert "tls_mode" in rejected(protocol=protocol, tls_mode="terminated")


def test_terminated_allows_edge_tls_options() -> None:
    result = ok(
        protocol="tls", tls_mode="terminated", tls_min_version="tls1.2", tls_ciphers=("c",),
        mtls_auth=True, mtls_cacert_pem="pem", tls_alpns=("h2",), upstream_tls=True,
    )
    assert result.tls_mode == "terminated"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tls_min_version", "tls1.3"),
        ("tls_ciphers", ("TLS_AES_256_GCM_SHA384",)),
        ("mtls_auth", True),
        ("upstream_tls", True),
        ("mtls_cacert_pem", "pem"),
        ("tls_alpns", ("h2",)),
    ],
)
def test_passthrough_cannot_enforce(field: str, value: Any) -> None:
    message = rejected(protocol="tls", tls_mode="passthrough", **{field: value})
    assert "passthrough" in message
    assert field in message


def test_passthrough_plain() -> None:
    assert ok(protocol="tls", tls_mode="passthrough", mtls_auth=False).tls_mode == "passthrough"


@pytest.mark.parametrize("protocol", ["dtls", "quic", "webtty"])
def test_mtls_needs_http_or_tls(protocol: str) -> None:
    assert "mtls_auth" in rejected(protocol=protocol, mtls_auth=True)


@pytest.mark.parametrize("protocol", ["http", "tls"])
def test_mtls_on_http_and_tls(protocol: str) -> None:
    assert ok(protocol=protocol, mtls_auth=True).mtls_auth is True


# ---- datagram rules ------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["http", "tls", "webtty"])
def test_bytestream_protocols_cannot_be_datagram(protocol: str) -> None:
    message = rejected(protocol=protocol, type="datagram")
    assert protocol in message
    assert "datagram" in message


def test_h3_is_datagram() -> None:
    assert ok(protocol="http", http_version="h3", type="datagram").type == "datagram"


def test_datagram_guaranteed_delivery_only_on_datagram() -> None:
    assert "datagram_guaranteed_delivery" in rejected(protocol="http", datagram_guaranteed_delivery=True)
    assert "datagram_guaranteed_delivery" in rejected(publish=False, datagram_guaranteed_delivery=False)
    assert ok(protocol="quic", datagram_guaranteed_delivery=True).datagram_guaranteed_delivery is True
    assert ok(publish=False, type="datagram", datagram_guaranteed_delivery=False).type == "datagram"


# ---- private tunnels -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hostname", "abc.t.localhost"),
        ("trusted_ips", ("10.0.0.0/8",)),
        ("geoip", ("FR",)),
        ("token_auth", True),
        ("rstream_auth", True),
        ("challenge_mode", True),
        ("mtls_auth", True),
    ],
)
def test_private_tunnels_forbid_edge_options(field: str, value: Any) -> None:
    message = rejected(publish=False, protocol="http", **{field: value})
    assert "private" in message
    assert field in message


def test_private_raw_tunnel_with_hostname() -> None:
    assert "hostname" in rejected(publish=False, hostname="abc.t.localhost")


def test_private_tunnel_with_false_flags() -> None:
    assert ok(publish=False, protocol="http", token_auth=False, mtls_auth=False).publish is False


@pytest.mark.parametrize("protocol", ["http", "tls", "webtty"])
def test_private_tunnels_with_a_protocol(protocol: str) -> None:
    result = ok(publish=False, protocol=protocol)
    assert (result.publish, result.type) == (False, "bytestream")


def test_error_type() -> None:
    assert issubclass(InvalidTunnelProperties, WireError)
    error = InvalidTunnelProperties("x", ErrorCode.FEATURE_NOT_AVAILABLE)
    assert error.code is ErrorCode.FEATURE_NOT_AVAILABLE


# ---- properties ----------------------------------------------------------------------------------

FAST = settings(max_examples=60, deadline=None, database=None, derandomize=True)
maybe = st.none() | st.booleans()
requests = st.builds(
    TunnelProperties,
    publish=maybe,
    protocol=st.none() | st.sampled_from([*sorted(PUBLISHED_PROTOCOLS), "ftp"]),
    type=st.none() | st.sampled_from(["bytestream", "datagram", "x"]),
    http_version=st.none() | st.sampled_from(["http/1.1", "h2", "h2c", "h3", "x"]),
    tls_mode=st.none() | st.sampled_from(["terminated", "passthrough", "x"]),
    tls_min_version=st.none() | st.sampled_from(["tls1.2", "tls1.3", "x"]),
    tls_alpns=st.sampled_from([(), ("h2",)]),
    mtls_auth=maybe,
    upstream_tls=maybe,
    http_use_tls=maybe,
    token_auth=maybe,
    challenge_mode=maybe,
    hostname=st.none() | st.just("abc.t.localhost"),
    port=st.none() | st.integers(0, 70_000),
    datagram_guaranteed_delivery=maybe,
    geoip=st.sampled_from([(), ("FR",), ("fr",)]),
)


@FAST
@given(request=requests)
def test_normalize_is_total_and_idempotent(request: TunnelProperties) -> None:
    """Any request is either refused with InvalidTunnelProperties or normalized to a fixed point."""
    try:
        result = normalize(request)
    except InvalidTunnelProperties:
        return
    assert result.publish is not None
    assert result.type in TYPES
    assert result.http_version in {None, *HTTP_VERSIONS}
    assert normalize(result) == result
    if result.protocol == "tcp":
        assert result.type == "bytestream"
        assert result.publish
        assert result.hostname is None
    if result.port is not None:
        assert result.protocol == "tcp"
        assert 1 <= result.port <= 65_535
    if result.tls_mode == "passthrough":
        assert result.tls_min_version is None
        assert not result.mtls_auth
        assert not result.upstream_tls
        assert not result.tls_alpns


@pytest.mark.parametrize("protocol", ["dtls", "quic"])
def test_datagram_protocols_refuse_bytestream_type(protocol: str) -> None:
    with pytest.raises(InvalidTunnelProperties, match="datagram tunnel"):
        normalize(TunnelProperties(protocol=protocol, type="bytestream"))


def test_private_tls_tunnel_cannot_be_terminated() -> None:
    message = rejected(publish=False, protocol="tls", tls_mode="terminated")
    assert "private" in message
    assert "tls_mode=terminated" in message
    assert ok(publish=False, protocol="tls", tls_mode="passthrough").tls_mode == "passthrough"
