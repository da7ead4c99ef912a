"""Sans-IO control channel, both ends (protocol facts §2.4, §2.5, §2.9).

`EngineControlConnection` is created once the engine accepted an `OpenControlChannelReq`;
`AgentControlConnection` starts with `opening()`. For both, the shell feeds received bytes with
`receive_data(data, now)`, acts on the returned events, sends `data_to_send()`, and closes the channel
when `receive_data` raises a `WireError` (its `code` says why) or when `expired(now)` turns true.
Heartbeats are answered here; nothing in this module touches a socket or a clock.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from portway.wire import events, liveness, messages
from portway.wire._pb import rstream_pb2 as pb
from portway.wire.codes import ErrorCode
from portway.wire.errors import ProtocolViolation
from portway.wire.framing import FrameDecoder, encode_frame
from portway.wire.messages import ClientDetails, ServerDetails, TunnelProperties

E = TypeVar("E")


class _FrameChannel(Generic[E]):
    """What both ends share: frames in → events (via `_handle`), frames queued out, any frame a sign of life."""

    def __init__(self) -> None:
        self._decoder = FrameDecoder()
        self._out: list[bytes] = []

    def receive_data(self, data: bytes, now: float) -> list[E]:
        """Decode what arrived and return the events to act on, in order.

        Raises `WireError` (a bad frame, an unexpected message, a liveness rule broken): the channel must
        then be closed. Events decoded before the bad frame are not returned.
        """
        frames = self._decoder.feed(data)
        if frames:
            self._alive(now)
        found: list[E] = []
        for frame in frames:
            event = self._handle(frame)
            if event is not None:
                found.append(event)
        return found

    def data_to_send(self) -> bytes:
        """Everything queued since the last call; b"" when there is nothing to send."""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def _send(self, message: pb.Message) -> None:
        self._out.append(encode_frame(message))

    def _alive(self, now: float) -> None:
        raise NotImplementedError

    def _handle(self, frame: pb.Message) -> E | None:
        raise NotImplementedError


class EngineControlConnection(_FrameChannel[events.ControlEvent]):
    """One control channel, engine side. Methods named after facts queue the frame that reports them."""

    def __init__(self, *, requested_interval_ms: int | None, timeout_ms: int, now: float) -> None:
        self.liveness = liveness.negotiate(requested_interval_ms, timeout_ms=timeout_ms)
        timeout_s = (self.liveness[1] if self.liveness else timeout_ms) / 1000
        self._monitor = liveness.LivenessMonitor(timeout_s=timeout_s, last_seen=now)
        super().__init__()

    def _alive(self, now: float) -> None:
        self._monitor.received(now)

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


class AgentControlConnection(_FrameChannel[events.AgentEvent]):
    """One control channel, agent side: `opening()` first, then feed bytes and act on events."""

    def __init__(self, *, heartbeat_interval_ms: int | None, now: float) -> None:
        super().__init__()
        self.heartbeat_interval_ms = heartbeat_interval_ms or None
        self._acks = liveness.AckTracker(negotiated=False)
        self.timeout_s = 0.0
        self._last_seen = now

    def opening(self, details: ClientDetails) -> None:
        """Queue the OpenControlChannelReq (with the heartbeat interval when heartbeats are on)."""
        self._send(messages.open_control_channel_req(details, self.heartbeat_interval_ms))

    def _alive(self, now: float) -> None:
        self._last_seen = now

    def _handle(self, frame: pb.Message) -> events.AgentEvent | None:
        which = frame.WhichOneof("payload")
        if which == "heartbeat":
            self._acks.acknowledgement(frame.heartbeat.sequence, frame.heartbeat.acknowledgement)
            return None
        if which == "proxy_conn_req":
            req = frame.proxy_conn_req
            return events.StreamRequested(
                req.tunnel_id, req.stream_id, req.secret.value if req.HasField("secret") else None,
                messages.ip_from_pb(req.source_ip) if req.HasField("source_ip") else None)
        if which == "open_tunnel_rsp":
            rsp = frame.open_tunnel_rsp
            if rsp.WhichOneof("payload") == "error":
                return events.TunnelRefused(rsp.request_id, *messages.error_from_pb(rsp.error))
            props = TunnelProperties.from_pb(rsp.tunnel_properties)
            if not props.id:
                raise ProtocolViolation("engine returned a tunnel without an id")
            return events.TunnelOpened(rsp.request_id, props)
        if which == "close_tunnel_rsp":
            return events.TunnelClosed(frame.close_tunnel_rsp.tunnel_id)
        if which == "open_control_channel_rsp":
            return self._opened(frame.open_control_channel_rsp)
        if which == "close_control_channel_rsp":
            return events.ChannelClosed()
        if which == "server_message":
            return events.ServerSaid(frame.server_message.message)
        raise ProtocolViolation(f"unexpected {which} on the control channel")

    def _opened(self, rsp: pb.OpenControlChannelRsp) -> events.AgentEvent:
        if rsp.WhichOneof("payload") == "error":
            return events.ControlRefused(*messages.error_from_pb(rsp.error))
        lv = rsp.ok.liveness
        answered = (lv.heartbeat_interval_ms, lv.heartbeat_timeout_ms) if rsp.ok.HasField("liveness") else None
        self.timeout_s = liveness.check_answer(self.heartbeat_interval_ms, answered)
        self._acks = liveness.AckTracker(negotiated=answered is not None)
        return events.ControlOpened(rsp.ok.client_id, ServerDetails.from_pb(rsp.ok.server_details), self.timeout_s)

    def expired(self, now: float) -> bool:
        """True once the engine has been silent longer than the negotiated timeout."""
        return bool(self.timeout_s) and now - self._last_seen > self.timeout_s

    # ---- output ----

    def heartbeat(self) -> None:
        """Queue the next heartbeat: numbered when liveness was negotiated, empty (legacy) otherwise."""
        self._send(messages.heartbeat(self._acks.next_sequence()))

    def open_tunnel(self, request_id: str, props: TunnelProperties) -> None:
        self._send(messages.open_tunnel_req(request_id, props))

    def close_tunnel(self, tunnel_id: str) -> None:
        self._send(messages.close_tunnel_req(tunnel_id))

    def stream_answered(self, stream_id: str, error: tuple[ErrorCode, str] | None = None) -> None:
        """ProxyConnRsp: the stream is served (no error) or could not be."""
        self._send(messages.proxy_conn_rsp(stream_id, error))

    def closing(self) -> None:
        self._send(messages.close_control_channel_req())
