"""Sans-IO first frame of a fresh `rstrm/1` connection (protocol facts §2.4, §2.6, §2.7).

`FirstFrameReader.receive_data()` returns `None` until one whole frame arrived, then what the
connection asks for: a control channel, a data connection for a stream the engine requested, or a
private dial. Bytes after that frame belong to the stream: `rest()` hands them over. Any other first
frame is a `ProtocolViolation`; a malformed one is a `FrameError`. Absent `zero_rtt` means true, the
clients' default (§2.6: with zero-RTT the engine sends no reply).
"""

from __future__ import annotations

from dataclasses import dataclass

from portway.errors import EngineRejected
from portway.wire import messages
from portway.wire._pb import rstream_pb2 as pb
from portway.wire.errors import ProtocolViolation
from portway.wire.framing import FrameDecoder
from portway.wire.messages import ClientDetails


@dataclass(frozen=True, slots=True)
class ControlRequested:
    details: ClientDetails
    heartbeat_interval_ms: int | None


@dataclass(frozen=True, slots=True)
class ProxyRequested:
    """A data connection answering ProxyConnReq; the token field carries the stream's secret."""

    stream_id: str
    secret: str | None
    zero_rtt: bool


@dataclass(frozen=True, slots=True)
class DialRequested:
    """A private dial of a tunnel by name or id."""

    tunnel: str
    details: ClientDetails
    zero_rtt: bool
    datagram_channel: bool


FirstFrame = ControlRequested | ProxyRequested | DialRequested


def _flag(message: pb.ProxyReq | pb.StreamReq, name: str, default: bool) -> bool:
    return bool(getattr(message, name).value) if message.HasField(name) else default


class FirstFrameReader:
    """Reads exactly one frame; see the module docstring."""

    def __init__(self) -> None:
        self._decoder = FrameDecoder()

    def receive_data(self, data: bytes) -> FirstFrame | None:
        frames = self._decoder.feed(data, limit=1)
        if not frames:
            return None
        frame = frames[0]
        which = frame.WhichOneof("payload")
        if which == "open_control_channel_req":
            req = frame.open_control_channel_req
            interval = req.liveness.heartbeat_interval_ms if req.HasField("liveness") else None
            return ControlRequested(ClientDetails.from_pb(req.client_details), interval or None)
        if which == "proxy_req":
            proxy = frame.proxy_req
            secret = proxy.client_details.token.value if proxy.client_details.HasField("token") else None
            return ProxyRequested(proxy.stream_id, secret, _flag(proxy, "zero_rtt", True))
        if which == "stream_req":
            dial = frame.stream_req
            return DialRequested(dial.tunnel_id_name, ClientDetails.from_pb(dial.client_details),
                                 _flag(dial, "zero_rtt", True), _flag(dial, "datagram_channel", False))
        raise ProtocolViolation(f"unexpected first frame {which}")

    def rest(self) -> bytes:
        """The bytes that followed the first frame (call once, after it was returned)."""
        return self._decoder.take_rest()


def check_reply(frame: pb.Message, expected: str) -> None:
    """Dialer side, without zero-RTT: the engine must answer `expected` (proxy_rsp or stream_rsp).

    Raises `ProtocolViolation` for another message and `EngineRejected` when the reply carries an error.
    """
    which = frame.WhichOneof("payload")
    if which != expected:
        raise ProtocolViolation(f"engine answered {which}, expected {expected}")
    body = getattr(frame, expected)
    if body.HasField("error"):
        raise EngineRejected(*messages.error_from_pb(body.error))
