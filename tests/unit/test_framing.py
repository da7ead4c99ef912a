"""Length-prefixed framing: round trips under any chunking, limits, truncation and garbage."""

from __future__ import annotations

import contextlib
import itertools
import struct
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portway.errors import PortwayError
from portway.wire import messages as m
from portway.wire._pb import rstream_pb2 as pb
from portway.wire.codes import HEADER_BYTES, MAX_FRAME_BYTES, ErrorCode
from portway.wire.errors import FrameError, FrameTooLarge, FrameTruncated, FrameUndecodable, WireError
from portway.wire.framing import FrameDecoder, PacketDecoder, decode_message, encode_frame, encode_packet
from tests.unit.strategies import client_details, server_details

FAST = settings(
    max_examples=40,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

# ---- strategies: one per payload kind of `Message` -----------------------------------------------

texts = st.text(max_size=12)
opt_texts = st.none() | texts
opt_bools = st.none() | st.booleans()
codes = st.sampled_from(list(ErrorCode))
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)

tunnel_properties = st.builds(
    m.TunnelProperties,
    id=opt_texts,
    creation_date=st.none() | st.datetimes(
        min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    name=opt_texts, type=opt_texts, publish=opt_bools, protocol=opt_texts,
    labels=st.dictionaries(texts, texts, max_size=3),
    geoip=st.lists(texts, max_size=3).map(tuple),
    hostname=opt_texts, port=st.none() | u32, upstream_tls=opt_bools, tls_mode=opt_texts,
)
ip_texts = st.none() | st.ip_addresses().map(str)


def _datagram_channel_close(stream_id: str, error: tuple[ErrorCode, str] | None) -> pb.Message:
    msg = pb.Message()
    msg.datagram_channel_close.stream_id = stream_id
    if error is not None:
        msg.datagram_channel_close.error.CopyFrom(m.error_pb(*error))
    return msg


errors = st.tuples(codes, texts)
opt_errors = st.none() | errors

MESSAGE_STRATEGIES: dict[str, st.SearchStrategy[pb.Message]] = {
    "open_control_channel_req": st.builds(
        m.open_control_channel_req, client_details, st.none() | st.integers(1, 2**32 - 1)
    ),
    "open_control_channel_rsp": st.one_of(
        st.builds(m.open_control_channel_ok, texts, server_details, st.none() | st.tuples(u32, u32)),
        st.builds(m.open_control_channel_error, codes, texts),
    ),
    "close_control_channel_req": st.builds(m.close_control_channel_req),
    "close_control_channel_rsp": st.builds(m.close_control_channel_rsp),
    "open_tunnel_req": st.builds(m.open_tunnel_req, texts, tunnel_properties),
    "open_tunnel_rsp": st.one_of(
        st.builds(m.open_tunnel_ok, texts, tunnel_properties),
        st.builds(m.open_tunnel_error, texts, codes, texts),
    ),
    "close_tunnel_req": st.builds(m.close_tunnel_req, texts),
    "close_tunnel_rsp": st.builds(m.close_tunnel_rsp, texts),
    "proxy_conn_req": st.builds(m.proxy_conn_req, texts, texts, texts, ip_texts),
    "proxy_conn_rsp": st.builds(m.proxy_conn_rsp, texts, opt_errors),
    "proxy_req": st.builds(m.proxy_req, client_details, texts, st.booleans()),
    "proxy_rsp": st.builds(m.proxy_rsp, opt_errors),
    "stream_req": st.builds(m.stream_req, client_details, texts, st.booleans()),
    "stream_rsp": st.one_of(st.builds(m.stream_rsp_ok, texts), st.builds(m.stream_rsp_error, codes, texts)),
    "heartbeat": st.builds(m.heartbeat, u64, u64),
    "server_message": st.builds(m.server_message, st.text(max_size=200)),
    "datagram_channel_close": st.builds(_datagram_channel_close, texts, opt_errors),
}
any_message = st.one_of(*MESSAGE_STRATEGIES.values())


def test_strategies_cover_every_payload_kind() -> None:
    oneof = pb.Message.DESCRIPTOR.oneofs_by_name["payload"]
    assert {f.name for f in oneof.fields} == set(MESSAGE_STRATEGIES)


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """Split `data` at hypothesis-drawn points (possibly empty chunks, possibly one byte each)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# ---- round trip ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MESSAGE_STRATEGIES))
@settings(FAST, max_examples=10)
@given(data=st.data())
def test_every_kind_round_trips(name: str, data: st.DataObject) -> None:
    message = data.draw(MESSAGE_STRATEGIES[name])
    assert m.kind(message) == name
    frame = encode_frame(message)
    assert struct.unpack(">I", frame[:HEADER_BYTES])[0] == len(frame) - HEADER_BYTES
    assert decode_message(frame[HEADER_BYTES:]) == message
    decoder = FrameDecoder()
    assert decoder.feed(frame) == [message]
    decoder.check_eof()


@FAST
@given(data=st.data(), messages=st.lists(any_message, min_size=1, max_size=5))
def test_round_trip_under_any_chunking(data: st.DataObject, messages: list[pb.Message]) -> None:
    stream = b"".join(encode_frame(msg) for msg in messages)
    decoder = FrameDecoder()
    received: list[pb.Message] = []
    for chunk in data.draw(chunked(stream)):
        received.extend(decoder.feed(chunk))
    assert received == messages
    assert decoder.buffered == 0
    decoder.check_eof()
    assert decoder.take_rest() == b""


def test_byte_at_a_time() -> None:
    messages = [m.heartbeat(1, 0), m.server_message("hi"), m.close_tunnel_req("t1")]
    frames = [encode_frame(msg) for msg in messages]
    ends = [sum(len(f) for f in frames[: i + 1]) for i in range(len(frames))]
    stream = b"".join(frames)
    decoder = FrameDecoder()
    received: list[pb.Message] = []
    for i in range(len(stream)):
        received.extend(decoder.feed(stream[i : i + 1]))
        assert len(received) == sum(1 for end in ends if end <= i + 1)
        assert decoder.buffered == i + 1 - max([0, *(end for end in ends if end <= i + 1)])
    assert received == messages


def test_feed_empty_bytes_is_a_no_op() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"") == []
    assert decoder.buffered == 0
    decoder.check_eof()


# ---- limit=1 and take_rest -----------------------------------------------------------------------


@FAST
@given(data=st.data(), first=any_message, tail=st.binary(max_size=300))
def test_limit_one_then_take_rest_returns_exact_tail(
    data: st.DataObject, first: pb.Message, tail: bytes
) -> None:
    """A data connection reads one frame, then switches to raw bytes: nothing after it is parsed or lost."""
    chunks = data.draw(chunked(encode_frame(first) + tail))
    decoder = FrameDecoder()
    got: list[pb.Message] = []
    index = 0
    while not got:
        assert index < len(chunks), "first frame was never returned"
        got = decoder.feed(chunks[index], limit=1)
        index += 1
    assert got == [first]
    assert decoder.take_rest() + b"".join(chunks[index:]) == tail
    assert decoder.buffered == 0


def test_limit_one_does_not_parse_raw_bytes_after_first_frame() -> None:
    # "GET " read as a length header would declare ~1.2 GB: it must not be looked at.
    decoder = FrameDecoder()
    raw = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert decoder.feed(encode_frame(m.proxy_req(m.ClientDetails(), "s1", True)) + raw, limit=1) != []
    assert decoder.take_rest() == raw


def test_limit_one_with_several_whole_frames_reframes_the_rest() -> None:
    frames = [encode_frame(m.heartbeat(i, 0)) for i in range(1, 4)]
    decoder = FrameDecoder()
    assert decoder.feed(b"".join(frames) + b"xy", limit=1) == [m.heartbeat(1, 0)]
    assert decoder.take_rest() == frames[1] + frames[2] + b"xy"


def test_limit_keeps_later_messages_queued() -> None:
    frames = b"".join(encode_frame(m.heartbeat(i, 0)) for i in range(1, 4))
    decoder = FrameDecoder()
    assert decoder.feed(frames, limit=1) == [m.heartbeat(1, 0)]
    assert decoder.buffered > 0
    assert decoder.feed(b"", limit=1) == [m.heartbeat(2, 0)]
    assert decoder.feed(b"") == [m.heartbeat(3, 0)]
    assert decoder.buffered == 0


def test_limit_zero_returns_nothing_and_keeps_everything() -> None:
    frame = encode_frame(m.heartbeat(1, 0))
    decoder = FrameDecoder()
    assert decoder.feed(frame, limit=0) == []
    assert decoder.take_rest() == frame


def test_take_rest_with_partial_frame() -> None:
    frame = encode_frame(m.server_message("hello"))
    decoder = FrameDecoder()
    assert decoder.feed(frame[:6]) == []
    assert decoder.buffered == 6
    assert decoder.take_rest() == frame[:6]
    assert decoder.buffered == 0
    decoder.check_eof()


# ---- size limits ---------------------------------------------------------------------------------


def test_oversize_header_raises_before_payload_arrives() -> None:
    decoder = FrameDecoder()
    with pytest.raises(FrameTooLarge):
        decoder.feed(struct.pack(">I", MAX_FRAME_BYTES + 1))


def test_oversize_header_after_a_good_frame() -> None:
    decoder = FrameDecoder()
    with pytest.raises(FrameTooLarge):
        decoder.feed(encode_frame(m.heartbeat()) + struct.pack(">I", 0xFFFFFFFF))


def test_header_at_limit_waits_for_payload() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(struct.pack(">I", MAX_FRAME_BYTES)) == []
    assert decoder.buffered == HEADER_BYTES
    with pytest.raises(FrameTruncated):
        decoder.check_eof()


def _server_message_of_size(size: int) -> pb.Message:
    """A `server_message` whose serialized `Message` is exactly `size` bytes."""
    for text_length in range(size, size - 16, -1):
        msg = m.server_message("x" * text_length)
        if msg.ByteSize() == size:
            return msg
    raise AssertionError(f"no server_message serializes to {size} bytes")


def test_encode_frame_at_limit_round_trips() -> None:
    msg = _server_message_of_size(MAX_FRAME_BYTES)
    frame = encode_frame(msg)
    assert len(frame) == HEADER_BYTES + MAX_FRAME_BYTES
    assert FrameDecoder().feed(frame) == [msg]


def test_encode_frame_over_limit_raises() -> None:
    with pytest.raises(FrameTooLarge):
        encode_frame(_server_message_of_size(MAX_FRAME_BYTES + 1))
    with pytest.raises(FrameTooLarge):
        encode_frame(m.server_message("x" * 100_000))


def test_encode_packet_limits() -> None:
    assert encode_packet(b"") == b"\x00\x00\x00\x00"
    assert encode_packet(b"abc") == b"\x00\x00\x00\x03abc"
    assert len(encode_packet(b"\x00" * MAX_FRAME_BYTES)) == MAX_FRAME_BYTES + HEADER_BYTES
    with pytest.raises(FrameTooLarge):
        encode_packet(b"\x00" * (MAX_FRAME_BYTES + 1))


# ---- truncation and undecodable payloads ---------------------------------------------------------


@pytest.mark.parametrize("cut", [1, 2, 3, 4, 5, -1])
def test_truncated_input_fails_check_eof(cut: int) -> None:
    frame = encode_frame(m.server_message("truncated"))
    decoder = FrameDecoder()
    assert decoder.feed(frame[:cut]) == []
    with pytest.raises(FrameTruncated):
        decoder.check_eof()


def test_empty_message_is_undecodable() -> None:
    frame = encode_frame(pb.Message())
    assert frame == b"\x00\x00\x00\x00"
    with pytest.raises(FrameUndecodable):
        FrameDecoder().feed(frame)
    with pytest.raises(FrameUndecodable):
        decode_message(b"")


def test_unknown_fields_only_is_undecodable() -> None:
    # field 100, varint 1: valid protobuf, but no payload of the oneof.
    with pytest.raises(FrameUndecodable):
        decode_message(b"\xa0\x06\x01")


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff",  # truncated varint tag
        b"\x0a\x05ab",  # length-delimited field longer than the input
        b"\x82\x01\x03\x0a\x01\xff",  # server_message.message is not valid UTF-8
        b"\x07",  # wire type 7 does not exist
    ],
)
def test_invalid_protobuf_is_undecodable(payload: bytes) -> None:
    with pytest.raises(FrameUndecodable):
        decode_message(payload)
    with pytest.raises(FrameUndecodable):
        FrameDecoder().feed(struct.pack(">I", len(payload)) + payload)


def test_error_hierarchy_and_codes() -> None:
    for error in (FrameTooLarge, FrameTruncated, FrameUndecodable):
        assert issubclass(error, FrameError)
        assert issubclass(error, WireError)
        assert issubclass(error, PortwayError)
        assert error("x").code is ErrorCode.INVALID_REQUEST


# ---- garbage -------------------------------------------------------------------------------------


@FAST
@given(data=st.data(), garbage=st.binary(max_size=400))
def test_garbage_only_raises_frame_errors(data: st.DataObject, garbage: bytes) -> None:
    decoder = FrameDecoder()
    try:
        for chunk in data.draw(chunked(garbage)):
            for message in decoder.feed(chunk):
                assert message.WhichOneof("payload") is not None
        decoder.check_eof()
    except FrameError:
        pass


@FAST
@given(payloads=st.lists(st.binary(max_size=64), min_size=1, max_size=4))
def test_well_framed_garbage_only_raises_frame_errors(payloads: list[bytes]) -> None:
    """Valid length prefixes force the protobuf path on random payloads."""
    stream = b"".join(struct.pack(">I", len(p)) + p for p in payloads)
    with contextlib.suppress(FrameUndecodable):
        FrameDecoder().feed(stream)


@FAST
@given(payload=st.binary(max_size=200))
def test_decode_message_garbage(payload: bytes) -> None:
    try:
        message = decode_message(payload)
    except FrameUndecodable:
        return
    assert message.WhichOneof("payload") is not None


@FAST
@given(message=any_message, data=st.data())
def test_corrupted_frames_only_raise_frame_errors(message: pb.Message, data: st.DataObject) -> None:
    payload = bytearray(message.SerializeToString())
    if payload:
        for _ in range(data.draw(st.integers(1, 3))):
            payload[data.draw(st.integers(0, len(payload) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(FrameUndecodable):
        decode_message(bytes(payload))


# ---- PacketDecoder -------------------------------------------------------------------------------


@FAST
@given(data=st.data(), packets=st.lists(st.binary(max_size=100), max_size=6))
def test_packet_decoder_round_trip(data: st.DataObject, packets: list[bytes]) -> None:
    stream = b"".join(encode_packet(p) for p in packets)
    decoder = PacketDecoder()
    received: list[bytes] = []
    for chunk in data.draw(chunked(stream)):
        received.extend(decoder.feed(chunk))
    assert received == packets
    assert decoder.buffered == 0
    decoder.check_eof()


def test_packet_decoder_custom_limit() -> None:
    decoder = PacketDecoder(max_bytes=8)
    assert decoder.feed(encode_packet(b"12345678")) == [b"12345678"]
    with pytest.raises(FrameTooLarge):
        decoder.feed(struct.pack(">I", 9))


def test_packet_decoder_limit_and_take_rest() -> None:
    decoder = PacketDecoder()
    stream = encode_packet(b"a") + encode_packet(b"b") + b"raw"
    assert decoder.feed(stream, limit=1) == [b"a"]
    assert decoder.take_rest() == encode_packet(b"b") + b"raw"
    assert decoder.buffered == 0
