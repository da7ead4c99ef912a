"""Checks on what a credential may hold (`permissions`, `resources`), shared by PATs and application
credentials. Only the shape is checked here; what a grant allows is the access package's business."""

from __future__ import annotations

import re
from typing import Any

from portway.engine.access.resources import Boundary, ResourceError
from portway.engine.store.errors import Invalid

_PERMISSION = re.compile(r"^[a-z][a-z0-9_.-]{0,127}$")
MAX_RESOURCES_BYTES = 16 * 1024


def check_permissions(permissions: list[str] | None) -> list[str] | None:
    """None (every permission of the owner) or a list of dotted names such as `tunnels.tunnels.create-delete`."""
    if permissions is None:
        return None
    for permission in permissions:
        if not _PERMISSION.match(permission):
            raise Invalid(f"permission {permission!r} is not a dotted lower-case name")
    return sorted(set(permissions))


def check_resources(resources: dict[str, Any] | None) -> dict[str, Any] | None:
    """None (no boundary) or `{"tunnels": node}` (§3.2)."""
    if resources is None:
        return None
    if set(resources) != {"tunnels"} or not isinstance(resources["tunnels"], dict):
        raise Invalid('resources must be {"tunnels": {...}}')
    if len(repr(resources)) > MAX_RESOURCES_BYTES:
        raise Invalid("resources is too large")
    try:  # a tree the engine would read as "nothing" is a typo to report, not a credential that grants nothing
        Boundary.parse(resources["tunnels"])
    except ResourceError as error:
        raise Invalid(str(error)) from None
    return resources
