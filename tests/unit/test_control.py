"""The sans-IO engine control channel: bytes in, events and bytes out, time passed in."""

from __future__ import annotations

import pytest

from portway.wire import events, messages
from portway.wire.codes import ErrorCode
from portway.wire.control import AgentControlConnection, EngineControlConnection
from portway.wire.errors import FrameTooLarge, ProtocolViolation
from portway.wire.framing import FrameDecoder, encode_frame
from portway.wire.messages import ClientDetails, ServerDetails, TunnelProperties


def connection(interval_ms: int | None = 5000, timeout_ms: int = 30_000) -> EngineControlConnection:
    return EngineControlConnection(requested_interval_ms=interval_ms, timeout_ms=timeout_ms, now=100.0)


def sent(conn: EngineControlConnection) -> list[str]:
    """Kinds of the frames queued for the agent."""
    return [m.WhichOneof("payload") for m in FrameDecoder().feed(conn.data_to_send())]


def test_accept_answers_with_the_negotiated_liveness() -> None:
    conn = connection(interval_ms=5000, timeout_ms=30_000)
    conn.accepted("c1", ServerDetails(agent="portway-engine"))
    (frame,) = FrameDecoder().feed(conn.data_to_send())
    ok = frame.open_control_channel_rsp.ok
    assert ok.client_id == "c1"
    assert (ok.liveness.heartbeat_interval_ms, ok.liveness.heartbeat_timeout_ms) == (5000, 30_000)
    assert conn.data_to_send() == b""


def test_legacy_client_gets_no_liveness_and_no_acks() -> None:
    conn = connection(interval_ms=None)
    conn.accepted("c1", ServerDetails())
    (frame,) = FrameDecoder().feed(conn.data_to_send())
    assert not frame.open_control_channel_rsp.ok.HasField("liveness")
    assert conn.receive_data(encode_frame(messages.heartbeat()), now=101.0) == []
    assert conn.data_to_send() == b""


def test_heartbeats_are_acknowledged_in_order_and_must_increase() -> None:
    conn = connection()
    data = encode_frame(messages.heartbeat(1)) + encode_frame(messages.heartbeat(2))
    assert conn.receive_data(data, now=101.0) == []
    acks = [m.heartbeat.acknowledgement for m in FrameDecoder().feed(conn.data_to_send())]
    assert acks == [1, 2]
    with pytest.raises(ProtocolViolation):
        conn.receive_data(encode_frame(messages.heartbeat(2)), now=102.0)


def test_any_frame_pushes_the_deadline_and_silence_expires() -> None:
    conn = connection(timeout_ms=10_000)
    assert conn.deadline == 110.0
    conn.receive_data(encode_frame(messages.heartbeat(1)), now=105.0)
    assert conn.deadline == 115.0
    assert not conn.expired(114.9)
    assert conn.expired(115.0)


def test_frames_become_events() -> None:
    conn = connection()
    props = TunnelProperties(protocol="http", name="web")
    data = b"".join(encode_frame(m) for m in (
        messages.open_tunnel_req("r1", props),
        messages.close_tunnel_req("t1"),
        messages.proxy_conn_rsp("s1", (ErrorCode.SERVICE_UNAVAILABLE, "upstream down")),
        messages.proxy_conn_rsp("s2"),  # accepted: no event
    ))
    # split anywhere: events come out once their frame is complete
    first = conn.receive_data(data[:7], now=101.0)
    rest = conn.receive_data(data[7:], now=101.0)
    assert first + rest == [
        events.TunnelOpenRequested("r1", props),
        events.TunnelCloseRequested("t1"),
        events.StreamRefused("s1", int(ErrorCode.SERVICE_UNAVAILABLE), "upstream down"),
    ]


def test_close_request_queues_the_answer() -> None:
    conn = connection()
    assert conn.receive_data(encode_frame(messages.close_control_channel_req()), now=101.0) == [
        events.ChannelCloseRequested()]
    assert sent(conn) == ["close_control_channel_rsp"]


def test_answers_and_requests_are_framed_for_the_agent() -> None:
    conn = connection()
    conn.tunnel_opened("r1", TunnelProperties(id="t1", protocol="http"))
    conn.tunnel_refused("r2", ErrorCode.INVALID_REQUEST, "bad")
    conn.tunnel_closed("t1")
    conn.stream_requested("t1", "s" * 24, "secret", "127.0.0.1")
    conn.told("bye")
    assert sent(conn) == ["open_tunnel_rsp", "open_tunnel_rsp", "close_tunnel_rsp", "proxy_conn_req",
                          "server_message"]


@pytest.mark.parametrize("frame", [
    messages.open_control_channel_req(ClientDetails(), None),
    messages.proxy_req(ClientDetails(), "s", True),
    messages.stream_rsp_ok("s"),
])
def test_messages_not_allowed_on_a_control_channel_are_violations(frame: messages.Message) -> None:
    with pytest.raises(ProtocolViolation, match="unexpected"):
        connection().receive_data(encode_frame(frame), now=101.0)


def test_oversize_frame_is_refused_before_its_payload() -> None:
    with pytest.raises(FrameTooLarge):
        connection().receive_data((70_000).to_bytes(4, "big"), now=101.0)


# ---- agent side ----


def agent(interval_ms: int | None = 5000) -> AgentControlConnection:
    conn = AgentControlConnection(heartbeat_interval_ms=interval_ms, now=100.0)
    conn.opening(ClientDetails(agent="portway", token="t"))
    return conn


def test_agent_opening_announces_its_heartbeat_interval() -> None:
    (frame,) = FrameDecoder().feed(agent(5000).data_to_send())
    assert frame.open_control_channel_req.liveness.heartbeat_interval_ms == 5000
    (legacy,) = FrameDecoder().feed(agent(None).data_to_send())
    assert not legacy.open_control_channel_req.HasField("liveness")


def test_agent_opened_with_liveness_then_numbered_heartbeats_and_acks() -> None:
    conn = agent(5000)
    conn.data_to_send()
    ok = encode_frame(messages.open_control_channel_ok("c1", ServerDetails(agent="e"), (5000, 20_000)))
    (opened,) = conn.receive_data(ok, now=101.0)
    assert opened == events.ControlOpened("c1", ServerDetails(agent="e"), 20.0)
    conn.heartbeat()
    conn.heartbeat()
    assert [m.heartbeat.sequence for m in FrameDecoder().feed(conn.data_to_send())] == [1, 2]
    assert conn.receive_data(encode_frame(messages.heartbeat(0, 2)), now=102.0) == []
    with pytest.raises(ProtocolViolation):  # acknowledgements must increase
        conn.receive_data(encode_frame(messages.heartbeat(0, 1)), now=103.0)


def test_agent_expires_when_the_engine_goes_silent() -> None:
    conn = agent(5000)
    conn.receive_data(encode_frame(messages.open_control_channel_ok("c1", ServerDetails(), (5000, 10_000))),
                      now=100.0)
    assert not conn.expired(110.0)
    assert conn.expired(110.1)


def test_agent_refuses_a_bad_liveness_answer() -> None:
    conn = agent(5000)
    with pytest.raises(ProtocolViolation, match="liveness"):
        conn.receive_data(encode_frame(messages.open_control_channel_ok("c1", ServerDetails(), (4000, 10_000))),
                          now=101.0)


def test_agent_events() -> None:
    conn = agent()
    props = TunnelProperties(id="t1", protocol="http")
    data = b"".join(encode_frame(m) for m in (
        messages.open_control_channel_error(ErrorCode.UNAUTHORIZED, "token expired"),
        messages.open_tunnel_ok("r1", props),
        messages.open_tunnel_error("r2", ErrorCode.INVALID_REQUEST, "bad"),
        messages.close_tunnel_rsp("t1"),
        messages.proxy_conn_req("t1", "a" * 24, "secret", "192.0.2.7"),
        messages.server_message("hello"),
        messages.close_control_channel_rsp(),
    ))
    assert conn.receive_data(data, now=101.0) == [
        events.ControlRefused(int(ErrorCode.UNAUTHORIZED), "token expired"),
        events.TunnelOpened("r1", props),
        events.TunnelRefused("r2", int(ErrorCode.INVALID_REQUEST), "bad"),
        events.TunnelClosed("t1"),
        events.StreamRequested("t1", "a" * 24, "secret", "192.0.2.7"),
        events.ServerSaid("hello"),
        events.ChannelClosed(),
    ]


def test_agent_refuses_a_tunnel_without_id_and_unexpected_frames() -> None:
    with pytest.raises(ProtocolViolation, match="without an id"):
        agent().receive_data(encode_frame(messages.open_tunnel_ok("r1", TunnelProperties(protocol="http"))), 101.0)
    with pytest.raises(ProtocolViolation, match="unexpected"):
        agent().receive_data(encode_frame(messages.open_tunnel_req("r1", TunnelProperties())), 101.0)


def test_agent_answers_are_framed() -> None:
    conn = agent()
    conn.data_to_send()
    conn.open_tunnel("r1", TunnelProperties(protocol="tcp"))
    conn.close_tunnel("t1")
    conn.stream_answered("s1")
    conn.stream_answered("s2", (ErrorCode.SERVICE_UNAVAILABLE, "down"))
    conn.closing()
    assert sent(conn) == ["open_tunnel_req", "close_tunnel_req", "proxy_conn_rsp", "proxy_conn_rsp",
                          "close_control_channel_req"]
