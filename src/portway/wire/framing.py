"""Length-prefixed framing (protocol facts §2.2): a 4-byte big-endian length, then a protobuf `Message`.

Sans-IO: `FrameDecoder.feed()` takes whatever bytes arrived and returns the complete messages, keeping
partial input. The declared length is checked against the limit before any payload byte is buffered.
"""

from __future__ import annotations

import struct

from google.protobuf.message import DecodeError

from portway.wire._pb import rstream_pb2 as pb
from portway.wire.codes import HEADER_BYTES, MAX_FRAME_BYTES
from portway.wire.errors import FrameTooLarge, FrameTruncated, FrameUndecodable

_LENGTH = struct.Struct(">I")


def encode_frame(message: pb.Message) -> bytes:
    """Serialize `message` with its length prefix; raises `FrameTooLarge` above 65,535 bytes."""
    payload: bytes = message.SerializeToString()
    if len(payload) > MAX_FRAME_BYTES:
        raise FrameTooLarge(f"frame of {len(payload)} bytes exceeds {MAX_FRAME_BYTES}")
    return _LENGTH.pack(len(payload)) + payload


def encode_packet(payload: bytes) -> bytes:
    """Frame one datagram for a datagram tunnel over a byte stream (§2.8, framed mode)."""
    if len(payload) > MAX_FRAME_BYTES:
        raise FrameTooLarge(f"datagram of {len(payload)} bytes exceeds {MAX_FRAME_BYTES}")
    return _LENGTH.pack(len(payload)) + payload


def decode_message(payload: bytes) -> pb.Message:
    """Parse one frame payload; anything protobuf rejects, or an empty oneof, is `FrameUndecodable`."""
    message = pb.Message()
    try:
        message.ParseFromString(payload)
    except (DecodeError, RuntimeError, ValueError) as error:
        raise FrameUndecodable("frame is not a valid rstream message") from error
    if message.WhichOneof("payload") is None:
        raise FrameUndecodable("frame carries no message")
    return message


class PacketDecoder:
    """Incremental splitter of length-prefixed byte payloads (no protobuf decoding).

    Used directly for datagram packets, and by `FrameDecoder` for protocol messages.
    """

    def __init__(self, max_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buffer = bytearray()
        self._max_bytes = max_bytes

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet form a whole frame."""
        return len(self._buffer)

    def feed(self, data: bytes, *, limit: int | None = None) -> list[bytes]:
        """Add `data`; return every complete payload (at most `limit`), in order.

        Raises `FrameTooLarge` as soon as a header declares more than the limit. Bytes after the
        `limit`-th payload are not looked at: they stay buffered for `take_rest()`.
        """
        buffer = self._buffer
        buffer += data
        payloads: list[bytes] = []
        offset = 0
        end = len(buffer)
        while end - offset >= HEADER_BYTES and (limit is None or len(payloads) < limit):
            (length,) = _LENGTH.unpack_from(buffer, offset)
            if length > self._max_bytes:
                raise FrameTooLarge(f"declared frame of {length} bytes exceeds {self._max_bytes}")
            if end - offset - HEADER_BYTES < length:
                break
            start = offset + HEADER_BYTES
            payloads.append(bytes(buffer[start : start + length]))
            offset = start + length
        if offset:
            del buffer[:offset]
        return payloads

    def take_rest(self) -> bytes:
        """Hand over and forget the bytes after the last whole frame (they belong to the next layer)."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest

    def check_eof(self) -> None:
        """Call at end of input: raises `FrameTruncated` if a frame was cut off."""
        if self._buffer:
            raise FrameTruncated(f"input ended inside a frame ({len(self._buffer)} bytes pending)")


class FrameDecoder:
    """Incremental decoder of protocol messages.

    `feed(data, limit=1)` stops after one message so a data connection can switch to raw bytes:
    whatever followed the first frame is then available from `take_rest()`.
    """

    def __init__(self) -> None:
        self._packets = PacketDecoder()
        self._pending: list[bytes] = []

    @property
    def buffered(self) -> int:
        return self._packets.buffered + sum(len(p) + HEADER_BYTES for p in self._pending)

    def feed(self, data: bytes, *, limit: int | None = None) -> list[pb.Message]:
        """Add `data` and return up to `limit` decoded messages; the rest stay queued.

        Raises `FrameTooLarge` or `FrameUndecodable`; after an error the decoder must be discarded.
        """
        wanted = None if limit is None else max(limit - len(self._pending), 0)
        self._pending.extend(self._packets.feed(data, limit=wanted))
        count = len(self._pending) if limit is None else min(limit, len(self._pending))
        taken, self._pending = self._pending[:count], self._pending[count:]
        return [decode_message(payload) for payload in taken]

    def take_rest(self) -> bytes:
        """Return, as raw bytes, everything not yet returned as a message (re-framed where needed)."""
        framed = b"".join(_LENGTH.pack(len(p)) + p for p in self._pending)
        self._pending = []
        return framed + self._packets.take_rest()

    def check_eof(self) -> None:
        self._packets.check_eof()
