"""The engine's own certificate: where it is and how it is loaded."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class CertFiles:
    cert: Path
    key: Path
    ca: Path | None


def _no_password() -> bytes:
    """An encrypted key must fail to load, never make OpenSSL prompt on the engine's terminal."""
    return b""


def load_chain(context: ssl.SSLContext, files: CertFiles) -> None:
    """Load the engine certificate chain and key into `context` (ssl.SSLError / OSError if unusable)."""
    context.load_cert_chain(files.cert, files.key, password=_no_password)
