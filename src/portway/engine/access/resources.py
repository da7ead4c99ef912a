"""`resources.tunnels` (§3.2): the resource boundary of a token, compiled once into a `Boundary`.

A node is a leaf `{workspaces | projects, scopes}` or `{"AND": [node…]}` / `{"OR": [node…]}`. A leaf
grants its scopes on its target; without `scopes` it grants every scope unfiltered, without a target it
applies to any project. The tree is an allow-list, so everything fails closed:

- no `resources` claim at all = everything (permissions still apply);
- a malformed tree, `{"AND": []}`, a `resources` object without `tunnels`, or only the legacy
  `tunnelsGrants` / `metadata.scopes` claims = nothing (`from_claims` never grants what it cannot read);
- `{"OR": []}` is valid and grants nothing;
- a leaf that names projects (workspaces) denies when the project (workspace) is unknown.

Derivation is the intersection: `a.intersect(b)` is an AND of both, so it allows exactly what both
allow, and a list projection shows the fields both show. Under OR a tunnel visible through several leaves
shows the union of their `select` fields. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from portway.engine.access.scopes import SCOPES, FieldSet, ResourceError, Scope, ScopeRule, compile_scopes
from portway.engine.filters import Record

__all__ = ["MAX_DEPTH", "MAX_NODES", "Boundary", "ResourceError"]

MAX_DEPTH = 32
"""Deep enough for long derivation chains (each adds one AND), shallow enough to bound recursion."""
MAX_NODES = 1024
"""Bounds the work one check can cost."""

_LEAF_KEYS = frozenset({"workspaces", "projects", "scopes"})


@dataclass(frozen=True, slots=True)
class _Target:
    """Where a check happens: the tunnel's project and workspace (None = unknown)."""

    project_id: str | None
    workspace_id: str | None


@dataclass(frozen=True, slots=True)
class _Leaf:
    workspaces: frozenset[str] | None
    projects: frozenset[str] | None
    scopes: Mapping[Scope, ScopeRule] | None  # None: every scope, unfiltered

    def _on(self, target: _Target) -> bool:
        if self.projects is not None:
            return target.project_id is not None and target.project_id in self.projects
        if self.workspaces is not None:
            return target.workspace_id is not None and target.workspace_id in self.workspaces
        return True

    def _rule(self, scope: Scope, target: _Target) -> ScopeRule | None:
        if not self._on(target):
            return None
        return ScopeRule() if self.scopes is None else self.scopes.get(scope)

    def allows(self, scope: Scope, tunnel: Record, target: _Target, path: str | None) -> bool:
        rule = self._rule(scope, target)
        return rule is not None and rule.allows(tunnel, path)

    def visible(self, tunnel: Record, target: _Target) -> tuple[bool, FieldSet]:
        rule = self._rule("list", target)
        if rule is None or not rule.allows(tunnel, None):
            return False, None
        return True, rule.fields


@dataclass(frozen=True, slots=True)
class _Join:
    conjunction: bool  # True: AND, False: OR
    children: tuple[_Node, ...]

    def allows(self, scope: Scope, tunnel: Record, target: _Target, path: str | None) -> bool:
        test = all if self.conjunction else any
        return test(child.allows(scope, tunnel, target, path) for child in self.children)

    def visible(self, tunnel: Record, target: _Target) -> tuple[bool, FieldSet]:
        seen = [child.visible(tunnel, target) for child in self.children]
        shown = [fields for ok, fields in seen if ok]
        if self.conjunction:
            if len(shown) < len(seen):
                return False, None
            limited = [fields for fields in shown if fields is not None]
            return True, frozenset.intersection(*limited) if limited else None
        if not shown:
            return False, None
        if any(fields is None for fields in shown):
            return True, None
        return True, frozenset().union(*(fields for fields in shown if fields is not None))


_Node = _Leaf | _Join


class _Parser:
    """Compiles a tree, counting nodes; errors name the path, e.g. `resources.tunnels.OR[1].scopes`."""

    def __init__(self) -> None:
        self.nodes = 0

    def node(self, spec: object, where: str, depth: int) -> _Node:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ResourceError(f"{where}: the tree has more than {MAX_NODES} nodes")
        if depth > MAX_DEPTH:
            raise ResourceError(f"{where}: the tree is nested more than {MAX_DEPTH} levels deep")
        if not isinstance(spec, Mapping):
            raise ResourceError(f"{where}: a node must be an object")
        joins = [key for key in ("AND", "OR") if key in spec]
        if joins:
            if len(spec) != 1:
                raise ResourceError(f"{where}: an AND/OR node takes no other key")
            return self.join(joins[0], spec[joins[0]], f"{where}.{joins[0]}", depth)
        return self.leaf(spec, where)

    def join(self, kind: str, items: object, where: str, depth: int) -> _Join:
        if not isinstance(items, list):
            raise ResourceError(f"{where}: takes a list of nodes")
        if kind == "AND" and not items:
            raise ResourceError(f"{where}: an empty AND would grant everything")
        children = tuple(self.node(item, f"{where}[{index}]", depth + 1) for index, item in enumerate(items))
        return _Join(kind == "AND", children)

    def leaf(self, spec: Mapping[str, Any], where: str) -> _Leaf:
        unknown = sorted(str(key) for key in spec if key not in _LEAF_KEYS)
        if unknown:
            raise ResourceError(f"{where}: unknown key {unknown[0]!r}")
        workspaces = _ids(spec.get("workspaces"), f"{where}.workspaces")
        projects = _ids(spec.get("projects"), f"{where}.projects")
        if workspaces is not None and projects is not None:
            raise ResourceError(f"{where}: workspaces and projects are mutually exclusive")
        scopes = compile_scopes(spec["scopes"], f"{where}.scopes") if spec.get("scopes") is not None else None
        if workspaces is None and projects is None and scopes is None:
            raise ResourceError(f"{where}: a leaf needs workspaces, projects or scopes")
        return _Leaf(workspaces, projects, scopes)


def _ids(value: object, where: str) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ResourceError(f"{where}: must be a list of ids")
    return frozenset(value)


_NOTHING_TREE: Mapping[str, object] = {"OR": []}


class Boundary:
    """A compiled `resources.tunnels` tree. Immutable; build with `parse`, `from_claims` or `from_resources`.

    `tree` is the JSON it came from (None = unrestricted), for minting derived tokens; `problem` says why a
    boundary grants nothing when it was read from something malformed.
    """

    __slots__ = ("_root", "problem", "tree")

    def __init__(self, root: _Node | None, tree: Mapping[str, object] | None, problem: str | None = None) -> None:
        self._root = root
        self.tree = tree
        self.problem = problem

    def __repr__(self) -> str:
        if self._root is None:
            return "Boundary(everything)"
        return f"Boundary(nothing: {self.problem})" if self.problem else f"Boundary({self.tree!r})"

    @classmethod
    def everything(cls) -> Boundary:
        return _EVERYTHING

    @classmethod
    def nothing(cls, problem: str | None = None) -> Boundary:
        return cls(_Join(False, ()), _NOTHING_TREE, problem)

    @classmethod
    def parse(cls, tree: object, where: str = "resources.tunnels") -> Boundary:
        """Compile a `resources.tunnels` node; raises ResourceError naming the offending path."""
        root = _Parser().node(tree, where, 0)
        assert isinstance(tree, Mapping)
        return cls(root, tree)

    @classmethod
    def from_resources(cls, resources: object) -> Boundary:
        """The boundary of a `resources` object (`{"tunnels": node}`; None = unrestricted). Never raises."""
        if resources is None:
            return _EVERYTHING
        if not isinstance(resources, Mapping) or resources.get("tunnels") is None:
            return cls.nothing("resources: has no tunnels tree")
        try:
            return cls.parse(resources["tunnels"])
        except ResourceError as error:
            return cls.nothing(str(error))

    @classmethod
    def from_claims(cls, claims: Mapping[str, object]) -> Boundary:
        """The boundary of a verified token's claims. Never raises: what cannot be read grants nothing."""
        resources = claims.get("resources")
        if resources is None:
            metadata = claims.get("metadata")
            if claims.get("tunnelsGrants") is not None or (isinstance(metadata, Mapping) and "scopes" in metadata):
                return cls.nothing("legacy tunnelsGrants / metadata.scopes claims are not supported")
            return _EVERYTHING
        return cls.from_resources(resources)

    @property
    def unrestricted(self) -> bool:
        return self._root is None

    def allows(self, scope: Scope, tunnel: Record, *, project_id: str | None = None,
               workspace_id: str | None = None, path: str | None = None) -> bool:
        """May `scope` be used on `tunnel`?

        For connect and list, `tunnel` is the record as the API shows it and an omitted project_id /
        workspace_id is read from it. For create, `tunnel` holds the requested properties and the target is
        only what the caller passes (a request cannot choose its own project). `path` is the HTTP request's
        path without the query, as sent (connect only).
        """
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}")
        if self._root is None:
            return True
        return self._root.allows(scope, tunnel, _target(scope, tunnel, project_id, workspace_id), path)

    def select(self, tunnel: Record, *, project_id: str | None = None,
               workspace_id: str | None = None) -> dict[str, Any] | None:
        """The list view of `tunnel`: only the selected fields, or None when the tunnel is not listed."""
        if self._root is None:
            return dict(tunnel)
        ok, fields = self._root.visible(tunnel, _target("list", tunnel, project_id, workspace_id))
        if not ok:
            return None
        return dict(tunnel) if fields is None else {key: tunnel[key] for key in tunnel if key in fields}

    def intersect(self, other: Boundary) -> Boundary:
        """What both allow (a derived token's boundary): nested ANDs are flattened so chains stay shallow."""
        if self._root is None:
            return other
        if other._root is None:
            return self
        if self.problem is not None or other.problem is not None:
            return self if self.problem is not None else other
        nodes = (*_conjuncts(self._root), *_conjuncts(other._root))
        trees = [*_tree_conjuncts(self.tree), *_tree_conjuncts(other.tree)]
        return Boundary(_Join(True, nodes), {"AND": trees})

    def to_resources(self) -> dict[str, object] | None:
        """The `resources` claim for this boundary (None: leave the claim out)."""
        return None if self.tree is None else {"tunnels": self.tree}


def _target(scope: Scope, tunnel: Record, project_id: str | None, workspace_id: str | None) -> _Target:
    if scope != "create":
        project_id = project_id if project_id is not None else _text(tunnel.get("project_id"))
        workspace_id = workspace_id if workspace_id is not None else _text(tunnel.get("workspace_id"))
    return _Target(project_id, workspace_id)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _conjuncts(node: _Node) -> tuple[_Node, ...]:
    return node.children if isinstance(node, _Join) and node.conjunction else (node,)


def _tree_conjuncts(tree: Mapping[str, object] | None) -> list[object]:
    if tree is not None and set(tree) == {"AND"} and isinstance(tree["AND"], list):
        return list(tree["AND"])
    return [tree]


_EVERYTHING = Boundary(None, None)
