"""Sans-IO rstream protocol: schema, framing, message views, property rules, liveness, ClientHello peek.

Nothing here performs I/O or imports asyncio, ssl or socket; the engine and agent are shells around it.
"""

from portway.wire.codes import ALPN, MAX_FRAME_BYTES, PROTOCOL_VERSION, ErrorCode
from portway.wire.errors import (
    FrameError,
    FrameTooLarge,
    FrameTruncated,
    FrameUndecodable,
    InvalidTunnelProperties,
    ProtocolViolation,
    WireError,
)
from portway.wire.framing import FrameDecoder, PacketDecoder, decode_message, encode_frame, encode_packet
from portway.wire.messages import ClientDetails, ServerDetails, TunnelProperties, kind

__all__ = [
    "ALPN",
    "MAX_FRAME_BYTES",
    "PROTOCOL_VERSION",
    "ClientDetails",
    "ErrorCode",
    "FrameDecoder",
    "FrameError",
    "FrameTooLarge",
    "FrameTruncated",
    "FrameUndecodable",
    "InvalidTunnelProperties",
    "PacketDecoder",
    "ProtocolViolation",
    "ServerDetails",
    "TunnelProperties",
    "WireError",
    "decode_message",
    "encode_frame",
    "encode_packet",
    "kind",
]
