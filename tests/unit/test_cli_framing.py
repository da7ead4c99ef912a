"""RFC 4571 framing for `nc -u` on stdio: round trips under any chunking, boundaries, oversize, truncation."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portway.cli.framing import MAX_DATAGRAM_BYTES, Rfc4571Decoder, encode_rfc4571
from portway.wire.errors import FrameTooLarge, FrameTruncated

FAST = settings(max_examples=60, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

datagrams = st.lists(st.binary(max_size=300), min_size=1, max_size=6)


@FAST
@given(packets=datagrams, data=st.data())
def test_round_trip_under_any_chunking(packets: list[bytes], data: st.DataObject) -> None:
    wire = b"".join(encode_rfc4571(p) for p in packets)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
    decoder = Rfc4571Decoder()
    got: list[bytes] = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        got += decoder.feed(wire[start:end])
    assert got == packets
    assert decoder.buffered == 0
    decoder.check_eof()


@FAST
@given(packets=datagrams)
def test_split_at_every_byte_boundary(packets: list[bytes]) -> None:
    wire = b"".join(encode_rfc4571(p) for p in packets)
    for cut in range(len(wire) + 1):
        decoder = Rfc4571Decoder()
        assert decoder.feed(wire[:cut]) + decoder.feed(wire[cut:]) == packets


def test_byte_at_a_time_keeps_empty_datagrams() -> None:
    packets = [b"", b"a", b"", b"bc"]
    decoder = Rfc4571Decoder()
    got = [p for byte in b"".join(map(encode_rfc4571, packets)) for p in decoder.feed(bytes([byte]))]
    assert got == packets


def test_header_is_two_bytes_big_endian() -> None:
    assert encode_rfc4571(b"x" * 258) == b"\x01\x02" + b"x" * 258


def test_largest_datagram_round_trips_and_one_more_byte_is_refused() -> None:
    biggest = bytes(MAX_DATAGRAM_BYTES)
    assert Rfc4571Decoder().feed(encode_rfc4571(biggest)) == [biggest]
    with pytest.raises(FrameTooLarge):
        encode_rfc4571(bytes(MAX_DATAGRAM_BYTES + 1))


@FAST
@given(packet=st.binary(min_size=0, max_size=50), cut=st.integers(1, 51))
def test_input_ending_inside_a_frame_is_truncated(packet: bytes, cut: int) -> None:
    wire = encode_rfc4571(packet)
    cut = min(cut, len(wire) - 1)  # at least one header byte, never the whole frame
    decoder = Rfc4571Decoder()
    assert decoder.feed(wire[:cut]) == []
    with pytest.raises(FrameTruncated):
        decoder.check_eof()
