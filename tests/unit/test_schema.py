"""Our generated schema against the official SDK's: same wire contract, and messages cross-decode."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, FileDescriptor
from google.protobuf.message import Message as ProtoMessage
from rstream._proto import rstream_pb2 as theirs

from portway.wire import messages as m
from portway.wire._pb import rstream_pb2 as ours
from portway.wire.codes import PROTOCOL_VERSION, ErrorCode
from portway.wire.framing import decode_message, encode_frame

PACKAGE = "rstream.io_rstrm.protobuf"


def _all_messages(file: FileDescriptor) -> dict[str, Descriptor]:
    found: dict[str, Descriptor] = {}

    def walk(descriptor: Descriptor) -> None:
        found[descriptor.full_name] = descriptor
        for nested in descriptor.nested_types:
            walk(nested)

    for descriptor in file.message_types_by_name.values():
        walk(descriptor)
    return found


def _all_enums(file: FileDescriptor) -> dict[str, EnumDescriptor]:
    enums = dict(file.enum_types_by_name)
    for descriptor in _all_messages(file).values():
        for enum in descriptor.enum_types:
            enums[enum.full_name] = enum
    return {enum.full_name: enum for enum in enums.values()}


def _field_shape(field: FieldDescriptor) -> tuple[Any, ...]:
    return (
        field.number,
        field.type,
        field.is_repeated,
        field.has_presence,
        field.message_type.full_name if field.message_type else None,
        field.enum_type.full_name if field.enum_type else None,
        field.containing_oneof.name if field.containing_oneof else None,
    )


def _extendee(extension: FieldDescriptor) -> str | None:
    return extension.containing_type.full_name if extension.containing_type else None


def _options(descriptor: Any) -> dict[str, Any]:
    """Options by full name; works across pools (custom extensions cannot be looked up by handle)."""
    return {fd.full_name: value for fd, value in descriptor.GetOptions().ListFields()}


OUR_MESSAGES = _all_messages(ours.DESCRIPTOR)
THEIR_MESSAGES = _all_messages(theirs.DESCRIPTOR)


def test_separate_pools() -> None:
    assert ours.DESCRIPTOR.pool is not theirs.DESCRIPTOR.pool


def test_same_file_and_package() -> None:
    assert ours.DESCRIPTOR.name == theirs.DESCRIPTOR.name == "rstream.proto"
    assert ours.DESCRIPTOR.package == theirs.DESCRIPTOR.package == PACKAGE


def test_same_message_set() -> None:
    assert set(OUR_MESSAGES) == set(THEIR_MESSAGES)
    assert len(OUR_MESSAGES) >= 24


@pytest.mark.parametrize("name", sorted(THEIR_MESSAGES))
def test_message_fields_match(name: str) -> None:
    mine, official = OUR_MESSAGES[name], THEIR_MESSAGES[name]
    assert {f.name: _field_shape(f) for f in mine.fields} == {
        f.name: _field_shape(f) for f in official.fields
    }
    assert {o.name: [f.name for f in o.fields] for o in mine.oneofs} == {
        o.name: [f.name for f in o.fields] for o in official.oneofs
    }
    assert mine.GetOptions().map_entry == official.GetOptions().map_entry


@pytest.mark.parametrize("name", sorted(THEIR_MESSAGES))
def test_field_options_match(name: str) -> None:
    """Deprecation marks and the `access` annotations (read-only / read-write) agree."""
    for field in THEIR_MESSAGES[name].fields:
        assert _options(OUR_MESSAGES[name].fields_by_name[field.name]) == _options(field), field.name


def test_same_enums() -> None:
    mine, official = _all_enums(ours.DESCRIPTOR), _all_enums(theirs.DESCRIPTOR)
    assert set(mine) == set(official)
    for name, enum in official.items():
        assert {v.name: v.number for v in mine[name].values} == {v.name: v.number for v in enum.values}


def test_same_extensions() -> None:
    mine, official = ours.DESCRIPTOR.extensions_by_name, theirs.DESCRIPTOR.extensions_by_name
    assert set(mine) == set(official) == {"protocol_version", "access"}
    for name, extension in official.items():
        assert (mine[name].number, mine[name].type) == (extension.number, extension.type)
        assert _extendee(mine[name]) == _extendee(extension) == (
            "google.protobuf.FileOptions" if name == "protocol_version" else "google.protobuf.FieldOptions"
        )


def test_protocol_version_option() -> None:
    option = f"{PACKAGE}.protocol_version"
    assert _options(ours.DESCRIPTOR)[option] == PROTOCOL_VERSION == "1.4.5"
    assert _options(theirs.DESCRIPTOR)[option] == PROTOCOL_VERSION


def test_error_code_mirror() -> None:
    """`codes.ErrorCode` mirrors the schema enum value for value."""
    schema = {v.name.removeprefix("ERROR_CODE_"): v.number for v in ours.ErrorCode.DESCRIPTOR.values}
    assert {code.name: int(code) for code in ErrorCode} == schema


# ---- cross-decoding ------------------------------------------------------------------------------


def _representative() -> list[ours.Message]:
    details = m.ClientDetails.local("tok", version="0.1.0")
    props = m.TunnelProperties(
        name="web", publish=True, protocol="http", labels={"b": "2", "a": "1"}, geoip=("FR",),
        trusted_ips=("10.0.0.0/8",), http_version="h2c", token_auth=True, hostname="x.t.localhost",
        port=0, upstream_tls=False,
    )
    return [
        m.open_control_channel_req(details, 5000),
        m.open_control_channel_ok("cid", m.ServerDetails(agent="portway", region="local"), (5000, 30000)),
        m.open_control_channel_error(ErrorCode.PROTOCOL_VERSION_INCOMPATIBLE, "too old"),
        m.open_tunnel_req("r1", props),
        m.open_tunnel_ok("r1", props.replace(id="t1")),
        m.proxy_conn_req("t1", "s1", "secret", "2001:db8::1"),
        m.proxy_req(details, "s1", True),
        m.stream_req(details, "web", False),
        m.stream_rsp_ok("s1"),
        m.heartbeat(3, 0),
        m.close_control_channel_req(),
    ]


@pytest.mark.parametrize("message", _representative(), ids=m.kind)
def test_ours_parses_with_theirs(message: ours.Message) -> None:
    wire = message.SerializeToString(deterministic=True)
    parsed: ProtoMessage = theirs.Message.FromString(wire)
    assert parsed.WhichOneof("payload") == m.kind(message)
    assert parsed.SerializeToString(deterministic=True) == wire
    assert str(parsed) == str(message)


@pytest.mark.parametrize("message", _representative(), ids=m.kind)
def test_theirs_parses_with_ours(message: ours.Message) -> None:
    official = theirs.Message.FromString(message.SerializeToString(deterministic=True))
    parsed = decode_message(official.SerializeToString(deterministic=True))
    assert parsed == message
    # Map order on the wire is unspecified unless serialization is deterministic.
    assert parsed.SerializeToString(deterministic=True) == message.SerializeToString(deterministic=True)
    assert len(encode_frame(parsed)) == len(encode_frame(message))


def test_official_message_built_natively() -> None:
    """A message assembled with the SDK's own classes reads back through our typed views."""
    official = theirs.Message()
    req = official.open_tunnel_req
    req.request_id = "r9"
    req.tunnel_properties.protocol.value = "tls"
    req.tunnel_properties.tls_mode.value = "passthrough"
    req.tunnel_properties.port.value = 4443
    req.tunnel_properties.labels["env"] = "prod"
    req.tunnel_properties.creation_date.seconds = 1_700_000_000
    parsed = decode_message(official.SerializeToString())
    props = m.TunnelProperties.from_pb(parsed.open_tunnel_req.tunnel_properties)
    assert (props.protocol, props.tls_mode, props.port) == ("tls", "passthrough", 4443)
    assert props.labels == {"env": "prod"}
    assert props.creation_date is not None
    assert int(props.creation_date.timestamp()) == 1_700_000_000

    liveness = theirs.Message()
    liveness.open_control_channel_rsp.ok.liveness.heartbeat_interval_ms = 5000
    liveness.open_control_channel_rsp.ok.liveness.heartbeat_timeout_ms = 900_000
    ok = decode_message(liveness.SerializeToString()).open_control_channel_rsp.ok
    assert (ok.liveness.heartbeat_interval_ms, ok.liveness.heartbeat_timeout_ms) == (5000, 900_000)
