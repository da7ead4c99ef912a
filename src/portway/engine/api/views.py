"""JSON shapes of the Engine API, as pydantic models: the same classes serialize responses and generate
the OpenAPI document (openapi.py), so the two cannot drift apart."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from portway.wire.messages import TunnelProperties


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TunnelView(_View):
    """A live tunnel: its effective properties (snake_case; `geo_ip` as in rstream's JSON) and owner."""

    id: str
    creation_date: datetime | None = None
    name: str | None = None
    type: str | None = Field(None, description="bytestream or datagram")
    publish: bool | None = None
    protocol: str | None = Field(None, description="http, tls, tcp, dtls or quic; none for private tunnels")
    labels: dict[str, str] = Field(default_factory=dict)
    geo_ip: list[str] = Field(default_factory=list, description="ISO country codes allowed to connect")
    trusted_ips: list[str] = Field(default_factory=list)
    host: str | None = None
    tls_mode: str | None = None
    tls_alpns: list[str] = Field(default_factory=list)
    tls_min_version: str | None = None
    tls_ciphers: list[str] = Field(default_factory=list)
    mtls_auth: bool | None = None
    http_version: str | None = None
    http_use_tls: bool | None = None
    token_auth: bool | None = None
    rstream_auth: bool | None = None
    challenge_mode: bool | None = None
    hostname: str | None = None
    port: int | None = None
    upstream_tls: bool | None = None
    datagram_guaranteed_delivery: bool | None = None
    status: Literal["online", "offline"] = "online"
    client_id: str
    user_id: str | None = None
    workspace_id: str | None = None
    project_id: str | None = None
    forwarding_address: str | None = Field(None, description="Where visitors reach a published tunnel")

    @classmethod
    def of(cls, props: TunnelProperties, *, client_id: str, user_id: str | None, address: str | None,
           project_id: str | None = None, workspace_id: str | None = None) -> TunnelView:
        """The view of a tunnel's properties (the mTLS CA PEM is configuration, not inventory: left out)."""
        return cls(
            id=props.id or "", creation_date=props.creation_date, name=props.name, type=props.type,
            publish=props.publish, protocol=props.protocol, labels=dict(props.labels), geo_ip=list(props.geoip),
            trusted_ips=list(props.trusted_ips), host=props.host, tls_mode=props.tls_mode,
            tls_alpns=list(props.tls_alpns), tls_min_version=props.tls_min_version,
            tls_ciphers=list(props.tls_ciphers), mtls_auth=props.mtls_auth, http_version=props.http_version,
            http_use_tls=props.http_use_tls, token_auth=props.token_auth, rstream_auth=props.rstream_auth,
            challenge_mode=props.challenge_mode, hostname=props.hostname, port=props.port,
            upstream_tls=props.upstream_tls, datagram_guaranteed_delivery=props.datagram_guaranteed_delivery,
            client_id=client_id, user_id=user_id, project_id=project_id, workspace_id=workspace_id,
            forwarding_address=address)


class ClientView(_View):
    """A connected agent (one control channel)."""

    id: str
    status: Literal["online", "offline"] = "online"
    user_id: str | None = None
    workspace_id: str | None = None
    project_id: str | None = None
    agent: str | None = None
    channel: str | None = None
    version: str | None = None
    os: str | None = None
    arch: str | None = None
    protocol_version: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    remote_address: str | None = Field(None, description="The agent's address as the engine saw it")
    tunnels: int = Field(0, description="Live tunnels of this client")


class AuthView(_View):
    """`GET /api/auth`: who the credential speaks for."""

    subject: str
    type: str | None = Field(None, description="the token's `type` claim (auth, pat, app) when it has one")
    expires_at: datetime | None = None


class Discovery(_View):
    """`GET /.well-known/rstream/engine`: what this engine offers."""

    version: int = 1
    engine: str
    product: str = "portway"
    product_version: str
    projectEndpoint: str | None = None
    mtlsApiUrl: str | None = None
    capabilities: list[str]


class ErrorBody(_View):
    """Every non-2xx answer."""

    error: str
    status: int
