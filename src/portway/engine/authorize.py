"""Who may do what with which tunnel: the caller's grant (access/grant.py — permissions and the
`resources.tunnels` boundary) and its project, applied to creation, connections (private dials and
token-auth requests), listings and signaling. A credential that belongs to a project only ever sees and
uses that project's tunnels; the engine's shared-secret tokens have no project and reach every one.
"""

from __future__ import annotations

from typing import Any

from portway.engine.access.scopes import Scope
from portway.engine.access.tokens import AccessPrincipal
from portway.engine.api.inventory import tunnel_view
from portway.engine.auth import Principal
from portway.engine.registry import Tunnel
from portway.wire.messages import TunnelProperties

Record = dict[str, Any]
LIST_PERMISSION = "tunnels.resources.read-only"


def record_of(tunnel: Tunnel) -> Record:
    """The tunnel as filters see it (its inventory view), computed once."""
    if tunnel.record is None:
        tunnel.record = tunnel_view(tunnel).model_dump(mode="json")
    return tunnel.record


def in_project(principal: Principal, project_id: str | None) -> bool:
    """Whether `principal` may reach a project's tunnels at all (shared-secret tokens reach every project)."""
    return principal.project_id is None or principal.project_id == project_id


def unrestricted(principal: Principal) -> bool:
    """Whether no check can refuse `principal` anything (shared-secret tokens without claims, no auth)."""
    return not isinstance(principal, AccessPrincipal) or (principal.project_id is None and principal.grant.unrestricted)


def may_create(principal: Principal, props: TunnelProperties, project_id: str | None,
               workspace_id: str | None) -> bool:
    """May `principal` create a tunnel with `props` in its project?"""
    if not isinstance(principal, AccessPrincipal) or principal.grant.unrestricted:
        return True
    requested = {k: v for k, v in tunnel_record(props).items() if v not in (None, [], {})}
    return principal.grant.can("create", requested, project_id=project_id, workspace_id=workspace_id)


def may(principal: Principal, scope: Scope, tunnel: Tunnel, *, path: str | None = None) -> bool:
    """May `principal` use `scope` ("connect" or "list") on a live tunnel?"""
    if not isinstance(principal, AccessPrincipal):
        return True
    if not in_project(principal, tunnel.project_id):
        return False
    if principal.grant.unrestricted:
        return True
    return principal.grant.can(scope, record_of(tunnel), project_id=tunnel.project_id,
                               workspace_id=tunnel.workspace_id, path=path)


def visible(principal: Principal, record: Record) -> Record | None:
    """`record` (a tunnel's inventory view) as `principal` may list it: projected by `select`, or None."""
    if not isinstance(principal, AccessPrincipal):
        return record
    if not in_project(principal, record.get("project_id")):
        return None
    if principal.grant.unrestricted:
        return record
    shown = principal.grant.select(record, project_id=record.get("project_id"),
                                   workspace_id=record.get("workspace_id"))
    if shown is not None:
        shown.setdefault("id", record.get("id"))  # events and lookups need the id, whatever `select` keeps
    return shown


def client_visible(principal: Principal, client: Record, owners: set[str]) -> bool:
    """A connected agent is listed to credentials of its project with the list permission, when the
    boundary is open, or the agent is the caller's own, or it holds a tunnel the caller may list
    (`owners`: the client ids of those)."""
    if not isinstance(principal, AccessPrincipal):
        return True
    if not in_project(principal, client.get("project_id")) or not principal.grant.has(LIST_PERMISSION):
        return False
    return principal.grant.boundary.unrestricted or client.get("user_id") == principal.subject \
        or client.get("id") in owners


def tunnel_record(props: TunnelProperties) -> Record:
    """Requested properties as the fields `create` filters name (the inventory's spelling: `geo_ip`)."""
    return {"name": props.name, "type": props.type, "publish": props.publish, "protocol": props.protocol,
            "labels": dict(props.labels), "geo_ip": list(props.geoip), "trusted_ips": list(props.trusted_ips),
            "host": props.host, "hostname": props.hostname, "port": props.port, "tls_mode": props.tls_mode,
            "tls_alpns": list(props.tls_alpns), "tls_min_version": props.tls_min_version,
            "tls_ciphers": list(props.tls_ciphers), "mtls_auth": props.mtls_auth, "http_version": props.http_version,
            "http_use_tls": props.http_use_tls, "upstream_tls": props.upstream_tls, "token_auth": props.token_auth,
            "rstream_auth": props.rstream_auth, "challenge_mode": props.challenge_mode}
