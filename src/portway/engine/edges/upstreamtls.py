"""`upstream_tls`: the engine speaks TLS to the tunnel's upstream, inside the agent's stream.

The agent relays bytes to its local service as usual; the TLS session is between the engine and that
service (e.g. a development server that only listens on HTTPS). The upstream's certificate is not
verified: it is the agent's own service, typically self-signed, and the hop that crosses networks —
engine to agent — is already authenticated TLS. HTTP/1.1 is offered by ALPN, and HTTP/2 too when the
caller can speak it (the HTTP/2 edge): the upstream's choice decides which protocol takes the stream over.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import TypeVar

from portway.pipe import Pipe
from portway.tls import start_client
from portway.wire.messages import TunnelProperties

P = TypeVar("P", bound=asyncio.Protocol)


def wanted(props: TunnelProperties) -> bool:
    """The tunnel asks for TLS to its upstream (`upstream_tls`, or the deprecated `http_use_tls`)."""
    return bool(props.upstream_tls or props.http_use_tls)


def upstream_context(alpns: list[str]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # see the module docstring
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(alpns)
    ctx.options |= ssl.OP_NO_COMPRESSION
    return ctx


_HTTP1 = upstream_context(["http/1.1"])
_HTTP2_OR_1 = upstream_context(["h2", "http/1.1"])


async def over_tls(agent: Pipe, factory: Callable[[str | None], P], timeout_s: float, *, h2: bool = False) -> P:
    """Take over a fresh agent stream, run TLS to the upstream through it, and return the protocol
    `factory` made (given the ALPN the upstream chose) for the decrypted side. With `h2`, HTTP/2 is
    offered first. Raises OSError/ssl.SSLError/TimeoutError on failure."""
    assert agent.transport is not None
    _, protocol = await start_client(agent.transport, factory, context=_HTTP2_OR_1 if h2 else _HTTP1,
                                     server_hostname=None, timeout_s=timeout_s)
    return protocol
