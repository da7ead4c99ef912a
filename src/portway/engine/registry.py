"""Live routing state: which tunnels exist, and how visitors and dialers find them.

In memory for one engine process. Kept behind small methods (no dict access from outside) so a
shared implementation can replace it when several engine nodes serve one project.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from portway.engine.auth import Principal
from portway.engine.policy import EdgePolicy
from portway.wire.messages import TunnelProperties


class TunnelOwner(Protocol):
    """What the registry needs from the session that owns a tunnel."""

    client_id: str
    token_id: str
    principal: Principal

    def request_stream(self, tunnel_id: str, stream_id: str, secret: str, source_ip: str | None) -> None: ...

    def retire_tunnel(self, tunnel_id: str) -> None: ...


@dataclass(eq=False, slots=True)
class Tunnel:
    """A live tunnel. `props` are the effective properties returned to the agent; `tls` is the server
    context of a terminated tls tunnel (edges/tlsterm.py), replaced when the engine certificate is."""

    props: TunnelProperties
    owner: TunnelOwner
    tls: ssl.SSLContext | None = None
    created_at: float = field(default_factory=time.time)
    streams_opened: int = 0
    policy: EdgePolicy | None = None  # edge controls (trusted_ips, geoip, token_auth), compiled at creation
    project_id: str | None = None  # the project it was created in (its owner's credential's)
    workspace_id: str | None = None
    record: dict[str, Any] | None = None  # its inventory view as JSON data, cached for access checks

    @property
    def id(self) -> str:
        assert self.props.id is not None
        return self.props.id


class Registry:
    """Indexes of live tunnels by id, name, hostname and TCP port."""

    def __init__(self) -> None:
        self._by_id: dict[str, Tunnel] = {}
        self._by_name: dict[str, Tunnel] = {}
        self._by_hostname: dict[str, Tunnel] = {}
        self._by_port: dict[int, Tunnel] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def tunnels(self) -> list[Tunnel]:
        return list(self._by_id.values())

    def hostnames(self) -> set[str]:
        return set(self._by_hostname)

    def holders(self, props: TunnelProperties) -> list[Tunnel]:
        """Live tunnels holding the name, hostname or port that `props` asks for."""
        candidates = (
            self._by_name.get(props.name) if props.name is not None else None,
            self._by_hostname.get(props.hostname) if props.hostname is not None else None,
            self._by_port.get(props.port) if props.port is not None else None,
        )
        found: list[Tunnel] = []
        for holder in candidates:
            if holder is not None and holder not in found:
                found.append(holder)
        return found

    def add(self, tunnel: Tunnel) -> None:
        """Index `tunnel`; callers have already resolved conflicts (see `holders`)."""
        p = tunnel.props
        self._by_id[tunnel.id] = tunnel
        if p.name is not None:
            self._by_name[p.name] = tunnel
        if p.hostname is not None:
            self._by_hostname[p.hostname] = tunnel
        if p.port is not None and p.protocol == "tcp":
            self._by_port[p.port] = tunnel

    def remove(self, tunnel: Tunnel) -> bool:
        """Drop `tunnel` from every index; False if it was not live."""
        if self._by_id.pop(tunnel.id, None) is None:
            return False
        p = tunnel.props
        if p.name is not None and self._by_name.get(p.name) is tunnel:
            del self._by_name[p.name]
        if p.hostname is not None and self._by_hostname.get(p.hostname) is tunnel:
            del self._by_hostname[p.hostname]
        if p.port is not None and self._by_port.get(p.port) is tunnel:
            del self._by_port[p.port]
        return True

    def get(self, tunnel_id: str) -> Tunnel | None:
        return self._by_id.get(tunnel_id)

    def by_hostname(self, hostname: str) -> Tunnel | None:
        return self._by_hostname.get(hostname.lower().rstrip("."))

    def dial_target(self, name_or_id: str) -> Tunnel | None:
        """A tunnel a dialer asked for by id or by name (id wins)."""
        return self._by_id.get(name_or_id) or self._by_name.get(name_or_id)

