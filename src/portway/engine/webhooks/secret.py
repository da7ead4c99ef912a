"""Webhook signing secrets (§4.3): `whsec_` + unpadded base64url of 32 random bytes. Pure functions."""

from __future__ import annotations

import base64
import binascii
import re
import secrets

PREFIX = "whsec_"
SECRET_BYTES = 32
_ENCODED = re.compile(r"^[A-Za-z0-9_-]{43}$")  # 32 bytes, unpadded base64url


def new_secret() -> str:
    """A fresh secret from the OS's CSPRNG."""
    encoded = base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).decode().rstrip("=")
    return PREFIX + encoded


def check_secret(value: str) -> str:
    """`value` when it has the exact rstream format; ValueError (never echoing it) otherwise.

    A caller-supplied secret must look like a generated one, so receivers written for rstream's secrets
    accept ours unchanged and a short, guessable secret cannot slip in."""
    body = value[len(PREFIX):] if value.startswith(PREFIX) else None
    if body is None or not _ENCODED.match(body):
        raise ValueError(f"a secret is {PREFIX!r} followed by 43 base64url characters (32 bytes, no padding)")
    try:
        raw = base64.urlsafe_b64decode(body + "=")
    except binascii.Error:
        raise ValueError("the secret is not valid base64url") from None
    if len(raw) != SECRET_BYTES:  # pragma: no cover - 43 characters always decode to 32 bytes
        raise ValueError("the secret must encode 32 bytes")
    return value


def mask(value: str) -> str:
    """What listings show instead of a secret: the prefix and four characters, enough to tell two apart."""
    return value[: len(PREFIX) + 4] + "…"
