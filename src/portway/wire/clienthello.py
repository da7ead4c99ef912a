"""Sans-IO TLS ClientHello peek: SNI and ALPN, for routing before (or without) terminating TLS.

Feed everything received so far to `peek()`. It returns `None` while the ClientHello is incomplete
(a post-quantum hello spans several TCP segments), a `ClientHello` once it is whole, and raises
`NotTLS` when the bytes cannot be a TLS ClientHello. Handshake fragments across several records are
reassembled; input beyond `MAX_HELLO_BYTES` is refused so a peer cannot make us buffer without bound.
"""

from __future__ import annotations

from dataclasses import dataclass

from portway.errors import PortwayError

MAX_HELLO_BYTES = 32 * 1024
_HANDSHAKE = 22
_CLIENT_HELLO = 1
_EXT_SNI = 0
_EXT_ALPN = 16


class NotTLS(PortwayError):
    """The bytes are not the start of a TLS connection (or the ClientHello is malformed)."""


@dataclass(frozen=True, slots=True)
class ClientHello:
    server_name: str | None
    alpn: tuple[str, ...]


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise NotTLS("truncated ClientHello field")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def vector(self, length_bytes: int) -> bytes:
        return self.take(self.uint(length_bytes))


def _handshake_bytes(data: bytes) -> bytes | None:
    """Concatenate handshake record payloads until the first handshake message is complete."""
    out = bytearray()
    pos = 0
    while True:
        if len(out) >= 4:
            needed = 4 + int.from_bytes(out[1:4], "big")
            if needed > MAX_HELLO_BYTES:
                raise NotTLS("ClientHello too large")
            if len(out) >= needed:
                return bytes(out[:needed])
        if len(data) - pos < 5:
            return None
        if data[pos] != _HANDSHAKE or data[pos + 1] != 3:
            raise NotTLS("not a TLS handshake record")
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        if length == 0 or length > 16384 + 2048:
            raise NotTLS("invalid TLS record length")
        if len(data) - pos - 5 < length:
            if len(data) > MAX_HELLO_BYTES:
                raise NotTLS("ClientHello too large")
            return None
        out += data[pos + 5 : pos + 5 + length]
        pos += 5 + length
        if out[0] != _CLIENT_HELLO:
            raise NotTLS("first handshake message is not a ClientHello")


def peek(data: bytes) -> ClientHello | None:
    """Parse the ClientHello at the start of `data`; None means "need more bytes"."""
    if data and data[0] != _HANDSHAKE:
        raise NotTLS("not a TLS handshake record")
    message = _handshake_bytes(data)
    if message is None:
        return None
    r = _Reader(message[4:])
    r.take(2 + 32)  # legacy_version, random
    r.vector(1)  # session id
    r.vector(2)  # cipher suites
    r.vector(1)  # compression methods
    server_name: str | None = None
    alpn: tuple[str, ...] = ()
    if r.pos == len(r.data):
        return ClientHello(None, ())
    extensions = _Reader(r.vector(2))
    while extensions.pos < len(extensions.data):
        ext_type = extensions.uint(2)
        body = _Reader(extensions.vector(2))
        if ext_type == _EXT_SNI:
            names = _Reader(body.vector(2))
            while names.pos < len(names.data):
                name_type = names.uint(1)
                name = names.vector(2)
                if name_type == 0:
                    try:
                        server_name = name.decode("ascii").lower().rstrip(".")
                    except UnicodeDecodeError:
                        raise NotTLS("server name is not ASCII") from None
        elif ext_type == _EXT_ALPN:
            protocols = _Reader(body.vector(2))
            found: list[str] = []
            while protocols.pos < len(protocols.data):
                found.append(protocols.vector(1).decode("latin-1"))
            alpn = tuple(found)
    return ClientHello(server_name, alpn)
