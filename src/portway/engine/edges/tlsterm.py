"""TLS tunnels with `tls_mode=terminated`: the engine ends TLS with its own certificate and the agent gets
the decrypted bytes (protocol facts §2.5).

Each tunnel's options become one `ssl.SSLContext`, built when the tunnel is created, so a bad option
(unknown cipher, unreadable CA PEM, bad ALPN name) refuses the tunnel instead of failing every visitor:
- `tls_min_version`: `tls1.2` (default) or `tls1.3`;
- `tls_ciphers`: TLS 1.2 suites by OpenSSL name (`ECDHE-ECDSA-AES128-GCM-SHA256`) or IANA/Go name
  (`TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`). TLS 1.3 suites cannot be chosen from Python 3.11 (no
  `SSL_CTX_set_ciphersuites` binding): OpenSSL's three defaults are always on, so naming them is accepted,
  and a list naming only them disables TLS 1.2 (it allowed no TLS 1.2 suite);
- `tls_alpns`: the protocols offered, in the tunnel's order of preference;
- `mtls_auth` + `mtls_cacert_pem`: visitors must present a certificate issued by that CA. Without a CA
  there is nothing to check against (the hosted service's registered credentials do not exist here).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl

from portway.engine.certs import CertFiles, load_chain
from portway.engine.context import EngineContext
from portway.engine.edges.stream import connect_visitor, publish_refusal, refused_address, refused_tls
from portway.engine.registry import Tunnel
from portway.pipe import Pipe
from portway.tls import TLSConnection
from portway.wire.codes import ErrorCode
from portway.wire.errors import InvalidTunnelProperties
from portway.wire.messages import TunnelProperties

log = logging.getLogger("portway.engine.tlsterm")

MIN_VERSIONS = {"tls1.2": ssl.TLSVersion.TLSv1_2, "tls1.3": ssl.TLSVersion.TLSv1_3}

# The TLS 1.2 suites Go's crypto/tls implements (what rstream clients name), IANA name → OpenSSL name.
IANA_CIPHERS = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
}
TLS13_SUITES = frozenset(c["name"] for c in ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).get_ciphers()
                         if c["protocol"] == "TLSv1.3")

# Handshake failures that mean "no acceptable client certificate" (counted as mTLS refusals).
_MTLS_REASONS = frozenset({"PEER_DID_NOT_RETURN_A_CERTIFICATE", "CERTIFICATE_VERIFY_FAILED"})


def is_mtls_refusal(error: BaseException) -> bool:
    """A handshake that failed for want of an acceptable client certificate."""
    return getattr(error, "reason", None) in _MTLS_REASONS


def is_terminated(props: TunnelProperties) -> bool:
    return props.protocol == "tls" and props.tls_mode == "terminated"


def has_own_context(props: TunnelProperties) -> bool:
    """Tunnels the engine terminates with a context of their own: terminated tls tunnels, and published
    http tunnels with edge TLS options (mTLS, minimum version, ciphers)."""
    if is_terminated(props):
        return True
    return bool(props.protocol == "http" and props.publish
                and (props.mtls_auth or props.tls_min_version is not None or props.tls_ciphers))


def _fail(message: str, code: ErrorCode = ErrorCode.INVALID_REQUEST) -> InvalidTunnelProperties:
    return InvalidTunnelProperties(message, code)


def _set_ciphers(context: ssl.SSLContext, names: tuple[str, ...]) -> None:
    tls12 = []
    for name in names:
        if name in TLS13_SUITES:
            continue
        openssl_name = IANA_CIPHERS.get(name, name)
        try:  # one by one, because OpenSSL skips unknown names in a list that matches something else
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(openssl_name)
        except ssl.SSLError:
            raise _fail(f"tls_ciphers: {name!r} is not a TLS 1.2 cipher this engine knows (TLS 1.3 suites are "
                        f"fixed: {', '.join(sorted(TLS13_SUITES))})") from None
        tls12.append(openssl_name)
    if tls12:
        context.set_ciphers(":".join(tls12))
    else:
        context.minimum_version = ssl.TLSVersion.TLSv1_3


def _set_alpns(context: ssl.SSLContext, alpns: tuple[str, ...]) -> None:
    for alpn in alpns:
        if not 1 <= len(alpn) <= 255 or not alpn.isascii() or not alpn.isprintable():
            raise _fail(f"tls_alpns: {alpn!r} is not a protocol name (1-255 printable ASCII characters)")
    context.set_alpn_protocols(list(alpns))


def _require_client_certs(context: ssl.SSLContext, props: TunnelProperties) -> None:
    if not props.mtls_cacert_pem:
        raise _fail("mtls_auth needs mtls_cacert_pem (the CA that issues visitor certificates) on this engine",
                    ErrorCode.FEATURE_NOT_AVAILABLE)
    try:
        context.load_verify_locations(cadata=props.mtls_cacert_pem)
    except (ssl.SSLError, ValueError):
        raise _fail("mtls_cacert_pem is not a PEM certificate") from None
    if context.cert_store_stats()["x509_ca"] == 0:
        raise _fail("mtls_cacert_pem holds no CA certificate (basicConstraints CA:TRUE)")
    context.verify_mode = ssl.CERT_REQUIRED


def tunnel_context(props: TunnelProperties, files: CertFiles) -> ssl.SSLContext:
    """The server context of a terminated tls tunnel.

    Raises `InvalidTunnelProperties` for options that cannot be honoured, and ssl.SSLError / OSError when
    the engine's own certificate cannot be loaded (not the agent's fault: the caller decides).
    """
    if props.mtls_cacert_pem and not props.mtls_auth:
        raise _fail("mtls_cacert_pem needs mtls_auth=true")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.options |= ssl.OP_NO_COMPRESSION
    context.minimum_version = MIN_VERSIONS[props.tls_min_version or "tls1.2"]
    if props.tls_ciphers:
        _set_ciphers(context, props.tls_ciphers)
    if props.protocol == "http":
        context.set_alpn_protocols(["h2", "http/1.1"])  # the visitor's choice, as on the shared HTTPS edge
    elif props.tls_alpns:
        _set_alpns(context, props.tls_alpns)
    if props.mtls_auth:
        _require_client_certs(context, props)
    load_chain(context, files)
    return context


def create_context(props: TunnelProperties, files: CertFiles) -> ssl.SSLContext:
    """`tunnel_context` for a tunnel being created: an unloadable engine certificate refuses it too (the
    session logs the refusal; with certs.static the watcher has logged why the files do not load)."""
    try:
        return tunnel_context(props, files)
    except (ssl.SSLError, OSError):
        raise _fail("the engine's certificate cannot be loaded", ErrorCode.SERVICE_UNAVAILABLE) from None


async def serve(ctx: EngineContext, tunnel: Tunnel, conn: socket.socket, source_ip: str) -> None:
    """Terminate TLS on the accepted socket `conn` with the tunnel's context, then open a stream for
    the decrypted bytes. A failed handshake (an mTLS refusal included) is logged once and closes it."""
    assert tunnel.tls is not None
    refusal = refused_address(ctx, tunnel, source_ip)
    if refusal is not None:
        publish_refusal(ctx, tunnel, None, source_ip, refusal)
        conn.close()  # before the handshake: a refused visitor costs no TLS work
        return
    loop = asyncio.get_running_loop()
    timeout_s = ctx.config.timeouts.first_message_seconds
    context = tunnel.tls
    _, tls_conn = await loop.connect_accepted_socket(
        lambda: TLSConnection(context, Pipe, server_side=True, handshake_timeout_s=timeout_s), conn)
    try:
        await tls_conn.handshake
    except (ssl.SSLError, ConnectionError, OSError, TimeoutError) as error:
        refused = tunnel.props.mtls_auth and is_mtls_refusal(error)
        if refused:
            ctx.counters.count(ctx.counters.policy_denials, ("tls", "mtls_auth"))
            publish_refusal(ctx, tunnel, None, source_ip, "mtls_auth")
        log.info("tunnel %s: TLS handshake with %s failed%s: %s", tunnel.id, source_ip,
                 " (no valid client certificate)" if refused else "", error)
        return
    visitor = tls_conn.app
    assert isinstance(visitor, Pipe) and visitor.transport is not None
    if refused_tls(ctx, tunnel, tls_conn.ssl_object.version(), source_ip):
        visitor.transport.close()
        return
    visitor.transport.pause_reading()
    await connect_visitor(ctx, tunnel, visitor, source_ip)
