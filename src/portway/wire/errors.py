"""Wire-level errors. Each carries the `ErrorCode` a peer should be told, never internal detail."""

from __future__ import annotations

from portway.errors import PortwayError
from portway.wire.codes import ErrorCode


class WireError(PortwayError):
    """Root of framing and protocol errors; `code` is what the peer is told."""

    code: ErrorCode = ErrorCode.INVALID_REQUEST


class FrameError(WireError):
    """A frame could not be read: too large, truncated or undecodable."""


class FrameTooLarge(FrameError):
    """The declared or encoded length exceeds `MAX_FRAME_BYTES`; raised before buffering the payload."""


class FrameTruncated(FrameError):
    """The input ended inside a frame."""


class FrameUndecodable(FrameError):
    """The payload is not a valid protobuf `Message`, or carries no payload at all."""


class ProtocolViolation(WireError):
    """The peer sent a well-formed message that is not allowed here (wrong first message, bad ack…)."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.INVALID_REQUEST) -> None:
        super().__init__(message)
        self.code = code


class InvalidTunnelProperties(WireError):
    """Requested tunnel properties break the rules of protocol facts §2.5; the message says which."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.INVALID_REQUEST) -> None:
        super().__init__(message)
        self.code = code
