"""What this engine can serve. Valid properties it cannot enforce are refused, never ignored:
a tunnel that asked for token auth must not come up without it (FEATURE_NOT_AVAILABLE)."""

from __future__ import annotations

from portway.engine.edges import upstreamtls
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
    # Edge TLS options are enforced by edges/tlsterm.py with a context of the tunnel's own: published tls
    # tunnels in terminated mode, and published http tunnels (whose ALPN is the edge's h2/http/1.1).
    terminated = p.protocol == "tls" and p.tls_mode == "terminated" and p.publish
    edge_tls = terminated or (p.protocol == "http" and bool(p.publish))
    other = "" if edge_tls else " outside a published terminated tls or http tunnel"
    checks = {
        "challenge_mode": p.challenge_mode,
        "upstream_tls on a tunnel the engine does not parse as HTTP": upstreamtls.wanted(p)
        and (p.protocol != "http" or not p.publish),
        f"mtls_auth{other}": bool(p.mtls_auth and other),
        f"tls_alpns{'' if terminated else ' outside a published terminated tls tunnel'}": bool(
            p.tls_alpns and not terminated),
        f"tls_ciphers{other}": bool(p.tls_ciphers and other),
        f"tls_min_version{other}": bool(p.tls_min_version is not None and other),
    }
    for name, wanted in checks.items():
        if wanted:
            return name
    return None
