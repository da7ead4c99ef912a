"""The live engine as the API's `Inventory`: views of the registry's tunnels and the open control
channels, built on request (the inventory is small and always current this way)."""

from __future__ import annotations

from datetime import UTC, datetime

from portway.engine.api.views import ClientView, TunnelView
from portway.engine.auth import Principal
from portway.engine.context import EngineContext, Session
from portway.engine.registry import Tunnel
from portway.errors import AuthError
from portway.wire.hostnames import forwarding_address


class EngineInventory:
    """Reads an `EngineContext` for routes.answer."""

    def __init__(self, ctx: EngineContext) -> None:
        self._ctx = ctx
        self.host = ctx.host
        self.version = ctx.version

    def verify(self, token: str | None) -> Principal:
        return self._ctx.access.verify(token)

    def issue(self, *, subject: str, ttl_s: int, extra: dict[str, object]) -> str:
        if not self._ctx.config.auth.jwt.token_minting:
            raise AuthError("this engine does not mint tokens (auth.jwt.token_minting is false)")
        return self._ctx.verifier.issue(subject=subject, ttl_s=ttl_s, extra=extra)

    def tunnels(self) -> list[TunnelView]:
        return [tunnel_view(tunnel) for tunnel in self._ctx.registry.tunnels()]

    def service(self, name: str) -> object | None:
        return self._ctx.services.get(name)

    def tunnel_count(self) -> int:
        return len(self._ctx.registry)

    def clients(self) -> list[ClientView]:
        return [client_view(session) for session in self._ctx.sessions]


def tunnel_view(tunnel: Tunnel) -> TunnelView:
    owner = tunnel.owner
    return TunnelView.of(tunnel.props, client_id=owner.client_id, user_id=owner.principal.subject,
                         project_id=tunnel.project_id, workspace_id=tunnel.workspace_id,
                         address=forwarding_address(tunnel.props) if tunnel.props.publish else None)


def client_view(session: Session) -> ClientView:
    d = session.details
    return ClientView(id=session.client_id, user_id=session.principal.subject, agent=d.agent, channel=d.channel,
                      version=d.version, os=d.os, arch=d.arch, protocol_version=d.protocol_version,
                      created_at=datetime.fromtimestamp(session.opened_at, UTC), remote_address=session.peer,
                      tunnels=len(session.tunnels), project_id=session.project_id,
                      workspace_id=session.workspace_id)
