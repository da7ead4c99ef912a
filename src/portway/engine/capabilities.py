"""What this engine can serve. Valid properties it cannot enforce are refused, never ignored:
a tunnel that asked for token auth must not come up without it (FEATURE_NOT_AVAILABLE)."""

from __future__ import annotations

from portway.wire.codes import ErrorCode
from portway.wire.errors import InvalidTunnelProperties
from portway.wire.messages import TunnelProperties


def check_supported(p: TunnelProperties) -> None:
    """Raise `InvalidTunnelProperties(FEATURE_NOT_AVAILABLE)` naming the first unsupported feature."""
    reason = _unsupported(p)
    if reason is not None:
        raise InvalidTunnelProperties(f"{reason} is not available on this engine", ErrorCode.FEATURE_NOT_AVAILABLE)


def _unsupported(p: TunnelProperties) -> str | None:
    if p.publish and p.type == "datagram":
        return "a published datagram tunnel (dtls, quic, h3)"
    if p.protocol == "webtty":
        return "a managed webtty tunnel"
    if p.rstream_auth:
        return "rstream_auth (it needs the hosted identity service)"
    checks = {
        "challenge_mode": p.challenge_mode,
        "mtls_auth": p.mtls_auth,
        "tls_mode=terminated": p.protocol == "tls" and p.tls_mode == "terminated",
        "upstream_tls on a tunnel the engine does not parse as HTTP": bool(p.upstream_tls or p.http_use_tls)
        and (p.protocol != "http" or not p.publish),
        "tls_alpns": bool(p.tls_alpns),
        "tls_ciphers": bool(p.tls_ciphers),
        "tls_min_version": p.tls_min_version is not None,
    }
    for name, wanted in checks.items():
        if wanted:
            return name
    return None
