"""Typed views of protocol messages and builders for the frames each side sends.

The only module besides `framing` that touches the generated protobuf code. Conversions of
`TunnelProperties` are table-driven so a field added to the schema is added in one place.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import platform
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast

from portway.wire._pb import rstream_pb2 as pb
from portway.wire.codes import PROTOCOL_VERSION, ErrorCode

Message = pb.Message
FieldKind = Literal["str", "bool", "u32", "list", "map", "time"]

# (field name, kind) for every TunnelProperties field, in schema order.
_PROPERTY_FIELDS: tuple[tuple[str, FieldKind], ...] = (
    ("id", "str"), ("creation_date", "time"), ("name", "str"), ("type", "str"), ("publish", "bool"),
    ("protocol", "str"), ("labels", "map"), ("geoip", "list"), ("trusted_ips", "list"), ("host", "str"),
    ("tls_mode", "str"), ("tls_alpns", "list"), ("tls_min_version", "str"), ("tls_ciphers", "list"),
    ("mtls_auth", "bool"), ("mtls_cacert_pem", "str"), ("http_version", "str"), ("http_use_tls", "bool"),
    ("token_auth", "bool"), ("rstream_auth", "bool"), ("challenge_mode", "bool"), ("hostname", "str"),
    ("port", "u32"), ("upstream_tls", "bool"), ("datagram_guaranteed_delivery", "bool"),
    ("allow_cross_region_routing", "bool"),
)


@dataclass(frozen=True, slots=True)
class TunnelProperties:
    """Tunnel properties as the protocol carries them; `None` means "not set" (wrapper types)."""

    id: str | None = None
    creation_date: datetime | None = None
    name: str | None = None
    type: str | None = None
    publish: bool | None = None
    protocol: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    geoip: tuple[str, ...] = ()
    trusted_ips: tuple[str, ...] = ()
    host: str | None = None
    tls_mode: str | None = None
    tls_alpns: tuple[str, ...] = ()
    tls_min_version: str | None = None
    tls_ciphers: tuple[str, ...] = ()
    mtls_auth: bool | None = None
    mtls_cacert_pem: str | None = None
    http_version: str | None = None
    http_use_tls: bool | None = None
    token_auth: bool | None = None
    rstream_auth: bool | None = None
    challenge_mode: bool | None = None
    hostname: str | None = None
    port: int | None = None
    upstream_tls: bool | None = None
    datagram_guaranteed_delivery: bool | None = None
    allow_cross_region_routing: bool | None = None

    def replace(self, **changes: Any) -> TunnelProperties:
        """Return a copy with `changes` applied."""
        return dataclasses.replace(self, **changes)

    def to_pb(self) -> pb.TunnelProperties:
        out = pb.TunnelProperties()
        for name, kind in _PROPERTY_FIELDS:
            value = getattr(self, name)
            if kind == "list":
                getattr(out, name).extend(value)
            elif kind == "map":
                getattr(out, name).update(value)
            elif value is None:
                continue
            elif kind == "time":
                out.creation_date.FromDatetime(value.astimezone(UTC))
            else:
                getattr(out, name).value = value
        return out

    @classmethod
    def from_pb(cls, message: pb.TunnelProperties) -> TunnelProperties:
        values: dict[str, Any] = {}
        for name, kind in _PROPERTY_FIELDS:
            if kind == "list":
                values[name] = tuple(getattr(message, name))
            elif kind == "map":
                values[name] = dict(getattr(message, name))
            elif not message.HasField(name):
                values[name] = None
            elif kind == "time":
                values[name] = message.creation_date.ToDatetime(tzinfo=UTC)
            else:
                values[name] = getattr(message, name).value
        return cls(**values)


@dataclass(frozen=True, slots=True)
class ClientDetails:
    """Who is calling: agent identity strings and the token (never logged)."""

    agent: str | None = None
    channel: str | None = None
    version: str | None = None
    os: str | None = None
    arch: str | None = None
    token: str | None = field(default=None, repr=False)
    protocol_version: str | None = None

    _FIELDS = ("agent", "channel", "version", "os", "arch", "token", "protocol_version")

    @classmethod
    def from_pb(cls, message: pb.ClientDetails) -> ClientDetails:
        return cls(**{n: getattr(message, n).value if message.HasField(n) else None for n in cls._FIELDS})

    def to_pb(self) -> pb.ClientDetails:
        out = pb.ClientDetails()
        for name in self._FIELDS:
            value = getattr(self, name)
            if value is not None:
                getattr(out, name).value = value
        return out

    @classmethod
    def local(cls, token: str | None, *, version: str) -> ClientDetails:
        """Details describing this Portway agent process."""
        return cls(
            agent="portway",
            channel="cli",
            version=version,
            os=sys.platform,
            arch=platform.machine(),
            token=token,
            protocol_version=PROTOCOL_VERSION,
        )


@dataclass(frozen=True, slots=True)
class ServerDetails:
    agent: str | None = None
    channel: str | None = None
    version: str | None = None
    plan: str | None = None
    provider: str | None = None
    region: str | None = None
    update: str | None = None

    _FIELDS = ("agent", "channel", "version", "plan", "provider", "region", "update")

    def to_pb(self) -> pb.ServerDetails:
        out = pb.ServerDetails()
        for name in self._FIELDS:
            value = getattr(self, name)
            if value is not None:
                getattr(out, name).value = value
        return out

    @classmethod
    def from_pb(cls, message: pb.ServerDetails) -> ServerDetails:
        return cls(**{n: getattr(message, n).value if message.HasField(n) else None for n in cls._FIELDS})


def kind(message: pb.Message) -> str:
    """The name of the payload a `Message` carries (e.g. ``"proxy_req"``)."""
    return str(message.WhichOneof("payload"))


def error_pb(code: ErrorCode, text: str) -> pb.Error:
    out = pb.Error(code=cast(Any, int(code)))
    out.message.value = text
    return out


def error_from_pb(error: pb.Error) -> tuple[int, str]:
    """Return (code, message) of an `Error`, with a generic message when none was sent."""
    text = error.message.value if error.HasField("message") else "engine error"
    return int(error.code), text


def ip_to_pb(address: str) -> pb.IpAddress:
    """Encode a textual IP (v4 as a big-endian fixed32, v6 as 16 bytes)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv4Address):
        return pb.IpAddress(v4=int(ip))
    return pb.IpAddress(v6=ip.packed)


def ip_from_pb(message: pb.IpAddress) -> str | None:
    which = message.WhichOneof("addr")
    if which == "v4":
        return str(ipaddress.IPv4Address(message.v4))
    if which == "v6" and len(message.v6) == 16:
        return str(ipaddress.IPv6Address(message.v6))
    return None


# ---- builders: one per frame kind, so callers never assemble protobuf by hand ----


def open_control_channel_req(details: ClientDetails, heartbeat_interval_ms: int | None) -> pb.Message:
    msg = pb.Message()
    msg.open_control_channel_req.client_details.CopyFrom(details.to_pb())
    if heartbeat_interval_ms is not None:
        msg.open_control_channel_req.liveness.heartbeat_interval_ms = heartbeat_interval_ms
    return msg


def open_control_channel_ok(
    client_id: str, server: ServerDetails, liveness: tuple[int, int] | None
) -> pb.Message:
    msg = pb.Message()
    ok = msg.open_control_channel_rsp.ok
    ok.client_id = client_id
    ok.server_details.CopyFrom(server.to_pb())
    if liveness is not None:
        ok.liveness.heartbeat_interval_ms, ok.liveness.heartbeat_timeout_ms = liveness
    return msg


def open_control_channel_error(code: ErrorCode, text: str) -> pb.Message:
    msg = pb.Message()
    msg.open_control_channel_rsp.error.CopyFrom(error_pb(code, text))
    return msg


def close_control_channel_req() -> pb.Message:
    msg = pb.Message()
    msg.close_control_channel_req.SetInParent()
    return msg


def close_control_channel_rsp() -> pb.Message:
    msg = pb.Message()
    msg.close_control_channel_rsp.SetInParent()
    return msg


def open_tunnel_req(request_id: str, properties: TunnelProperties) -> pb.Message:
    msg = pb.Message()
    msg.open_tunnel_req.request_id = request_id
    msg.open_tunnel_req.tunnel_properties.CopyFrom(properties.to_pb())
    return msg


def open_tunnel_ok(request_id: str, properties: TunnelProperties) -> pb.Message:
    msg = pb.Message()
    msg.open_tunnel_rsp.request_id = request_id
    msg.open_tunnel_rsp.tunnel_properties.CopyFrom(properties.to_pb())
    return msg


def open_tunnel_error(request_id: str, code: ErrorCode, text: str) -> pb.Message:
    msg = pb.Message()
    msg.open_tunnel_rsp.request_id = request_id
    msg.open_tunnel_rsp.error.CopyFrom(error_pb(code, text))
    return msg


def close_tunnel_req(tunnel_id: str) -> pb.Message:
    msg = pb.Message()
    msg.close_tunnel_req.tunnel_id = tunnel_id
    return msg


def close_tunnel_rsp(tunnel_id: str) -> pb.Message:
    msg = pb.Message()
    msg.close_tunnel_rsp.tunnel_id = tunnel_id
    return msg


def proxy_conn_req(tunnel_id: str, stream_id: str, secret: str, source_ip: str | None) -> pb.Message:
    msg = pb.Message()
    req = msg.proxy_conn_req
    req.tunnel_id, req.stream_id = tunnel_id, stream_id
    req.secret.value = secret
    if source_ip:
        req.source_ip.CopyFrom(ip_to_pb(source_ip))
    return msg


def proxy_conn_rsp(stream_id: str, error: tuple[ErrorCode, str] | None = None) -> pb.Message:
    msg = pb.Message()
    msg.proxy_conn_rsp.stream_id = stream_id
    if error is not None:
        msg.proxy_conn_rsp.error.CopyFrom(error_pb(*error))
    return msg


def proxy_req(details: ClientDetails, stream_id: str, zero_rtt: bool) -> pb.Message:
    msg = pb.Message()
    msg.proxy_req.client_details.CopyFrom(details.to_pb())
    msg.proxy_req.stream_id = stream_id
    msg.proxy_req.zero_rtt.value = zero_rtt
    return msg


def proxy_rsp(error: tuple[ErrorCode, str] | None = None) -> pb.Message:
    msg = pb.Message()
    msg.proxy_rsp.SetInParent()
    if error is not None:
        msg.proxy_rsp.error.CopyFrom(error_pb(*error))
    return msg


def stream_req(details: ClientDetails, tunnel: str, zero_rtt: bool) -> pb.Message:
    msg = pb.Message()
    msg.stream_req.client_details.CopyFrom(details.to_pb())
    msg.stream_req.tunnel_id_name = tunnel
    msg.stream_req.zero_rtt.value = zero_rtt
    return msg


def stream_rsp_ok(stream_id: str) -> pb.Message:
    msg = pb.Message()
    msg.stream_rsp.stream_id = stream_id
    return msg


def stream_rsp_error(code: ErrorCode, text: str) -> pb.Message:
    msg = pb.Message()
    msg.stream_rsp.error.CopyFrom(error_pb(code, text))
    return msg


def heartbeat(sequence: int = 0, acknowledgement: int = 0) -> pb.Message:
    msg = pb.Message()
    msg.heartbeat.SetInParent()
    msg.heartbeat.sequence, msg.heartbeat.acknowledgement = sequence, acknowledgement
    return msg


def server_message(text: str) -> pb.Message:
    msg = pb.Message()
    msg.server_message.message = text
    return msg
