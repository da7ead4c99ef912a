"""Engine configuration model: the rstream-engine-ce YAML contract, extended for Portway.

Frozen pydantic sections that forbid unknown keys; every value has a default and a description.
Reading a file and environment overrides into this model is `portway.engine.configfile`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

__all__ = [
    "AuthSection",
    "CertsSection",
    "EngineConfig",
    "EngineSection",
    "HttpSection",
    "JwtAuthSection",
    "LimitsSection",
    "MetricsSection",
    "PrometheusSection",
    "StaticCertsSection",
    "TcpSection",
    "TimeoutsSection",
    "TlsSection",
    "WebhooksSection",
    "is_loopback_host",
    "split_hostport",
]


_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")


# ------------------------------------------------------------------------------------------------------------
# Value helpers


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_hostname(value: str) -> bool:
    name = value.lower().rstrip(".")
    if not name or len(name) > 253:
        return False
    return all(_LABEL.match(label) for label in name.split("."))


def split_hostport(value: str) -> tuple[str, int]:
    """Split `host:port` into its parts; IPv6 hosts are bracketed (`[::1]:8443`), brackets are removed.

    An empty host (`:8443`, Go style) means every interface and is returned as "". Port 0 (ephemeral) is
    accepted. Raises ValueError with a short reason otherwise.
    """
    if not isinstance(value, str):
        raise ValueError("expected a 'host:port' string")
    text = value.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"unterminated '[' in address {value!r}")
        host, rest = text[1:end], text[end + 1 :]
        if not rest.startswith(":"):
            raise ValueError(f"address {value!r} is missing ':port'")
        port_text = rest[1:]
        try:
            if ipaddress.ip_address(host).version != 6:
                raise ValueError
        except ValueError:
            raise ValueError(f"address {value!r}: only IPv6 addresses go inside brackets") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"address {value!r} is missing ':port'")
        if ":" in host:
            raise ValueError(f"address {value!r}: write IPv6 hosts in brackets, e.g. '[::1]:8443'")
        if host and not (_is_ip(host) or _is_hostname(host)):
            raise ValueError(f"address {value!r} has an invalid host")
    if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
        raise ValueError(f"address {value!r} has an invalid port")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"address {value!r}: port must be within 0..65535")
    return host, port


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback IP literals; an empty host (all interfaces) is not loopback."""
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _check_listen_addr(value: object) -> object:
    if isinstance(value, str):
        split_hostport(value)
    return value


def _check_host(value: object) -> object:
    if isinstance(value, str):
        host = value.strip()
        if not host:
            raise ValueError("must not be empty")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not (_is_ip(host) or _is_hostname(host)):
            raise ValueError("expected a DNS name or an IP address (no port, no scheme)")
        return host.lower().rstrip(".") if not _is_ip(host) else host
    return value


def _empty_to_none(value: object) -> object:
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _normalise_log_level(value: object) -> object:
    if isinstance(value, str):
        level = value.strip().lower()
        return "warning" if level == "warn" else level
    return value


ListenAddr = Annotated[str, BeforeValidator(_check_listen_addr)]
Host = Annotated[str, BeforeValidator(_check_host)]
OptionalText = Annotated[str | None, BeforeValidator(_empty_to_none)]
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Port = Annotated[int, Field(ge=1, le=65535)]
Count = Annotated[int, Field(ge=1)]
LogLevel = Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_normalise_log_level)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ------------------------------------------------------------------------------------------------------------
# Sections


class EngineSection(_Section):
    """Identity of the engine."""

    host: Host = Field(
        default="localhost",
        description="Public DNS name of the engine; tunnels are published under *.t.<host>.",
    )
    log_level: LogLevel = Field(default="info", description="debug, info, warn(ing) or error.")
    public_port: Port | None = Field(
        default=None,
        description="Port printed in public URLs (null = the TLS listen port), e.g. 443 behind a NAT.",
    )


class HttpSection(_Section):
    """Plain-HTTP listener: redirects to HTTPS, or serves published HTTP tunnels in cleartext."""

    enabled: bool = Field(default=False, description="Serve plain HTTP.")
    listen_addr: ListenAddr = Field(default="127.0.0.1:8080", description="host:port ([::1]:port for IPv6).")
    serve_tunnels: bool = Field(
        default=False,
        description="Portway: serve published HTTP tunnels in cleartext here instead of redirecting to HTTPS.",
    )

    @property
    def address(self) -> tuple[str, int]:
        return split_hostport(self.listen_addr)


class TlsSection(_Section):
    """TLS listener: agents (ALPN rstrm/1), the engine API and published HTTPS/TLS tunnels."""

    enabled: bool = Field(default=True, description="Serve TLS.")
    listen_addr: ListenAddr = Field(default="127.0.0.1:8443", description="host:port ([::1]:port for IPv6).")

    @property
    def address(self) -> tuple[str, int]:
        return split_hostport(self.listen_addr)


class StaticCertsSection(_Section):
    """Operator-supplied certificate; when disabled the engine uses its own local CA (state directory)."""

    enabled: bool = Field(default=False, description="Use cert_file/key_file instead of the local CA.")
    cert_file: OptionalText = Field(default=None, description="PEM certificate chain (leaf first).")
    key_file: OptionalText = Field(default=None, description="PEM private key.")

    @model_validator(mode="after")
    def _files_when_enabled(self) -> StaticCertsSection:
        if self.enabled:
            missing = [name for name in ("cert_file", "key_file") if getattr(self, name) is None]
            if missing:
                raise ValueError(f"enabled static certificates need {' and '.join(missing)}")
        return self


class CertsSection(_Section):
    """Certificates."""

    static: StaticCertsSection = Field(default_factory=StaticCertsSection)


class JwtAuthSection(_Section):
    """HS256 JWT admission of agents and API clients."""

    enabled: bool = Field(default=True, description="Require a valid token.")
    token_jwt_secret: OptionalText = Field(
        default=None,
        description="HS256 shared secret (null = generated once into the state directory).",
    )
    token_minting: bool = Field(
        default=True,
        description="Let a token holder mint shorter-lived, narrower tokens (POST /api/tokens, "
                    "`portway token create`).",
    )


class AuthSection(_Section):
    """Authentication."""

    jwt: JwtAuthSection = Field(default_factory=JwtAuthSection)


class PrometheusSection(_Section):
    """Prometheus scrape endpoint."""

    enabled: bool = Field(default=False, description="Serve metrics.")
    listen_addr: ListenAddr = Field(default="127.0.0.1:9090", description="host:port ([::1]:port for IPv6).")
    path: str = Field(default="/metrics", description="URL path of the scrape endpoint.")
    bearer_token: OptionalText = Field(
        default=None,
        description="Required Authorization bearer token; mandatory when listening on a non-loopback host.",
    )

    @property
    def address(self) -> tuple[str, int]:
        return split_hostport(self.listen_addr)

    @model_validator(mode="after")
    def _check(self) -> PrometheusSection:
        if not self.path.startswith("/"):
            raise ValueError("path must start with '/'")
        if self.enabled and self.bearer_token is None and not is_loopback_host(self.address[0]):
            raise ValueError("bearer_token is required when metrics listen on a non-loopback address")
        return self


class MetricsSection(_Section):
    """Metrics."""

    prometheus: PrometheusSection = Field(default_factory=PrometheusSection)


class TimeoutsSection(_Section):
    """Timeouts, in seconds (fractions allowed)."""

    stream_request_seconds: Seconds = Field(default=30, description="Wait for an agent to accept a stream.")
    http_idle_seconds: Seconds = Field(default=90, description="Idle keep-alive HTTP connections are closed.")
    first_message_seconds: Seconds = Field(
        default=10, description="Wait for the first message on a new agent connection."
    )
    heartbeat_timeout_seconds: Seconds = Field(default=30, description="Silence before an agent is dead.")
    shutdown_grace_seconds: Seconds = Field(default=10, description="Drain time on shutdown.")


class TcpSection(_Section):
    """Portway extension: published TCP tunnels get a port from this range."""

    enabled: bool = Field(default=True, description="Allow published TCP tunnels.")
    listen_host: Host = Field(default="127.0.0.1", description="Interface the published ports bind to.")
    port_min: Port = Field(default=20000, description="Lowest port handed out.")
    port_max: Port = Field(default=20999, description="Highest port handed out.")
    reserve_seconds: Annotated[float, Field(ge=0, allow_inf_nan=False)] = Field(
        default=300,
        description="A port whose agent vanished stays reserved for the same credential this long (0 = never).",
    )

    @model_validator(mode="after")
    def _range(self) -> TcpSection:
        if self.port_min > self.port_max:
            raise ValueError(f"port_min ({self.port_min}) must not exceed port_max ({self.port_max})")
        return self


class GeoipSection(_Section):
    """Portway extension: the GeoIP database that tunnels' `geoip` allow-lists are checked against."""

    database_file: OptionalText = Field(
        default=None,
        description="MaxMind-format .mmdb file (GeoLite2/GeoIP2 Country or City); reopened when it changes.",
    )


class LimitsSection(_Section):
    """Portway extension: resource ceilings."""

    max_control_channels: Count = Field(default=1000, description="Concurrent agent connections.")
    max_tunnels_per_agent: Count = Field(default=100, description="Tunnels one agent connection may hold.")
    max_pending_streams: Count = Field(default=4096, description="Streams waiting for an agent to accept.")
    max_connections: Count = Field(
        default=10000, description="Connections between accept and routing (ClientHello + TLS handshake)."
    )
    max_watchers: Count = Field(default=1000, description="Concurrent signaling streams (SSE and WebSocket).")
    watch_buffer_bytes: Count = Field(
        default=1024 * 1024, description="Unsent bytes a signaling client may fall behind by before it is dropped."
    )


class WebhooksSection(_Section):
    """Portway: signed, durable delivery of lifecycle events to HTTP endpoints (docs/webhooks.md)."""

    enabled: bool = Field(
        default=True,
        description="Record events for webhook endpoints and deliver them (endpoints and deliveries are kept in "
                    "the control-plane store, `store.url`).",
    )
    timeout_seconds: Seconds = Field(default=10, description="One delivery attempt, connect to last byte.")
    concurrency: Count = Field(default=4, description="Delivery attempts in flight at once.")
    lease_seconds: Seconds = Field(
        default=60,
        description="A delivery being attempted is held this long (must exceed timeout_seconds); a crashed "
                    "engine's deliveries are retried after it.",
    )
    retry_base_seconds: Seconds = Field(default=10, description="Largest delay before the first retry; doubles.")
    retry_cap_seconds: Seconds = Field(default=3600, description="Largest delay between two attempts.")
    retry_horizon_seconds: Seconds = Field(default=86400, description="A delivery is failed this long after its event.")
    max_attempts: Count = Field(default=100, description="Attempts of one delivery (the horizon usually ends first).")
    rotation_grace_seconds: Annotated[float, Field(ge=0, allow_inf_nan=False)] = Field(
        default=86400, description="After a rotation the previous secret keeps signing this long."
    )
    retention_seconds: Seconds = Field(
        default=30 * 86400, description="Finished deliveries and their attempts are forgotten after this."
    )

    @model_validator(mode="after")
    def _check(self) -> WebhooksSection:
        if self.lease_seconds <= self.timeout_seconds:
            raise ValueError("lease_seconds must exceed timeout_seconds (else an attempt could run twice at once)")
        if self.retry_base_seconds > self.retry_cap_seconds:
            raise ValueError("retry_base_seconds must not exceed retry_cap_seconds")
        return self


class StoreSection(_Section):
    """Portway extension: the control-plane database (workspaces, projects, credentials, policies)."""

    url: OptionalText = Field(
        default=None,
        description="postgresql://user:password@host/db (null = SQLite file control.sqlite3 in the state directory).",
    )
    refresh_seconds: Seconds = Field(
        default=10, description="How often credentials and policies are re-read (changes by other engines)."
    )


class EngineConfig(_Section):
    """The whole engine configuration (immutable)."""

    engine: EngineSection = Field(default_factory=EngineSection)
    http: HttpSection = Field(default_factory=HttpSection)
    tls: TlsSection = Field(default_factory=TlsSection)
    certs: CertsSection = Field(default_factory=CertsSection)
    auth: AuthSection = Field(default_factory=AuthSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    timeouts: TimeoutsSection = Field(default_factory=TimeoutsSection)
    tcp: TcpSection = Field(default_factory=TcpSection)
    geoip: GeoipSection = Field(default_factory=GeoipSection)
    limits: LimitsSection = Field(default_factory=LimitsSection)
    webhooks: WebhooksSection = Field(default_factory=WebhooksSection)
    store: StoreSection = Field(default_factory=StoreSection)

    @property
    def advertised_port(self) -> int:
        """Port printed in public URLs: `engine.public_port`, else the TLS listen port (0 if ephemeral)."""
        if self.engine.public_port is not None:
            return self.engine.public_port
        return self.tls.address[1]

    @model_validator(mode="after")
    def _distinct_listeners(self) -> EngineConfig:
        seen: dict[tuple[str, int], str] = {}
        listeners = [
            ("http", self.http.enabled, self.http.listen_addr),
            ("tls", self.tls.enabled, self.tls.listen_addr),
            ("metrics.prometheus", self.metrics.prometheus.enabled, self.metrics.prometheus.listen_addr),
        ]
        for name, enabled, addr in listeners:
            if not enabled:
                continue
            host, port = split_hostport(addr)
            key = (host.lower(), port)
            if port and key in seen:
                raise ValueError(f"{name}.listen_addr is the same address as {seen[key]}.listen_addr")
            seen[key] = name
        return self
