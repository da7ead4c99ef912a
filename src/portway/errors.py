"""The one exception tree of Portway.

::

    PortwayError
    ├── ConfigError          invalid configuration (names the key)
    ├── AuthError            a token or secret was refused
    ├── ClosedError          the channel, tunnel or stream is closed (also a ConnectionError)
    ├── TransportError       the network or TLS failed underneath us (also an OSError)
    ├── EngineRejected       the engine answered with a protocol ErrorCode
    └── wire.WireError       framing and protocol violations (see portway.wire.errors)
"""

from __future__ import annotations


class PortwayError(Exception):
    """Root of every error Portway raises on purpose."""


class ConfigError(PortwayError):
    """A configuration value is missing, unknown or malformed; the message names the key."""


class AuthError(PortwayError):
    """A credential was refused. The message never contains the credential itself."""


class ClosedError(PortwayError, ConnectionError):
    """The object was used after it closed, or its peer went away."""


class TransportError(PortwayError, OSError):
    """A dial, TLS handshake or socket operation failed."""


class EngineRejected(PortwayError):
    """The engine refused a request with a protocol error code.

    `code` is the numeric `ErrorCode` value so callers can branch on it without parsing text.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"engine error {code}: {message}")
        self.code = code
        self.detail = message


class EngineApiError(PortwayError):
    """The Engine HTTP API answered with an error status; `message` is its `{error}` text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"engine API error {status}: {message}")
        self.status = status
        self.message = message
