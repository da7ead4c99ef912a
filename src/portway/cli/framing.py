"""RFC 4571 framing of datagrams on a byte stream: a 2-byte big-endian length, then the payload.

`portway nc -u` speaks it on stdio (and to `--exec` children), as rstream's nc does: it is CLI-local,
not the 4-byte framing on the wire to the engine (protocol facts §2.8). Sans-IO: `Rfc4571Decoder.feed()`
takes whatever bytes arrived and returns the complete datagrams, keeping a partial one.
"""

from __future__ import annotations

import struct

from portway.wire.errors import FrameTooLarge, FrameTruncated

MAX_DATAGRAM_BYTES = 0xFFFF  # the most a 16-bit length can say
_LENGTH = struct.Struct(">H")
HEADER_BYTES = _LENGTH.size


def encode_rfc4571(payload: bytes) -> bytes:
    """Frame one datagram; raises `FrameTooLarge` above 65,535 bytes (a length field cannot say more)."""
    if len(payload) > MAX_DATAGRAM_BYTES:
        raise FrameTooLarge(f"datagram of {len(payload)} bytes exceeds {MAX_DATAGRAM_BYTES}")
    return _LENGTH.pack(len(payload)) + payload


class Rfc4571Decoder:
    """Incremental splitter of RFC 4571 frames. An empty datagram (length 0) is a datagram."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet form a whole frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add `data`; return every complete datagram, in order."""
        buffer = self._buffer
        buffer += data
        datagrams: list[bytes] = []
        offset = 0
        end = len(buffer)
        while end - offset >= HEADER_BYTES:
            (length,) = _LENGTH.unpack_from(buffer, offset)
            start = offset + HEADER_BYTES
            if end - start < length:
                break
            datagrams.append(bytes(buffer[start : start + length]))
            offset = start + length
        if offset:
            del buffer[:offset]
        return datagrams

    def check_eof(self) -> None:
        """Call at end of input: raises `FrameTruncated` if it ended inside a frame."""
        if self._buffer:
            raise FrameTruncated(f"input ended inside a datagram frame ({len(self._buffer)} bytes pending)")
