"""The first frame of a fresh agent connection, and the bytes that follow it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portway.errors import EngineRejected
from portway.wire import messages
from portway.wire._pb import rstream_pb2 as pb
from portway.wire.codes import ErrorCode
from portway.wire.data import ControlRequested, DialRequested, FirstFrameReader, ProxyRequested, check_reply
from portway.wire.errors import FrameError, FrameTooLarge, ProtocolViolation
from portway.wire.framing import encode_frame
from portway.wire.messages import ClientDetails


def read(data: bytes) -> tuple[object, bytes]:
    reader = FirstFrameReader()
    first = reader.receive_data(data)
    return first, reader.rest()


def test_control_request_with_and_without_liveness() -> None:
    details = ClientDetails(agent="a", token="t")
    first, rest = read(encode_frame(messages.open_control_channel_req(details, 5000)))
    assert first == ControlRequested(details, 5000)
    assert rest == b""
    assert read(encode_frame(messages.open_control_channel_req(details, None)))[0] == ControlRequested(details, None)


def test_proxy_request_carries_the_secret_and_zero_rtt() -> None:
    frame = messages.proxy_req(ClientDetails(token="s3cret"), "a" * 24, zero_rtt=False)
    assert read(encode_frame(frame))[0] == ProxyRequested("a" * 24, "s3cret", zero_rtt=False)


def test_absent_zero_rtt_means_zero_rtt() -> None:
    frame = pb.Message()
    frame.proxy_req.stream_id = "s"
    assert read(encode_frame(frame))[0] == ProxyRequested("s", None, zero_rtt=True)
    dial = pb.Message()
    dial.stream_req.tunnel_id_name = "svc"
    assert read(encode_frame(dial))[0] == DialRequested("svc", ClientDetails(), zero_rtt=True, datagram_channel=False)


def test_bytes_after_the_first_frame_belong_to_the_stream() -> None:
    data = encode_frame(messages.stream_req(ClientDetails(token="t"), "svc", True)) + b"GET / HTTP/1.1\r\n\r\n"
    first, rest = read(data)
    assert isinstance(first, DialRequested)
    assert rest == b"GET / HTTP/1.1\r\n\r\n"


@settings(max_examples=60, deadline=None, database=None, derandomize=True)
@given(split=st.integers(0, 200), tail=st.binary(max_size=64))
def test_any_split_gives_the_same_frame_and_exactly_the_bytes_after_it(split: int, tail: bytes) -> None:
    frame = encode_frame(messages.proxy_req(ClientDetails(token="x"), "b" * 24, True))
    data = frame + tail
    reader = FirstFrameReader()
    first = reader.receive_data(data[:split])
    fed = data[:split]
    if first is None:
        first = reader.receive_data(data[split:])
        fed = data
    assert first == ProxyRequested("b" * 24, "x", True)
    assert reader.rest() == fed[len(frame):]


@pytest.mark.parametrize("frame", [messages.heartbeat(1), messages.close_tunnel_req("t"), messages.stream_rsp_ok("s")])
def test_other_first_frames_are_violations(frame: pb.Message) -> None:
    with pytest.raises(ProtocolViolation, match="unexpected first frame"):
        FirstFrameReader().receive_data(encode_frame(frame))


def test_garbage_and_oversize_first_frames() -> None:
    with pytest.raises(FrameTooLarge):
        FirstFrameReader().receive_data((65_536).to_bytes(4, "big"))
    with pytest.raises(FrameError):
        FirstFrameReader().receive_data(b"\x00\x00\x00\x03\xff\xff\xff")


def test_check_reply_rules() -> None:
    check_reply(messages.stream_rsp_ok("s"), "stream_rsp")
    check_reply(messages.proxy_rsp(), "proxy_rsp")
    with pytest.raises(EngineRejected) as refused:
        check_reply(messages.stream_rsp_error(ErrorCode.TUNNEL_NOT_FOUND, "no such tunnel"), "stream_rsp")
    assert refused.value.code == ErrorCode.TUNNEL_NOT_FOUND
    with pytest.raises(ProtocolViolation, match="expected proxy_rsp"):
        check_reply(messages.heartbeat(), "proxy_rsp")
