"""Events the sans-IO protocol cores report: small frozen facts, named in the past tense."""

from __future__ import annotations

from dataclasses import dataclass

from portway.wire.messages import TunnelProperties


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
