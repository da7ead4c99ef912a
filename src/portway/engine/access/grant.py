"""What a credential may do: its permissions (§3.2) combined with its resource boundary. Pure.

A scope needs both its permission and the boundary's consent: `tunnels.tunnels.create-delete` ↔ create,
`tunnels.streams.create-delete` ↔ connect, `tunnels.resources.read-only` ↔ list. `permissions` null or
absent = every permission; any other non-list value = none (fail closed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from portway.engine.access.resources import Boundary
from portway.engine.access.scopes import SCOPES, Scope
from portway.engine.filters import Record

__all__ = ["PERMISSION_OF", "Grant", "parse_permissions"]

PERMISSION_OF: Mapping[Scope, str] = {
    "create": "tunnels.tunnels.create-delete",
    "connect": "tunnels.streams.create-delete",
    "list": "tunnels.resources.read-only",
}

Permissions = frozenset[str] | None
"""None = every permission."""


def parse_permissions(value: object) -> Permissions:
    """A `permissions` claim: a list of strings, or null/absent for all; anything else grants none."""
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return frozenset(value)
    return frozenset()


@dataclass(frozen=True, slots=True)
class Grant:
    """Permissions and boundary together; `can` is the one question the engine asks."""

    permissions: Permissions = None
    boundary: Boundary = field(default_factory=Boundary.everything)

    @classmethod
    def from_claims(cls, claims: Mapping[str, object]) -> Grant:
        """The grant a token's claims carry on their own (before any stored credential narrows it)."""
        permissions = parse_permissions(claims.get("permissions"))
        boundary = Boundary.from_claims(claims)
        if permissions is None and boundary.unrestricted:
            return EVERYTHING  # the common CE token: nothing to allocate on the hot path
        return cls(permissions, boundary)

    @classmethod
    def of(cls, permissions: object, resources: object) -> Grant:
        """The grant of a stored credential: a permissions list (None = all) and a `resources` object."""
        return cls(parse_permissions(permissions), Boundary.from_resources(resources))

    @property
    def unrestricted(self) -> bool:
        return self.permissions is None and self.boundary.unrestricted

    def has(self, permission: str) -> bool:
        return self.permissions is None or permission in self.permissions

    def can(self, scope: Scope, tunnel: Record, *, project_id: str | None = None,
            workspace_id: str | None = None, path: str | None = None) -> bool:
        """May this credential use `scope` on `tunnel`? See `Boundary.allows` for the arguments."""
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}")
        return self.has(PERMISSION_OF[scope]) and self.boundary.allows(
            scope, tunnel, project_id=project_id, workspace_id=workspace_id, path=path)

    def select(self, tunnel: Record, *, project_id: str | None = None,
               workspace_id: str | None = None) -> dict[str, Any] | None:
        """The list view of `tunnel`, or None when this credential may not list it."""
        if not self.has(PERMISSION_OF["list"]):
            return None
        return self.boundary.select(tunnel, project_id=project_id, workspace_id=workspace_id)

    def intersect(self, other: Grant) -> Grant:
        """What both grant: the common permissions and the intersected boundary (§3.2 "Derivation")."""
        if other.unrestricted:
            return self
        if self.unrestricted:
            return other
        if self.permissions is None:
            permissions = other.permissions
        elif other.permissions is None:
            permissions = self.permissions
        else:
            permissions = self.permissions & other.permissions
        return Grant(permissions, self.boundary.intersect(other.boundary))


EVERYTHING = Grant()
