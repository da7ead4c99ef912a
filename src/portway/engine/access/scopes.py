"""The three tunnel scopes of a `resources.tunnels` leaf (§3.2): what one leaf grants for create, connect
and list, compiled once. Pure; the tree around the leaves is in resources.py.

A scope value is `true` (granted, no further condition), `false` (not granted, as if absent) or an
object: `create: {filters}`, `connect: {filters, params: {path}}`, `list: {filters, select}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

from portway.engine.filters import FilterError, Predicate, Record, compile_filter

Scope = Literal["create", "connect", "list"]
SCOPES: tuple[Scope, ...] = ("create", "connect", "list")

SERVER_OWNED = frozenset({
    "client_id", "user_id", "workspace_id", "project_id", "cluster_id", "plan", "provider", "region",
    "status", "id", "creation_date",
})
"""Set by the engine, never by the agent: a create filter on them could only be matched by a lie."""

TUNNEL_FIELDS = SERVER_OWNED | frozenset({
    "name", "type", "publish", "protocol", "labels", "geo_ip", "trusted_ips", "host", "hostname", "port",
    "tls_mode", "tls_alpns", "tls_min_version", "tls_ciphers", "mtls_auth", "http_version", "http_use_tls",
    "upstream_tls", "token_auth", "rstream_auth", "challenge_mode",
})
"""The fields a filter may name (§3.2)."""

CREATE_FIELDS = TUNNEL_FIELDS - SERVER_OWNED

SELECTABLE = TUNNEL_FIELDS | frozenset({"forwarding_address", "datagram_guaranteed_delivery"})
"""`select` may also name the fields the Engine API shows beyond §3.2's filter set."""

FieldSet = frozenset[str] | None
"""A list projection: the visible fields, None = every field."""


class ResourceError(ValueError):
    """A `resources` tree that cannot be evaluated; the message names the path in the tree."""


def _always(record: Record) -> bool:
    return True


def _path_is_plain(path: str) -> bool:
    """False for paths an upstream could resolve elsewhere than they read (dot segments, backslashes).

    An allow-list such as `{regex: "/public/.*"}` would otherwise admit `/public/../admin`.
    """
    if not path.startswith("/"):
        return False
    decoded = unquote(path)
    return "\\" not in decoded and not any(part in (".", "..") for part in decoded.split("/"))


@dataclass(frozen=True, slots=True)
class ScopeRule:
    """One granted scope of one leaf: tunnel filter, optional path filter (connect), optional projection (list)."""

    match: Predicate = _always
    path: Predicate | None = None
    fields: FieldSet = None

    def allows(self, tunnel: Record, path: str | None) -> bool:
        """True when `tunnel` passes the filter and, if a path filter is set, `path` passes it.

        A path filter with no path (raw TCP, TLS passthrough, private dial) denies: the filter restricts
        HTTP requests, and a stream without a path could reach any of them.
        """
        if self.path is not None and (path is None or not _path_is_plain(path) or not self.path({"path": path})):
            return False
        return self.match(tunnel)


def compile_scopes(spec: object, where: str) -> dict[Scope, ScopeRule]:
    """The granted scopes of a leaf's `scopes` object; other resource types than `tunnels` are ignored."""
    if not isinstance(spec, Mapping):
        raise ResourceError(f"{where}: scopes must be an object")
    tunnels = spec.get("tunnels")
    if tunnels is None:
        return {}
    if not isinstance(tunnels, Mapping):
        raise ResourceError(f"{where}.tunnels: must be an object of create/connect/list")
    unknown = sorted(str(key) for key in tunnels if key not in SCOPES)
    if unknown:
        raise ResourceError(f"{where}.tunnels: unknown scope {unknown[0]!r}")
    rules: dict[Scope, ScopeRule] = {}
    for scope in SCOPES:
        value = tunnels.get(scope)
        if value is None or value is False:
            continue
        rules[scope] = ScopeRule() if value is True else _rule(scope, value, f"{where}.tunnels.{scope}")
    return rules


_KEYS: dict[Scope, frozenset[str]] = {
    "create": frozenset({"filters"}),
    "connect": frozenset({"filters", "params"}),
    "list": frozenset({"filters", "select"}),
}


def _rule(scope: Scope, spec: object, where: str) -> ScopeRule:
    if not isinstance(spec, Mapping):
        raise ResourceError(f"{where}: use true, false or an object")
    unknown = sorted(str(key) for key in spec if key not in _KEYS[scope])
    if unknown:
        raise ResourceError(f"{where}: unknown key {unknown[0]!r}")
    match: Predicate = _always
    if spec.get("filters") is not None:
        fields = CREATE_FIELDS if scope == "create" else TUNNEL_FIELDS
        try:
            match = compile_filter(spec["filters"], fields, allow_regex=True)
        except FilterError as error:
            raise ResourceError(f"{where}.filters: {error}") from None
    path = _params(spec["params"], f"{where}.params") if spec.get("params") is not None else None
    fields_ = _select(spec["select"], f"{where}.select") if spec.get("select") is not None else None
    return ScopeRule(match=match, path=path, fields=fields_)


def _params(spec: object, where: str) -> Predicate | None:
    if not isinstance(spec, Mapping):
        raise ResourceError(f"{where}: must be an object")
    unknown = sorted(str(key) for key in spec if key != "path")
    if unknown:
        raise ResourceError(f"{where}: unknown parameter {unknown[0]!r}")
    condition = spec.get("path")
    if condition is None:
        return None
    if not isinstance(condition, str | Mapping):
        raise ResourceError(f"{where}.path: use a string, {{exact}}, {{oneof}} or {{regex}}")
    try:
        return compile_filter({"path": condition}, frozenset({"path"}), allow_regex=True)
    except FilterError as error:
        raise ResourceError(f"{where}.path: {error}") from None


def _select(spec: object, where: str) -> frozenset[str]:
    """The fields mapped to true; a field mapped to false is simply not shown."""
    if not isinstance(spec, Mapping):
        raise ResourceError(f"{where}: must be an object of field → true/false")
    for key, value in spec.items():
        if key not in SELECTABLE:
            raise ResourceError(f"{where}: unknown field {key!r}")
        if not isinstance(value, bool):
            raise ResourceError(f"{where}.{key}: must be true or false")
    return frozenset(key for key, value in spec.items() if value)
