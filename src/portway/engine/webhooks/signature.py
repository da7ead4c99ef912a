"""The `rstream-signature` header (§4.3): `t=<unix seconds>,v1=<hex>[,v1=<hex>…]`, each v1 an HMAC-SHA256
over `"<t>." + body` keyed with one active secret as UTF-8 (its `whsec_` prefix included). Several v1
entries appear while a rotated secret is in its grace period. Pure functions: time is an argument."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

HEADER = "rstream-signature"
TOLERANCE_S = 300  # receivers accept a timestamp this far from their clock (rstream's default)


def digest(body: bytes, secret: str, timestamp: int) -> str:
    """One `v1` value: lowercase hex HMAC-SHA256."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(body: bytes, secrets: Sequence[str], timestamp: int) -> str:
    """The header value signing `body` with every secret in `secrets` (newest first, by convention)."""
    if not secrets:
        raise ValueError("at least one secret is needed to sign")
    if timestamp < 0:
        raise ValueError("the timestamp must not be negative")
    return ",".join([f"t={timestamp}", *(f"v1={digest(body, secret, timestamp)}" for secret in secrets)])


def delivery_headers(body: bytes, secrets: Sequence[str], timestamp: int, *, event_id: str, event_type: str,
                     webhook_id: str, delivery_id: str) -> dict[str, str]:
    """Every header of a webhook delivery (§4.3), for the engine's dispatcher and `portway events --webhook`."""
    return {
        "content-type": "application/json",
        HEADER: sign(body, secrets, timestamp),
        "rstream-event-id": event_id,
        "rstream-event-type": event_type,
        "rstream-webhook-id": webhook_id,
        "rstream-delivery-id": delivery_id,
    }


def parse(header: str) -> tuple[int, list[str]]:
    """(timestamp, v1 values) of a header; ValueError when it has no timestamp or no v1. Unknown schemes
    (a future `v2=`) are skipped, as receivers must."""
    timestamp: int | None = None
    values: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isascii() and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            values.append(value)
    if timestamp is None or not values:
        raise ValueError("a signature header needs t=<unix seconds> and at least one v1=<hex>")
    return timestamp, values


def verify(body: bytes, header: str, secret: str, *, now: float, tolerance_s: int = TOLERANCE_S) -> bool:
    """True when some v1 in `header` signs `body` with `secret` and its timestamp is within tolerance."""
    try:
        timestamp, values = parse(header)
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = digest(body, secret, timestamp)
    return any(hmac.compare_digest(value, expected) for value in values)
