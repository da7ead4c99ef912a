"""Protocol constants: error codes, version, ALPN and frame limits (protocol facts §2.1–§2.3)."""

from __future__ import annotations

import enum

PROTOCOL_VERSION = "1.4.5"
ALPN = "rstrm/1"
MAX_FRAME_BYTES = 65_535
HEADER_BYTES = 4
# §2.9: the client aborts when the engine answers a timeout above this.
MAX_HEARTBEAT_TIMEOUT_MS = 900_000


class ErrorCode(enum.IntEnum):
    """Mirror of the protobuf `ErrorCode` enum; values are the wire numbers."""

    UNSPECIFIED = 0
    UNAUTHORIZED = 1000
    INVALID_REQUEST = 2000
    PROTOCOL_VERSION_MISSING = 2010
    PROTOCOL_VERSION_INVALID = 2020
    PROTOCOL_VERSION_INCOMPATIBLE = 2030
    TUNNEL_NOT_FOUND = 3000
    INVALID_STREAM = 4000
    FEATURE_NOT_AVAILABLE = 5000
    SERVICE_UNAVAILABLE = 6000
    CAPACITY_EXHAUSTED = 7000
    INTERNAL = 9000
