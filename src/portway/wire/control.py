"""Sans-IO engine side of a control channel (protocol facts §2.4, §2.5, §2.9).

Created once the engine accepted an `OpenControlChannelReq`. The shell feeds received bytes with
`receive_data(data, now)`, acts on the returned events, sends `data_to_send()`, and closes the channel
when `receive_data` raises a `WireError` (its `code` says why) or when `expired(now)` turns true.
Heartbeats are answered here; nothing in this module touches a socket or a clock.
"""

from __future__ import annotations

from portway.wire import events, liveness, messages
from portway.wire._pb import rstream_pb2 as pb
from portway.wire.codes import ErrorCode
from portway.wire.errors import ProtocolViolation
from portway.wire.framing import FrameDecoder, encode_frame
from portway.wire.messages import ServerDetails, TunnelProperties


class EngineControlConnection:
    """One control channel, engine side. Methods named after facts queue the frame that reports them."""

    def __init__(self, *, requested_interval_ms: int | None, timeout_ms: int, now: float) -> None:
        self.liveness = liveness.negotiate(requested_interval_ms, timeout_ms=timeout_ms)
        timeout_s = (self.liveness[1] if self.liveness else timeout_ms) / 1000
        self._monitor = liveness.LivenessMonitor(timeout_s=timeout_s, last_seen=now)
        self._decoder = FrameDecoder()
        self._out: list[bytes] = []

    # ---- input ----

    def receive_data(self, data: bytes, now: float) -> list[events.ControlEvent]:
        """Decode what arrived and return the events to act on, in order.

        Raises `WireError` (a bad frame, an unexpected message, a heartbeat that does not increase):
        the channel must then be closed. Events decoded before the bad frame are not returned.
        """
        frames = self._decoder.feed(data)
        if frames:
            self._monitor.received(now)
        found: list[events.ControlEvent] = []
        for frame in frames:
            event = self._handle(frame)
            if event is not None:
                found.append(event)
        return found

    def _handle(self, frame: pb.Message) -> events.ControlEvent | None:
        which = frame.WhichOneof("payload")
        if which == "heartbeat":
            ack = self._monitor.heartbeat(frame.heartbeat.sequence, frame.heartbeat.acknowledgement)
            if ack is not None:
                self._send(messages.heartbeat(0, ack))
            return None
        if which == "open_tunnel_req":
            req = frame.open_tunnel_req
            return events.TunnelOpenRequested(req.request_id, TunnelProperties.from_pb(req.tunnel_properties))
        if which == "close_tunnel_req":
            return events.TunnelCloseRequested(frame.close_tunnel_req.tunnel_id)
        if which == "proxy_conn_rsp":
            rsp = frame.proxy_conn_rsp
            if not rsp.HasField("error"):
                return None  # accepted: the data connection carries the stream
            code, text = messages.error_from_pb(rsp.error)
            return events.StreamRefused(rsp.stream_id, code, text)
        if which == "close_control_channel_req":
            self._send(messages.close_control_channel_rsp())
            return events.ChannelCloseRequested()
        raise ProtocolViolation(f"unexpected {which} on a control channel")

    # ---- liveness ----

    @property
    def deadline(self) -> float:
        """When the channel expires unless a frame arrives first (same clock as `now`)."""
        return self._monitor.deadline

    @property
    def timeout_s(self) -> float:
        return self._monitor.timeout_s

    def expired(self, now: float) -> bool:
        return self._monitor.expired(now)

    # ---- output ----

    def data_to_send(self) -> bytes:
        """Everything queued since the last call; b"" when there is nothing to send."""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def _send(self, message: pb.Message) -> None:
        self._out.append(encode_frame(message))

    def accepted(self, client_id: str, server: ServerDetails) -> None:
        """Answer the OpenControlChannelReq, with the negotiated liveness when the agent asked for it."""
        self._send(messages.open_control_channel_ok(client_id, server, self.liveness))

    def tunnel_opened(self, request_id: str, props: TunnelProperties) -> None:
        self._send(messages.open_tunnel_ok(request_id, props))

    def tunnel_refused(self, request_id: str, code: ErrorCode, reason: str) -> None:
        self._send(messages.open_tunnel_error(request_id, code, reason))

    def tunnel_closed(self, tunnel_id: str) -> None:
        """Confirm a close, or retire a tunnel unsolicited: both are a CloseTunnelRsp."""
        self._send(messages.close_tunnel_rsp(tunnel_id))

    def stream_requested(self, tunnel_id: str, stream_id: str, secret: str, source_ip: str | None) -> None:
        self._send(messages.proxy_conn_req(tunnel_id, stream_id, secret, source_ip))

    def told(self, text: str) -> None:
        """A free-text ServerMessage the agent logs (e.g. why the channel is about to close)."""
        self._send(messages.server_message(text))
