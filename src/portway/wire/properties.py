"""Validation and defaults of requested tunnel properties (protocol facts §2.5), as pure functions.

`normalize()` turns what an agent asked for into the effective properties, or raises
`InvalidTunnelProperties` with a message a user can act on. Server-owned fields (id, hostname
allocation, port allocation) are filled in later by the engine; here they are only checked.
"""

from __future__ import annotations

import ipaddress
import re

from portway.wire.codes import ErrorCode
from portway.wire.errors import InvalidTunnelProperties
from portway.wire.messages import TunnelProperties

PUBLISHED_PROTOCOLS = frozenset({"http", "tls", "tcp", "dtls", "quic", "webtty"})
TYPES = frozenset({"bytestream", "datagram"})
TLS_MODES = frozenset({"terminated", "passthrough"})
TLS_VERSIONS = frozenset({"tls1.2", "tls1.3"})
HTTP_VERSIONS = frozenset({"http/1.1", "h2c", "h3"})
MAX_LABELS = 64
MAX_LABEL_KEY = 128
MAX_LABEL_VALUE = 512
MAX_NAME = 128
_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,127})$")
_COUNTRY_RE = re.compile(r"^[A-Z]{2}$")


def _fail(message: str, code: ErrorCode = ErrorCode.INVALID_REQUEST) -> InvalidTunnelProperties:
    return InvalidTunnelProperties(message, code)


def default_type(protocol: str | None, http_version: str | None) -> str:
    """§2.5: dtls/quic and h3 are datagram; everything else is a byte stream."""
    if protocol in {"dtls", "quic"} or (protocol == "http" and http_version == "h3"):
        return "datagram"
    return "bytestream"


def normalize(requested: TunnelProperties) -> TunnelProperties:
    """Check `requested` against §2.5 and return it with defaults applied.

    Raises `InvalidTunnelProperties` (code INVALID_REQUEST, or FEATURE_NOT_AVAILABLE for valid
    requests this engine cannot serve) naming the offending property.
    """
    p = requested
    if p.id is not None or p.creation_date is not None or p.host is not None:
        raise _fail("id, creation_date and host are read-only and cannot be requested")
    publish = True if p.publish is None else p.publish
    protocol = p.protocol
    if protocol is not None and protocol not in PUBLISHED_PROTOCOLS:
        raise _fail(f"unknown protocol {protocol!r}; expected one of {sorted(PUBLISHED_PROTOCOLS)}")
    if publish and protocol is None:
        raise _fail("a published tunnel needs a protocol (http, tls, tcp, dtls or quic)")
    if not publish and protocol in {"dtls", "quic"}:
        raise _fail(f"private {protocol} tunnels are not supported; use a raw private tunnel")
    http_version = "h2c" if p.http_version == "h2" else p.http_version
    if http_version is not None and http_version not in HTTP_VERSIONS:
        raise _fail(f"unknown http_version {p.http_version!r}; expected http/1.1, h2c or h3")
    tunnel_type = p.type or default_type(protocol, http_version)
    if tunnel_type not in TYPES:
        raise _fail(f"unknown type {tunnel_type!r}; expected bytestream or datagram")
    _check_name_and_labels(p)
    _check_network_policy(p)
    _check_port(p, protocol)
    if protocol == "tcp":
        _check_tcp(p, publish, tunnel_type)
    _check_http_options(p, protocol, http_version)
    _check_tls_options(p, protocol)
    if p.datagram_guaranteed_delivery is not None and tunnel_type != "datagram":
        raise _fail("datagram_guaranteed_delivery applies only to datagram tunnels")
    if tunnel_type == "bytestream" and protocol in {"dtls", "quic"}:
        raise _fail(f"a {protocol} tunnel is a datagram tunnel, not a bytestream tunnel")
    if tunnel_type == "datagram" and protocol in {"http", "tls", "tcp", "webtty"} and not (
        protocol == "http" and http_version == "h3"
    ):
        raise _fail(f"a {protocol} tunnel is a bytestream tunnel, not a datagram tunnel")
    if not publish:
        _check_private(p)
    return p.replace(publish=publish, type=tunnel_type, http_version=http_version)


def _check_name_and_labels(p: TunnelProperties) -> None:
    if p.name is not None and not _NAME_RE.match(p.name):
        raise _fail("name must be 1-128 characters of letters, digits, '.', '_' or '-', starting alphanumeric")
    if len(p.labels) > MAX_LABELS:
        raise _fail(f"at most {MAX_LABELS} labels are allowed")
    for key, value in p.labels.items():
        if not key or len(key) > MAX_LABEL_KEY or len(value) > MAX_LABEL_VALUE:
            raise _fail(f"label keys must be 1-{MAX_LABEL_KEY} characters and values at most {MAX_LABEL_VALUE}")


def _check_network_policy(p: TunnelProperties) -> None:
    for cidr in p.trusted_ips:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise _fail(f"trusted_ips entry {cidr!r} is not an IP address or CIDR") from None
    for country in p.geoip:
        if not _COUNTRY_RE.match(country):
            raise _fail(f"geoip entry {country!r} is not an ISO 3166-1 alpha-2 country code")


def _check_port(p: TunnelProperties, protocol: str | None) -> None:
    if p.port is None:
        return
    if protocol != "tcp":
        raise _fail("port can be requested only for protocol=tcp")
    if not 1 <= p.port <= 65_535:
        raise _fail("port must be between 1 and 65535")


def _check_tcp(p: TunnelProperties, publish: bool, tunnel_type: str) -> None:
    if not publish:
        raise _fail("tcp tunnels are always published; use a raw private tunnel instead")
    if tunnel_type != "bytestream":
        raise _fail("tcp tunnels are bytestream tunnels")
    forbidden = {
        "hostname": p.hostname, "tls_mode": p.tls_mode, "tls_min_version": p.tls_min_version,
        "mtls_auth": p.mtls_auth, "http_version": p.http_version, "upstream_tls": p.upstream_tls,
        "http_use_tls": p.http_use_tls, "token_auth": p.token_auth, "rstream_auth": p.rstream_auth,
        "challenge_mode": p.challenge_mode, "mtls_cacert_pem": p.mtls_cacert_pem,
        "tls_alpns": p.tls_alpns or None, "tls_ciphers": p.tls_ciphers or None,
    }
    present = sorted(k for k, v in forbidden.items() if v is not None)
    if present:
        raise _fail(f"tcp tunnels do not accept hostname, HTTP, TLS or edge-auth options: {', '.join(present)}")


def _check_http_options(p: TunnelProperties, protocol: str | None, http_version: str | None) -> None:
    http_only = {"http_version": http_version, "token_auth": p.token_auth, "rstream_auth": p.rstream_auth,
                 "challenge_mode": p.challenge_mode, "http_use_tls": p.http_use_tls}
    if protocol != "http":
        present = sorted(k for k, v in http_only.items() if v)
        if present:
            raise _fail(f"{', '.join(present)} apply only to http tunnels")
    if p.upstream_tls and http_version is not None:
        raise _fail("upstream_tls picks the HTTP version by ALPN; do not also set http_version")
    if p.http_use_tls is not None and p.upstream_tls is not None and p.http_use_tls != p.upstream_tls:
        raise _fail("http_use_tls (deprecated) conflicts with upstream_tls")


def _check_tls_options(p: TunnelProperties, protocol: str | None) -> None:
    if p.tls_mode is not None and p.tls_mode not in TLS_MODES:
        raise _fail(f"unknown tls_mode {p.tls_mode!r}; expected terminated or passthrough")
    if p.tls_mode is not None and protocol != "tls":
        raise _fail("tls_mode applies only to tls tunnels")
    if p.tls_min_version is not None and p.tls_min_version not in TLS_VERSIONS:
        raise _fail(f"unknown tls_min_version {p.tls_min_version!r}; expected tls1.2 or tls1.3")
    if p.tls_mode == "passthrough":
        enforced = {"tls_min_version": p.tls_min_version, "tls_ciphers": p.tls_ciphers or None,
                    "mtls_auth": p.mtls_auth, "upstream_tls": p.upstream_tls,
                    "mtls_cacert_pem": p.mtls_cacert_pem, "tls_alpns": p.tls_alpns or None}
        present = sorted(k for k, v in enforced.items() if v)
        if present:
            raise _fail(f"tls passthrough cannot enforce {', '.join(present)}; use tls_mode=terminated")
    if p.mtls_auth and protocol not in {"http", "tls"}:
        raise _fail("mtls_auth needs an edge-terminated http or tls tunnel")


def _check_private(p: TunnelProperties) -> None:
    edge = {"hostname": p.hostname, "trusted_ips": p.trusted_ips or None, "geoip": p.geoip or None,
            "token_auth": p.token_auth, "rstream_auth": p.rstream_auth, "challenge_mode": p.challenge_mode,
            "mtls_auth": p.mtls_auth, "tls_mode=terminated": p.tls_mode == "terminated"}
    present = sorted(k for k, v in edge.items() if v)
    if present:
        raise _fail(f"private tunnels have no public edge; remove {', '.join(present)}")

