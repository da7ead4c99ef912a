"""`portway forward` flags → the `TunnelProperties` to request, checked before anything connects.

Combinations every rstream engine refuses (protocol facts §2.5) are usage errors here, worded in flags with a
hint, and `wire.properties.normalize` (the engine's own rules) runs last as a backstop. What only some engines
refuse (this one's missing features, e.g. --mtls without a CA file, published datagram tunnels) is left to the
engine: its refusal comes back as a runtime error, so the CLI still works against engines that serve them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from portway.wire import properties
from portway.wire.errors import InvalidTunnelProperties
from portway.wire.messages import TunnelProperties

HTTP_VERSIONS = {"http/1.1": "http/1.1", "h2c": "h2c", "h2": "h2c", "h3": "h3"}
# A CA file is sent inline; bigger than this is not a CA bundle anyone meant.
MAX_CACERT_BYTES = 1024 * 1024


class UsageProblem(Exception):
    """A flag combination to refuse before connecting (exit code 2)."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True, slots=True)
class ForwardFlags:
    """The tunnel-shaping flags of `portway forward`, as given (None / empty = not given)."""

    protocol: str = "http"
    publish: bool = True
    tunnel_type: str | None = None
    name: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    hostname: str | None = None
    port: int | None = None
    trusted_ips: tuple[str, ...] = ()
    geoip: tuple[str, ...] = ()
    token_auth: bool = False
    tls_mode: str | None = None
    tls_min_version: str | None = None
    tls_alpns: tuple[str, ...] = ()
    tls_ciphers: tuple[str, ...] = ()
    mtls: bool = False
    mtls_cacert_file: str | None = None
    http_version: str | None = None
    upstream_tls: bool = False


def _given(pairs: Mapping[str, object]) -> list[str]:
    return [flag for flag, value in pairs.items() if value]


def _check_protocol_flags(f: ForwardFlags) -> None:
    tls_edge = {"--tls-min-version": f.tls_min_version, "--tls-alpn": f.tls_alpns, "--tls-ciphers": f.tls_ciphers,
                "--mtls": f.mtls}
    http_only = {"--http-version": f.http_version, "--upstream-tls": f.upstream_tls, "--token-auth": f.token_auth}
    if f.protocol == "tcp":
        extra = _given({"--host": f.hostname, "--tls-mode": f.tls_mode, **tls_edge, **http_only,
                        "--datagram": f.tunnel_type == "datagram", "--no-publish": not f.publish})
        if extra:
            raise UsageProblem(f"--tcp does not take {', '.join(extra)}",
                               "a TCP tunnel is raw bytes on an engine port: no hostname, TLS, HTTP or auth options")
        return
    if f.port is not None:
        raise UsageProblem("--port applies only to --tcp", "http and tls tunnels get a hostname: use --host")
    if f.tls_mode is not None and f.protocol != "tls":
        raise UsageProblem("--tls-mode applies only to --tls", "add --tls, or drop --tls-mode")
    if f.protocol != "http" and _given(http_only):
        raise UsageProblem(f"{', '.join(_given(http_only))} apply only to --http tunnels", "add --http")
    if f.upstream_tls and f.http_version:
        raise UsageProblem("--upstream-tls and --http-version cannot be combined",
                           "with --upstream-tls the upstream picks the HTTP version by ALPN")
    if f.protocol == "tls" and f.tls_mode != "terminated" and _given(tls_edge):
        raise UsageProblem(f"TLS passthrough cannot enforce {', '.join(_given(tls_edge))}",
                           "add --tls-mode terminated so the engine ends TLS")
    if f.protocol == "http" and f.tls_alpns:
        raise UsageProblem("--tls-alpn applies only to --tls --tls-mode terminated",
                           "the HTTPS edge offers h2 and http/1.1 itself")
    if f.mtls_cacert_file and not f.mtls:
        raise UsageProblem("--mtls-cacert-file needs --mtls", "add --mtls to require visitor certificates")


def _check_private(f: ForwardFlags) -> None:
    edge = _given({"--host": f.hostname, "--trusted-ips": f.trusted_ips, "--geoip": f.geoip,
                   "--token-auth": f.token_auth, "--mtls": f.mtls, "--tls-mode terminated": f.tls_mode == "terminated"})
    if edge:
        raise UsageProblem(f"--no-publish tunnels have no public edge for {', '.join(edge)}",
                           "drop those flags, or publish the tunnel")


def _check_datagram(f: ForwardFlags) -> None:
    if f.tunnel_type != "datagram":
        return
    if f.protocol == "tls":
        raise UsageProblem("--datagram does not apply to --tls", "TLS tunnels are byte streams")
    if f.publish and f.http_version != "h3":
        raise UsageProblem("a published --datagram tunnel must be HTTP/3",
                           "add --http-version h3, or --no-publish for a private datagram tunnel")


def read_cacert(path: str) -> str:
    """The PEM text of `--mtls-cacert-file`, sent inline as `mtls_cacert_pem` (the engine loads it as CA data)."""
    try:
        raw = Path(path).read_bytes()[:MAX_CACERT_BYTES + 1]
    except OSError as error:
        raise UsageProblem(f"cannot read --mtls-cacert-file {path!r}: {error.strerror}",
                           "give a readable PEM file with the CA that issues visitor certificates") from None
    if len(raw) > MAX_CACERT_BYTES or b"-----BEGIN CERTIFICATE-----" not in raw:
        raise UsageProblem(f"--mtls-cacert-file {path!r} holds no PEM certificate",
                           "give the CA certificate in PEM form (-----BEGIN CERTIFICATE-----)")
    return raw.decode("ascii", errors="replace")


def build_spec(f: ForwardFlags) -> TunnelProperties:
    """The properties to request for `f`; raises `UsageProblem` for what the engine would refuse."""
    http_version = None
    if f.http_version is not None:
        http_version = HTTP_VERSIONS.get(f.http_version.lower())
        if http_version is None:
            raise UsageProblem(f"unknown --http-version {f.http_version!r}", "use http/1.1 or h2c (h3 for datagram)")
    f = replace(f, http_version=http_version)
    _check_protocol_flags(f)
    if not f.publish:
        _check_private(f)
    _check_datagram(f)
    http_options = bool(f.http_version or f.upstream_tls or f.token_auth)
    protocol: str | None = f.protocol
    if not f.publish and f.protocol == "http" and not http_options:
        protocol = None  # a plain private tunnel: raw bytes, reached by name
    spec = TunnelProperties(
        protocol=protocol, type=f.tunnel_type, name=f.name, publish=f.publish, labels=dict(f.labels),
        hostname=f.hostname, port=f.port, trusted_ips=f.trusted_ips, geoip=tuple(c.upper() for c in f.geoip),
        token_auth=f.token_auth or None, tls_mode=f.tls_mode, tls_min_version=f.tls_min_version,
        tls_alpns=f.tls_alpns, tls_ciphers=f.tls_ciphers, mtls_auth=f.mtls or None,
        mtls_cacert_pem=read_cacert(f.mtls_cacert_file) if f.mtls_cacert_file else None,
        http_version=f.http_version, upstream_tls=f.upstream_tls or None)
    try:  # the engine's own rules, with its default tls_mode, as a backstop for what is not worded above
        properties.normalize(spec.replace(tls_mode="passthrough") if protocol == "tls" and not f.tls_mode else spec)
    except InvalidTunnelProperties as error:
        raise UsageProblem(str(error), "see: portway forward --help") from None
    return spec

