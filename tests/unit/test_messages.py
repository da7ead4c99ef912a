"""Typed views and builders of protocol messages."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portway.wire import messages as m
from portway.wire._pb import rstream_pb2 as pb
from portway.wire.codes import PROTOCOL_VERSION, ErrorCode
from tests.unit.strategies import client_details, server_details

FAST = settings(max_examples=40, deadline=None, database=None, derandomize=True)

texts = st.text(max_size=8)
opt_texts = st.none() | texts
opt_bools = st.none() | st.booleans()
text_tuples = st.lists(texts, max_size=4).map(tuple)
zones = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))])

tunnel_properties = st.builds(
    m.TunnelProperties,
    id=opt_texts,
    creation_date=st.none()
    | st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=zones),
    name=opt_texts,
    type=opt_texts,
    publish=opt_bools,
    protocol=opt_texts,
    labels=st.dictionaries(texts, texts, max_size=4),
    geoip=text_tuples,
    trusted_ips=text_tuples,
    host=opt_texts,
    tls_mode=opt_texts,
    tls_alpns=text_tuples,
    tls_min_version=opt_texts,
    tls_ciphers=text_tuples,
    mtls_auth=opt_bools,
    mtls_cacert_pem=opt_texts,
    http_version=opt_texts,
    http_use_tls=opt_bools,
    token_auth=opt_bools,
    rstream_auth=opt_bools,
    challenge_mode=opt_bools,
    hostname=opt_texts,
    port=st.none() | st.integers(0, 2**32 - 1),
    upstream_tls=opt_bools,
    datagram_guaranteed_delivery=opt_bools,
    allow_cross_region_routing=opt_bools,
)


# ---- TunnelProperties ----------------------------------------------------------------------------


@settings(FAST, max_examples=40)
@given(props=tunnel_properties)
def test_tunnel_properties_round_trip(props: m.TunnelProperties) -> None:
    message = props.to_pb()
    assert m.TunnelProperties.from_pb(message) == props
    # ...and through bytes, as a peer would see it.
    reparsed = pb.TunnelProperties.FromString(message.SerializeToString())
    assert m.TunnelProperties.from_pb(reparsed) == props
    # A wrapper field is on the wire exactly when the view has a value.
    for field in pb.TunnelProperties.DESCRIPTOR.fields:
        if field.is_repeated:
            continue
        assert message.HasField(field.name) == (getattr(props, field.name) is not None), field.name


def test_property_table_matches_schema() -> None:
    """Every schema field is converted, in schema order, with a kind matching its wire type."""
    table = dict(m._PROPERTY_FIELDS)
    fields = pb.TunnelProperties.DESCRIPTOR.fields
    assert [f.name for f in fields] == [name for name, _ in m._PROPERTY_FIELDS]
    wrapper_kind = {
        "google.protobuf.StringValue": "str",
        "google.protobuf.BoolValue": "bool",
        "google.protobuf.UInt32Value": "u32",
        "google.protobuf.Timestamp": "time",
    }
    for field in fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            assert table[field.name] == "map"
        elif field.is_repeated:
            assert table[field.name] == "list"
        else:
            assert field.message_type is not None, field.name
            assert table[field.name] == wrapper_kind[field.message_type.full_name], field.name
    assert set(table) == {f.name for f in m.TunnelProperties.__dataclass_fields__.values()}


def test_defaults_are_unset() -> None:
    message = m.TunnelProperties().to_pb()
    assert message.ByteSize() == 0
    assert m.TunnelProperties.from_pb(pb.TunnelProperties()) == m.TunnelProperties()


def test_false_and_zero_are_set_not_absent() -> None:
    props = m.TunnelProperties(publish=False, port=0, name="")
    message = props.to_pb()
    assert message.HasField("publish")
    assert message.HasField("port")
    assert message.HasField("name")
    assert m.TunnelProperties.from_pb(message) == props


def test_creation_date_is_stored_as_utc() -> None:
    local = datetime(2024, 5, 6, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    message = m.TunnelProperties(creation_date=local).to_pb()
    assert message.creation_date.seconds == int(local.timestamp())
    back = m.TunnelProperties.from_pb(message).creation_date
    assert back == local
    assert back is not None
    assert back.tzinfo is UTC


def test_replace_returns_a_copy() -> None:
    props = m.TunnelProperties(name="a", protocol="http")
    changed = props.replace(name="b")
    assert (props.name, changed.name, changed.protocol) == ("a", "b", "http")
    with pytest.raises(TypeError):
        props.replace(nonexistent=1)


# ---- ClientDetails / ServerDetails ---------------------------------------------------------------




@FAST
@given(details=client_details)
def test_client_details_round_trip(details: m.ClientDetails) -> None:
    wire = pb.ClientDetails.FromString(details.to_pb().SerializeToString())
    assert m.ClientDetails.from_pb(wire) == details


@FAST
@given(details=server_details)
def test_server_details_round_trip(details: m.ServerDetails) -> None:
    wire = pb.ServerDetails.FromString(details.to_pb().SerializeToString())
    assert m.ServerDetails.from_pb(wire) == details


def test_client_details_local() -> None:
    details = m.ClientDetails.local("secret-token", version="9.9.9")
    assert details.agent == "portway"
    assert details.version == "9.9.9"
    assert details.token == "secret-token"
    assert details.protocol_version == PROTOCOL_VERSION
    assert details.os
    assert "secret-token" not in repr(details)


# ---- errors and IP addresses ---------------------------------------------------------------------


@pytest.mark.parametrize("code", list(ErrorCode))
def test_error_round_trip(code: ErrorCode) -> None:
    error = pb.Error.FromString(m.error_pb(code, "why").SerializeToString())
    assert m.error_from_pb(error) == (int(code), "why")


def test_error_without_message_gets_a_generic_text() -> None:
    assert m.error_from_pb(pb.Error(code=pb.ERROR_CODE_INTERNAL)) == (9000, "engine error")


def test_unknown_error_code_survives() -> None:
    # proto3 enums are open: a future code must not be lost or crash the view.
    error = pb.Error.FromString(b"\x08\xb9\x60")  # code = 12345
    assert m.error_from_pb(error) == (12345, "engine error")


@FAST
@given(address=st.ip_addresses())
def test_ip_round_trip(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    wire = pb.IpAddress.FromString(m.ip_to_pb(str(address)).SerializeToString())
    expected = address
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        expected = address.ipv4_mapped
    assert m.ip_from_pb(wire) == str(expected)


def test_ip_encodings() -> None:
    assert m.ip_to_pb("1.2.3.4").v4 == 0x01020304
    assert m.ip_to_pb("::ffff:1.2.3.4").WhichOneof("addr") == "v4"
    assert m.ip_to_pb("::1").v6 == b"\x00" * 15 + b"\x01"
    with pytest.raises(ValueError):
        m.ip_to_pb("not-an-ip")


@pytest.mark.parametrize("message", [pb.IpAddress(), pb.IpAddress(v6=b"\x01\x02"), pb.IpAddress(v6=b"")])
def test_ip_from_pb_rejects_bad_values(message: pb.IpAddress) -> None:
    assert m.ip_from_pb(message) is None


def test_ip_v4_zero_is_present() -> None:
    assert m.ip_from_pb(pb.IpAddress.FromString(m.ip_to_pb("0.0.0.0").SerializeToString())) == "0.0.0.0"


# ---- builders ------------------------------------------------------------------------------------


def test_open_control_channel_req() -> None:
    details = m.ClientDetails(agent="a", token="t", protocol_version=PROTOCOL_VERSION)
    msg = m.open_control_channel_req(details, 5000)
    assert m.kind(msg) == "open_control_channel_req"
    assert m.ClientDetails.from_pb(msg.open_control_channel_req.client_details) == details
    assert msg.open_control_channel_req.liveness.heartbeat_interval_ms == 5000
    legacy = m.open_control_channel_req(details, None)
    assert not legacy.open_control_channel_req.HasField("liveness")


def test_open_control_channel_ok_and_error() -> None:
    server = m.ServerDetails(agent="portway", region="local")
    msg = m.open_control_channel_ok("client-1", server, (5000, 30000))
    ok = msg.open_control_channel_rsp.ok
    assert msg.open_control_channel_rsp.WhichOneof("payload") == "ok"
    assert ok.client_id == "client-1"
    assert m.ServerDetails.from_pb(ok.server_details) == server
    assert (ok.liveness.heartbeat_interval_ms, ok.liveness.heartbeat_timeout_ms) == (5000, 30000)
    assert not m.open_control_channel_ok("c", server, None).open_control_channel_rsp.ok.HasField("liveness")

    err = m.open_control_channel_error(ErrorCode.UNAUTHORIZED, "bad token")
    assert err.open_control_channel_rsp.WhichOneof("payload") == "error"
    assert m.error_from_pb(err.open_control_channel_rsp.error) == (1000, "bad token")


def test_close_control_channel() -> None:
    assert m.kind(m.close_control_channel_req()) == "close_control_channel_req"
    assert m.kind(m.close_control_channel_rsp()) == "close_control_channel_rsp"


def test_tunnel_builders() -> None:
    props = m.TunnelProperties(name="web", protocol="http", labels={"k": "v"})
    req = m.open_tunnel_req("r1", props)
    assert req.open_tunnel_req.request_id == "r1"
    assert m.TunnelProperties.from_pb(req.open_tunnel_req.tunnel_properties) == props

    ok = m.open_tunnel_ok("r1", props)
    assert ok.open_tunnel_rsp.WhichOneof("payload") == "tunnel_properties"
    assert m.TunnelProperties.from_pb(ok.open_tunnel_rsp.tunnel_properties) == props

    empty_ok = m.open_tunnel_ok("r2", m.TunnelProperties())
    assert empty_ok.open_tunnel_rsp.WhichOneof("payload") == "tunnel_properties"

    err = m.open_tunnel_error("r1", ErrorCode.INVALID_REQUEST, "port")
    assert err.open_tunnel_rsp.request_id == "r1"
    assert err.open_tunnel_rsp.WhichOneof("payload") == "error"
    assert m.error_from_pb(err.open_tunnel_rsp.error) == (2000, "port")

    assert m.close_tunnel_req("t1").close_tunnel_req.tunnel_id == "t1"
    assert m.close_tunnel_rsp("t1").close_tunnel_rsp.tunnel_id == "t1"


def test_proxy_builders() -> None:
    req = m.proxy_conn_req("t1", "s1", "sec", "203.0.113.9")
    body = req.proxy_conn_req
    assert (body.tunnel_id, body.stream_id, body.secret.value) == ("t1", "s1", "sec")
    assert m.ip_from_pb(body.source_ip) == "203.0.113.9"
    assert not m.proxy_conn_req("t1", "s1", "sec", None).proxy_conn_req.HasField("source_ip")

    assert not m.proxy_conn_rsp("s1").proxy_conn_rsp.HasField("error")
    failed = m.proxy_conn_rsp("s1", (ErrorCode.INVALID_STREAM, "gone"))
    assert m.error_from_pb(failed.proxy_conn_rsp.error) == (4000, "gone")

    details = m.ClientDetails(token="secret")
    preq = m.proxy_req(details, "s1", False)
    assert preq.proxy_req.stream_id == "s1"
    assert preq.proxy_req.HasField("zero_rtt")
    assert preq.proxy_req.zero_rtt.value is False
    assert preq.proxy_req.client_details.token.value == "secret"

    assert m.kind(m.proxy_rsp()) == "proxy_rsp"
    assert not m.proxy_rsp().proxy_rsp.HasField("error")
    assert m.error_from_pb(m.proxy_rsp((ErrorCode.UNAUTHORIZED, "no")).proxy_rsp.error) == (1000, "no")


def test_stream_builders() -> None:
    req = m.stream_req(m.ClientDetails(token="x"), "my-tunnel", True)
    assert req.stream_req.tunnel_id_name == "my-tunnel"
    assert req.stream_req.zero_rtt.value is True
    ok = m.stream_rsp_ok("s9")
    assert ok.stream_rsp.WhichOneof("payload") == "stream_id"
    assert ok.stream_rsp.stream_id == "s9"
    err = m.stream_rsp_error(ErrorCode.TUNNEL_NOT_FOUND, "nope")
    assert err.stream_rsp.WhichOneof("payload") == "error"
    assert m.error_from_pb(err.stream_rsp.error) == (3000, "nope")


def test_heartbeat_and_server_message() -> None:
    legacy = m.heartbeat()
    assert m.kind(legacy) == "heartbeat"
    assert legacy.heartbeat.ByteSize() == 0
    ack = m.heartbeat(0, 7)
    assert (ack.heartbeat.sequence, ack.heartbeat.acknowledgement) == (0, 7)
    assert m.server_message("hello").server_message.message == "hello"


def test_kind_of_empty_message() -> None:
    assert m.kind(pb.Message()) == "None"
