"""Sans-IO sniffing of the first line of an HTTP/1.x stream, for observers (the CLI's status panel).

A `FirstLine` is fed the first chunks of one direction of a stream and keeps at most `limit` bytes: it stops
at the first CRLF, or gives up once the bound is reached or the bytes cannot be HTTP/1.x (HTTP/2's preface,
TLS records, binary). It never raises on peer input: observing must not be able to break a relay.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Long enough for real request targets (browsers cap URLs near 8 KiB); anything longer is not worth showing.
MAX_LINE_BYTES = 8 * 1024

_METHOD_RE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}")
_VERSION_RE = re.compile(rb"HTTP/1\.[01]")
_STATUS_RE = re.compile(rb"[1-5][0-9][0-9]")
_PRINTABLE_RE = re.compile(rb"[\x21-\x7e]+")
_H2_PREFACE = b"PRI * HTTP/2.0"


@dataclass(frozen=True, slots=True)
class RequestLine:
    method: str
    target: str
    version: str


@dataclass(frozen=True, slots=True)
class StatusLine:
    version: str
    status: int
    reason: str


def parse_request_line(line: bytes) -> RequestLine | None:
    """`METHOD SP TARGET SP HTTP/1.x` (RFC 9112 §3), without the CRLF; None if it is not one."""
    parts = line.split(b" ")
    if len(parts) != 3 or line.startswith(_H2_PREFACE):
        return None
    method, target, version = parts
    if not (_METHOD_RE.fullmatch(method) and _PRINTABLE_RE.fullmatch(target) and _VERSION_RE.fullmatch(version)):
        return None
    return RequestLine(method.decode("ascii"), target.decode("ascii"), version.decode("ascii"))


def parse_status_line(line: bytes) -> StatusLine | None:
    """`HTTP/1.x SP 3DIGIT SP [reason]` (RFC 9112 §4), without the CRLF; None if it is not one."""
    version, sep, rest = line.partition(b" ")
    status, _, reason = rest.partition(b" ")
    if not sep or not _VERSION_RE.fullmatch(version) or not _STATUS_RE.fullmatch(status):
        return None
    return StatusLine(version.decode("ascii"), int(status), reason.decode("latin-1"))


class FirstLine:
    """Collects the first line of a stream: `feed()` chunks until it returns True, then read `line`
    (None when the stream did not start with a line within `limit` bytes)."""

    def __init__(self, limit: int = MAX_LINE_BYTES) -> None:
        self.limit = limit
        self.line: bytes | None = None
        self.done = False
        self._head = bytearray()

    def feed(self, data: bytes) -> bool:
        """Take the next chunk; True once the line is known (or known to be missing): stop feeding."""
        if self.done:
            return True
        room = self.limit - len(self._head)
        self._head += data[:room]
        end = self._head.find(b"\r\n")
        if end >= 0:
            self.line = bytes(self._head[:end])
            self._finish()
        elif len(self._head) >= self.limit or not _could_be_text(self._head):
            self._finish()
        return self.done

    def _finish(self) -> None:
        self.done = True
        self._head = bytearray()  # drop the copy at once: the line is all an observer keeps


def _could_be_text(head: bytearray) -> bool:
    """A start line is printable ASCII; a TLS record or binary protocol shows itself in the first bytes."""
    return all(0x20 <= byte < 0x7F or byte in (0x0D, 0x0A) for byte in head[:16])
