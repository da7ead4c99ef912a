"""Which webhook URLs the engine accepts: absolute http(s) URLs with a host, no credentials, no fragment.

Credentials in a URL would be shown by every listing and land in logs; a receiver that needs them can
check the signature instead. Pure."""

from __future__ import annotations

from urllib.parse import urlsplit

MAX_URL_CHARS = 2048


def check_url(value: str) -> str:
    """`value` when acceptable; ValueError saying why otherwise."""
    if len(value) > MAX_URL_CHARS:
        raise ValueError(f"the URL is longer than {MAX_URL_CHARS} characters")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in value):
        raise ValueError("the URL must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as failure:
        raise ValueError(f"the URL is malformed: {failure}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("the URL must start with http:// or https://")
    if not parts.hostname:
        raise ValueError("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("the URL must not carry credentials (user:password@)")
    if parts.fragment:
        raise ValueError("the URL must not have a #fragment")
    if port == 0:
        raise ValueError("the URL's port must be within 1..65535")
    return value
