"""How the agent reaches and trusts the engine: address, token, TLS and timing options."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

from portway.errors import ConfigError
from portway.wire.codes import ALPN


@dataclass(frozen=True, slots=True)
class TLSOptions:
    """Engine TLS verification (rstream's `transport.tls`): a private CA, a name override, or (for
    diagnostics only) no verification. `cert_file`/`key_file` present a client certificate."""

    ca_file: str | None = None
    server_name: str | None = None
    insecure_skip_verify: bool = False
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True, slots=True)
class AgentOptions:
    """Resolved options of a `Client`; every timing has a safe default."""

    engine: str
    token: str | None = field(default=None, repr=False)
    tls: TLSOptions = field(default_factory=TLSOptions)
    heartbeat_interval_s: float = 5.0
    connect_timeout_s: float = 15.0
    operation_timeout_s: float = 30.0
    zero_rtt: bool = True
    max_active_streams: int = 64
    max_queued_streams: int = 256

    @property
    def host_port(self) -> tuple[str, int]:
        return split_engine(self.engine)


def split_engine(engine: str) -> tuple[str, int]:
    """`host[:port]` (IPv6 in brackets) → (host, port); port 443 when absent."""
    value = engine.strip()
    if not value or "/" in value or "@" in value:
        raise ConfigError(f"engine must be host[:port], got {engine!r}")
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    else:
        host, port_text = value, ""
    if not port_text:
        return host, 443
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65_535:
        raise ConfigError(f"engine port must be 1-65535, got {port_text!r}")
    return host, int(port_text)


def ssl_context(options: TLSOptions, alpn: tuple[str, ...] = (ALPN,)) -> ssl.SSLContext:
    """A client context for agent connections (TLS 1.3, ALPN rstrm/1) or, with another `alpn`, for the
    Engine API; verification as configured."""
    ctx = ssl.create_default_context(cafile=options.ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(list(alpn))
    if options.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if options.cert_file and options.key_file:
        ctx.load_cert_chain(options.cert_file, options.key_file)
    return ctx
