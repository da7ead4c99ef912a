"""Events the sans-IO protocol cores report: small frozen facts, named in the past tense."""

from __future__ import annotations

from dataclasses import dataclass

from portway.wire.messages import ServerDetails, TunnelProperties


@dataclass(frozen=True, slots=True)
class TunnelOpenRequested:
    """The agent asked for a tunnel; answer with `tunnel_opened` or `tunnel_refused` (same request_id)."""

    request_id: str
    properties: TunnelProperties


@dataclass(frozen=True, slots=True)
class TunnelCloseRequested:
    """The agent closed one of its tunnels; answer with `tunnel_closed`."""

    tunnel_id: str


@dataclass(frozen=True, slots=True)
class StreamRefused:
    """The agent could not open a stream the engine asked for (ProxyConnRsp with an error)."""

    stream_id: str
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class ChannelCloseRequested:
    """The agent asked to close the channel; the answer is already queued: send it, then close."""


ControlEvent = TunnelOpenRequested | TunnelCloseRequested | StreamRefused | ChannelCloseRequested


# ---- what the agent side of a control channel reports ----


@dataclass(frozen=True, slots=True)
class ControlOpened:
    """The engine accepted the channel. `timeout_s` is the negotiated liveness timeout (0 = none)."""

    client_id: str
    server: ServerDetails
    timeout_s: float


@dataclass(frozen=True, slots=True)
class ControlRefused:
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class TunnelOpened:
    request_id: str
    properties: TunnelProperties


@dataclass(frozen=True, slots=True)
class TunnelRefused:
    request_id: str
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class TunnelClosed:
    """A CloseTunnelRsp: the answer to our close, or the engine retiring the tunnel."""

    tunnel_id: str


@dataclass(frozen=True, slots=True)
class StreamRequested:
    """A ProxyConnReq: dial the engine back with `secret` for `stream_id`, then answer it."""

    tunnel_id: str
    stream_id: str
    secret: str | None
    source_ip: str | None


@dataclass(frozen=True, slots=True)
class ChannelClosed:
    """The engine answered our CloseControlChannelReq."""


@dataclass(frozen=True, slots=True)
class ServerSaid:
    text: str


AgentEvent = (ControlOpened | ControlRefused | TunnelOpened | TunnelRefused | TunnelClosed | StreamRequested
              | ChannelClosed | ServerSaid)
