"""engine/access: `resources.tunnels` boundaries (§3.2), permissions and grants."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portway.engine.access.grant import PERMISSION_OF, Grant, parse_permissions
from portway.engine.access.resources import MAX_DEPTH, Boundary, ResourceError
from portway.engine.access.scopes import SCOPES

WEB = {
    "id": "t1", "name": "web", "type": "bytestream", "publish": True, "protocol": "http", "port": None,
    "labels": {"env": "prod", "team": "a"}, "host": "web.example", "status": "online", "client_id": "c1",
    "user_id": "u1", "project_id": "p1", "workspace_id": "w1", "token_auth": False,
}
SSH = {**WEB, "id": "t2", "name": "ssh", "protocol": "tcp", "publish": False, "port": 2222,
       "labels": {"env": "dev"}, "project_id": "p2", "workspace_id": "w1"}


def scopes(**granted: object) -> dict[str, object]:
    return {"scopes": {"tunnels": granted}}


def allows(tree: object, scope: str, tunnel: dict[str, Any], **kw: Any) -> bool:
    return Boundary.parse(tree).allows(scope, tunnel, **kw)  # type: ignore[arg-type]


# ---- leaves: targets ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("tree", "tunnel", "expected"), [
    ({"projects": ["p1"]}, WEB, True),
    ({"projects": ["p1"]}, SSH, False),
    ({"projects": ["p1", "p2"]}, SSH, True),
    ({"projects": []}, WEB, False),
    ({"workspaces": ["w1"]}, WEB, True),
    ({"workspaces": ["w1"]}, SSH, True),
    ({"workspaces": ["w2"]}, WEB, False),
    ({"workspaces": []}, WEB, False),
])
def test_a_target_leaf_without_scopes_grants_every_scope_on_its_target(
        tree: dict[str, Any], tunnel: dict[str, Any], expected: bool) -> None:
    for scope in SCOPES:
        assert allows(tree, scope, tunnel, project_id=tunnel["project_id"],
                      workspace_id=tunnel["workspace_id"]) is expected


def test_connect_and_list_read_the_target_from_the_record() -> None:
    assert allows({"projects": ["p1"]}, "connect", WEB)
    assert allows({"workspaces": ["w1"]}, "list", WEB)
    assert not allows({"projects": ["p1"]}, "connect", SSH)


def test_an_explicit_target_wins_over_the_record() -> None:
    assert not allows({"projects": ["p1"]}, "connect", WEB, project_id="p9")


def test_create_never_reads_the_target_from_the_requested_properties() -> None:
    assert not allows({"projects": ["p1"]}, "create", {"name": "x", "project_id": "p1"})
    assert allows({"projects": ["p1"]}, "create", {"name": "x"}, project_id="p1")


def test_an_unknown_target_is_denied_by_a_targeted_leaf() -> None:
    anonymous = {key: value for key, value in WEB.items() if key not in ("project_id", "workspace_id")}
    assert not allows({"projects": ["p1"]}, "connect", anonymous)
    assert not allows({"workspaces": ["w1"]}, "list", anonymous)
    assert allows(scopes(connect=True), "connect", anonymous)


# ---- leaves: scopes -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("granted", SCOPES)
def test_true_grants_one_scope_only(granted: str) -> None:
    tree = scopes(**{granted: True})
    for scope in SCOPES:
        assert allows(tree, scope, WEB, project_id="p1") is (scope == granted)


def test_false_and_null_scopes_grant_nothing() -> None:
    tree = scopes(create=False, connect=None, list=False)
    assert not any(allows(tree, scope, WEB, project_id="p1") for scope in SCOPES)


def test_empty_scopes_grant_nothing() -> None:
    assert not allows({"scopes": {}}, "list", WEB)
    assert not allows({"scopes": {"tunnels": {}}}, "list", WEB)
    assert not allows({"projects": ["p1"], "scopes": {"turn": {"create": True}}}, "list", WEB)


def test_target_and_scopes_combine() -> None:
    tree = {"projects": ["p1"], **scopes(list=True)}
    assert allows(tree, "list", WEB)
    assert not allows(tree, "connect", WEB)
    assert not allows(tree, "list", SSH)


# ---- filters (exact, oneof, regex, labels, AND/OR at filter level, direct values) -----------------------------

@pytest.mark.parametrize(("filters", "web", "ssh"), [
    ({"name": "web"}, True, False),
    ({"name": {"exact": "web"}}, True, False),
    ({"name": {"exact": "we"}}, False, False),
    ({"name": {"oneof": ["web", "ssh"]}}, True, True),
    ({"name": {"oneof": []}}, False, False),
    ({"name": {"regex": "w.*"}}, True, False),
    ({"name": {"regex": "e"}}, False, False),  # full match, not search
    ({"protocol": {"oneof": ["http", "tls"]}}, True, False),
    ({"publish": True}, True, False),
    ({"port": 2222}, False, True),
    ({"labels": {"env": "prod"}}, True, False),
    ({"labels": {"env": {"regex": "prod|dev"}}}, True, True),
    ({"labels": {"team": None}}, True, False),
    ({"labels": {"env": None, "team": "a"}}, True, False),
    ({"labels": {"missing": None}}, False, False),
    ({"status": "online"}, True, True),
    ({"client_id": "c1", "user_id": "u1"}, True, True),
    ({"name": "web", "protocol": "tcp"}, False, False),
    ({"OR": [{"name": "web"}, {"port": 2222}]}, True, True),
    ({"AND": [{"labels": {"env": None}}, {"protocol": "tcp"}]}, False, True),
    ({"OR": [{"AND": [{"name": "web"}, {"publish": False}]}, {"labels": {"env": "dev"}}]}, False, True),
    ({}, True, True),
])
def test_connect_and_list_filters(filters: dict[str, Any], web: bool, ssh: bool) -> None:
    for scope in ("connect", "list"):
        tree = scopes(**{scope: {"filters": filters}})
        assert allows(tree, scope, WEB) is web
        assert allows(tree, scope, SSH) is ssh


@pytest.mark.parametrize(("filters", "expected"), [
    ({"name": "api"}, True),
    ({"name": {"regex": "a.i"}}, True),
    ({"protocol": "http", "publish": True}, True),
    ({"labels": {"env": "prod"}}, True),
    ({"labels": {"env": "dev"}}, False),
    ({"name": {"oneof": ["web"]}}, False),
])
def test_create_filters_match_the_requested_properties(filters: dict[str, Any], expected: bool) -> None:
    requested = {"name": "api", "protocol": "http", "publish": True, "labels": {"env": "prod"}}
    assert allows(scopes(create={"filters": filters}), "create", requested) is expected


@pytest.mark.parametrize("field", ["client_id", "user_id", "workspace_id", "project_id", "cluster_id", "plan",
                                   "provider", "region", "status", "id", "creation_date"])
def test_create_filters_refuse_server_owned_fields(field: str) -> None:
    with pytest.raises(ResourceError, match=r"scopes\.tunnels\.create\.filters.*unknown filter field"):
        Boundary.parse(scopes(create={"filters": {field: "x"}}))
    assert Boundary.parse(scopes(list={"filters": {field: "x"}})).tree is not None


# ---- connect: path parameter ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("path_filter", "path", "expected"), [
    ("/api", "/api", True),
    ("/api", "/api/", False),
    ({"exact": "/api"}, "/api", True),
    ({"oneof": ["/a", "/b"]}, "/b", True),
    ({"oneof": ["/a", "/b"]}, "/c", False),
    ({"regex": "/public/.*"}, "/public/x/y", True),
    ({"regex": "/public/.*"}, "/private", False),
    ({"regex": "/public/.*"}, "/public/../admin", False),
    ({"regex": "/public/.*"}, "/public/%2e%2e/admin", False),
    ({"regex": "/public/.*"}, "/public/./x", False),
    ({"regex": "/public/.*"}, "/public/..\\admin", False),
    ({"regex": ".*"}, "relative", False),
    ({"regex": ".*"}, None, False),  # raw TCP dial: no path to check → denied
])
def test_connect_path_parameter(path_filter: object, path: str | None, expected: bool) -> None:
    tree = scopes(connect={"params": {"path": path_filter}})
    assert allows(tree, "connect", WEB, path=path) is expected


def test_connect_without_a_path_filter_ignores_the_path() -> None:
    assert allows(scopes(connect=True), "connect", SSH, path=None)
    assert allows(scopes(connect={"params": {}}), "connect", WEB, path="/anything")


def test_connect_path_and_filters_both_apply() -> None:
    tree = scopes(connect={"filters": {"name": "web"}, "params": {"path": {"regex": "/api/.*"}}})
    assert allows(tree, "connect", WEB, path="/api/v1")
    assert not allows(tree, "connect", SSH, path="/api/v1")
    assert not allows(tree, "connect", WEB, path="/")


def test_list_ignores_connect_path_filters() -> None:
    tree = {"OR": [scopes(connect={"params": {"path": "/a"}}), scopes(list=True)]}
    assert Boundary.parse(tree).select(WEB) == WEB


# ---- AND / OR at tree level -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("tree", "web", "ssh"), [
    ({"OR": [{"projects": ["p1"]}, {"projects": ["p2"]}]}, True, True),
    ({"AND": [{"projects": ["p1", "p2"]}, scopes(connect={"filters": {"protocol": "tcp"}})]}, False, True),
    ({"AND": [{"workspaces": ["w1"]}, {"projects": ["p1"]}]}, True, False),
    ({"OR": [{"AND": [{"projects": ["p1"]}, scopes(connect=True)]}, {"projects": ["p2"]}]}, True, True),
    ({"OR": []}, False, False),
    ({"AND": [{"OR": []}, {"projects": ["p1"]}]}, False, False),
])
def test_tree_joins(tree: dict[str, Any], web: bool, ssh: bool) -> None:
    assert allows(tree, "connect", WEB) is web
    assert allows(tree, "connect", SSH) is ssh


# ---- list: select projections ---------------------------------------------------------------------------------

def test_select_projects_the_true_fields() -> None:
    boundary = Boundary.parse(scopes(list={"select": {"id": True, "name": True, "labels": False}}))
    assert boundary.select(WEB) == {"id": "t1", "name": "web"}


def test_select_absent_shows_every_field_and_invisible_is_none() -> None:
    boundary = Boundary.parse(scopes(list={"filters": {"name": "web"}}))
    assert boundary.select(WEB) == WEB
    assert boundary.select(SSH) is None
    assert Boundary.parse(scopes(connect=True)).select(WEB) is None


def test_select_under_or_is_the_union_of_the_visible_leaves() -> None:
    tree = {"OR": [
        scopes(list={"select": {"id": True}}),
        scopes(list={"filters": {"name": "web"}, "select": {"name": True}}),
        scopes(list={"filters": {"name": "nope"}, "select": {"labels": True}}),
    ]}
    boundary = Boundary.parse(tree)
    assert boundary.select(WEB) == {"id": "t1", "name": "web"}
    assert boundary.select(SSH) == {"id": "t2"}


def test_select_under_or_with_an_unprojected_leaf_shows_everything() -> None:
    boundary = Boundary.parse({"OR": [scopes(list={"select": {"id": True}}), {"projects": ["p1"]}]})
    assert boundary.select(WEB) == WEB
    assert boundary.select(SSH) == {"id": "t2"}


def test_select_under_and_is_the_intersection() -> None:
    tree = {"AND": [
        scopes(list={"select": {"id": True, "name": True}}),
        scopes(list={"select": {"name": True, "labels": True}}),
        {"projects": ["p1", "p2"]},
    ]}
    assert Boundary.parse(tree).select(WEB) == {"name": "web"}


def test_select_under_and_hides_what_one_side_hides() -> None:
    tree = {"AND": [scopes(list=True), scopes(list={"filters": {"name": "web"}})]}
    assert Boundary.parse(tree).select(SSH) is None


# ---- malformed trees ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("tree", "where"), [
    ([], r"resources\.tunnels: a node must be an object"),
    ({}, r"resources\.tunnels: a leaf needs"),
    ({"projects": ["p"], "workspaces": ["w"]}, "mutually exclusive"),
    ({"projects": "p1"}, r"resources\.tunnels\.projects: must be a list"),
    ({"projects": [1]}, r"\.projects: must be a list of ids"),
    ({"clusters": ["c"]}, "unknown key 'clusters'"),
    ({"AND": []}, r"resources\.tunnels\.AND: an empty AND"),
    ({"AND": {"projects": ["p"]}}, "takes a list"),
    ({"AND": [{"projects": ["p"]}], "projects": ["p"]}, "takes no other key"),
    ({"AND": [{"projects": ["p"]}], "OR": []}, "takes no other key"),
    ({"OR": [{"projects": ["p"]}, {"bad": 1}]}, r"resources\.tunnels\.OR\[1\]: unknown key 'bad'"),
    ({"OR": [{"AND": [{}]}]}, r"resources\.tunnels\.OR\[0\]\.AND\[0\]: a leaf needs"),
    ({"scopes": []}, r"\.scopes: scopes must be an object"),
    ({"scopes": {"tunnels": []}}, r"\.scopes\.tunnels: must be an object"),
    ({"scopes": {"tunnels": {"delete": True}}}, "unknown scope 'delete'"),
    (scopes(connect="yes"), r"\.connect: use true, false or an object"),
    (scopes(connect={"select": {}}), r"\.connect: unknown key 'select'"),
    (scopes(create={"params": {}}), r"\.create: unknown key 'params'"),
    (scopes(list={"params": {}}), r"\.list: unknown key 'params'"),
    (scopes(list={"filters": {"nope": 1}}), r"\.list\.filters: unknown filter field 'nope'"),
    (scopes(list={"filters": {"name": {"regex": "("}}}), "invalid regular expression"),
    (scopes(list={"filters": {"name": {"bogus": "x"}}}), r"\.list\.filters"),
    (scopes(list={"filters": []}), r"\.list\.filters: a filter must be"),
    (scopes(list={"select": ["id"]}), r"\.list\.select: must be an object"),
    (scopes(list={"select": {"nope": True}}), r"\.list\.select: unknown field 'nope'"),
    (scopes(list={"select": {"id": 1}}), r"\.list\.select\.id: must be true or false"),
    (scopes(connect={"params": []}), r"\.connect\.params: must be an object"),
    (scopes(connect={"params": {"query": "x"}}), "unknown parameter 'query'"),
    (scopes(connect={"params": {"path": 3}}), r"\.connect\.params\.path: use a string"),
    (scopes(connect={"params": {"path": {"regex": "["}}}), "invalid regular expression"),
    (scopes(connect={"params": {"path": {"regex": r"/(a)\1"}}}), r"invalid regular expression \(RE2 syntax"),
    (scopes(list={"filters": {"name": {"regex": "(?<=x)web"}}}), "invalid regular expression"),
])
def test_malformed_trees_are_refused_with_their_path(tree: object, where: str) -> None:
    with pytest.raises(ResourceError, match=where):
        Boundary.parse(tree)
    boundary = Boundary.from_resources({"tunnels": tree})
    assert boundary.problem is not None
    assert not any(boundary.allows(scope, WEB, project_id="p1", workspace_id="w1") for scope in SCOPES)
    assert boundary.select(WEB) is None


def test_depth_and_size_are_bounded() -> None:
    tree: dict[str, Any] = {"projects": ["p1"]}
    for _ in range(MAX_DEPTH + 1):
        tree = {"AND": [tree]}
    with pytest.raises(ResourceError, match="nested more than"):
        Boundary.parse(tree)
    with pytest.raises(ResourceError, match="more than 1024 nodes"):
        Boundary.parse({"OR": [{"projects": ["p"]}] * 1100})


# ---- claims → boundary ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("claims", [{}, {"resources": None}, {"sub": "x", "metadata": {"engine": "e"}}])
def test_no_resources_claim_is_everything(claims: dict[str, Any]) -> None:
    boundary = Boundary.from_claims(claims)
    assert boundary.unrestricted
    assert boundary.to_resources() is None
    assert all(boundary.allows(scope, SSH, path=None) for scope in SCOPES)


@pytest.mark.parametrize("claims", [
    {"resources": {}},
    {"resources": []},
    {"resources": "all"},
    {"resources": {"turn": {}}},
    {"resources": {"tunnels": None}},
    {"resources": {"tunnels": {}}},
    {"tunnelsGrants": [{"projects": ["p1"]}]},
    {"metadata": {"scopes": ["x"]}},
])
def test_unreadable_or_legacy_resources_are_nothing(claims: dict[str, Any]) -> None:
    boundary = Boundary.from_claims(claims)
    assert boundary.problem is not None
    assert not any(boundary.allows(scope, WEB) for scope in SCOPES)


def test_to_resources_round_trips() -> None:
    tree = {"projects": ["p1"], **scopes(list=True)}
    again = Boundary.from_resources(Boundary.parse(tree).to_resources())
    assert again.tree == tree


def test_unknown_scope_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown scope"):
        Boundary.everything().allows("delete", WEB)  # type: ignore[arg-type]


# ---- derivation -----------------------------------------------------------------------------------------------

def test_intersect_with_everything_is_identity_and_with_nothing_is_nothing() -> None:
    some = Boundary.parse({"projects": ["p1"]})
    assert some.intersect(Boundary.everything()) is some
    assert Boundary.everything().intersect(some) is some
    assert not some.intersect(Boundary.nothing("x")).allows("list", WEB)


def test_intersect_flattens_so_derivation_chains_stay_shallow() -> None:
    boundary = Boundary.parse({"projects": ["p1"]})
    for _ in range(MAX_DEPTH * 2):
        boundary = boundary.intersect(Boundary.parse(scopes(connect=True, list=True)))
    again = Boundary.parse(boundary.tree)
    assert again.allows("connect", WEB)
    assert not again.allows("create", WEB, project_id="p1")


def test_engine_derived_and_shape_is_understood() -> None:
    """api/tokens.py derives `{"AND": [parent, requested]}`."""
    parent = {"projects": ["p1", "p2"]}
    requested = scopes(list={"select": {"name": True}})
    boundary = Boundary.from_claims({"resources": {"tunnels": {"AND": [parent, requested]}}})
    assert boundary.select(WEB) == {"name": "web"}
    assert not boundary.allows("connect", WEB)


# ---- permissions and grants -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    (None, None),
    ([], frozenset()),
    (["a", "b"], frozenset({"a", "b"})),
    ("tunnels.resources.read-only", frozenset()),
    ([1], frozenset()),
])
def test_parse_permissions(value: object, expected: frozenset[str] | None) -> None:
    assert parse_permissions(value) == expected


@pytest.mark.parametrize("scope", SCOPES)
def test_each_scope_needs_its_permission(scope: str) -> None:
    only = Grant.of([PERMISSION_OF[scope]], None)  # type: ignore[index]
    for other in SCOPES:
        assert only.can(other, WEB, project_id="p1") is (other == scope)  # type: ignore[arg-type]


def test_grant_needs_permission_and_boundary() -> None:
    grant = Grant.of(None, {"tunnels": scopes(connect={"filters": {"name": "web"}})})
    assert grant.can("connect", WEB)
    assert not grant.can("connect", SSH)
    assert not Grant.of(["tunnels.resources.read-only"], None).can("connect", WEB)
    assert Grant.of(["tunnels.resources.read-only"], None).select(WEB) == WEB
    assert Grant.of([], None).select(WEB) is None


def test_grant_from_plain_claims_is_the_shared_everything() -> None:
    assert Grant.from_claims({"sub": "x", "type": "auth"}) is Grant.from_claims({})
    assert Grant.from_claims({"permissions": []}).permissions == frozenset()


def test_grant_intersect() -> None:
    a = Grant.of(["tunnels.streams.create-delete", "tunnels.resources.read-only"], {"tunnels": {"projects": ["p1"]}})
    b = Grant.of(["tunnels.resources.read-only"], None)
    both = a.intersect(b)
    assert both.permissions == frozenset({"tunnels.resources.read-only"})
    assert both.can("list", WEB)
    assert not both.can("connect", WEB)
    assert not both.can("list", SSH)
    assert Grant().intersect(a) is a
    assert a.intersect(Grant()) is a
    assert Grant.of(None, None).intersect(b).permissions == b.permissions


# ---- properties -----------------------------------------------------------------------------------------------

NAMES = ["web", "ssh", "api"]
PROJECTS = ["p1", "p2", "p3"]
WORKSPACES = ["w1", "w2"]
PATHS = ["/", "/api", "/api/v1", "/public/x", "/../x"]
FIELDS = ["id", "name", "protocol", "labels", "port"]

strings = st.sampled_from(NAMES)
string_conditions = st.one_of(
    strings, st.builds(lambda s: {"exact": s}, strings),
    st.builds(lambda xs: {"oneof": xs}, st.lists(strings, max_size=3)),
    st.builds(lambda s: {"regex": s}, st.sampled_from(["w.*", "a.i", ".*", "ssh|web"])),
)
leaf_filters = st.one_of(
    st.builds(lambda c: {"name": c}, string_conditions),
    st.builds(lambda p: {"protocol": p}, st.sampled_from(["http", "tcp"])),
    st.builds(lambda v: {"publish": v}, st.booleans()),
    st.builds(lambda v: {"labels": {"env": v}}, st.none() | st.sampled_from(["prod", "dev"])),
)
filters = st.recursive(leaf_filters, lambda inner: st.one_of(
    st.builds(lambda xs: {"AND": xs}, st.lists(inner, max_size=3)),
    st.builds(lambda xs: {"OR": xs}, st.lists(inner, max_size=3)),
), max_leaves=4)
# Mostly grants, so that the properties below are rarely vacuous.
rule = st.one_of(st.just(True), st.just(True), st.booleans(), st.builds(lambda f: {"filters": f}, filters))
connect_rule = st.one_of(rule, st.builds(
    lambda f, p: {"filters": f, "params": {"path": p}}, filters,
    st.sampled_from(["/api", {"regex": "/api.*"}, {"oneof": ["/", "/public/x"]}])))
list_rule = st.one_of(rule, st.builds(
    lambda f, s: {"filters": f, "select": s}, filters,
    st.dictionaries(st.sampled_from(FIELDS), st.booleans(), max_size=4)))
scope_sets = st.fixed_dictionaries({}, optional={"create": rule, "connect": connect_rule, "list": list_rule})
ANY = st.lists(st.sampled_from(PROJECTS), min_size=1, max_size=3)


@st.composite
def leaves(draw: st.DrawFn) -> dict[str, Any]:
    leaf: dict[str, Any] = {}
    target = draw(st.sampled_from(["none", "projects", "workspaces"]))
    if target == "projects":
        leaf["projects"] = draw(ANY)
    elif target == "workspaces":
        leaf["workspaces"] = draw(st.lists(st.sampled_from(WORKSPACES), min_size=1, max_size=2))
    if target == "none" or draw(st.booleans()):
        leaf["scopes"] = {"tunnels": draw(scope_sets)}
    return leaf


trees = st.recursive(leaves(), lambda inner: st.one_of(
    st.builds(lambda xs: {"AND": xs}, st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda xs: {"OR": xs}, st.lists(inner, max_size=3)),
), max_leaves=6)
tunnels = st.fixed_dictionaries({
    "id": st.sampled_from(["t1", "t2"]), "name": strings, "protocol": st.sampled_from(["http", "tcp"]),
    "publish": st.booleans(), "port": st.none() | st.just(2222),
    "labels": st.dictionaries(st.just("env"), st.sampled_from(["prod", "dev"]), max_size=1),
    "project_id": st.sampled_from(PROJECTS), "workspace_id": st.sampled_from(WORKSPACES),
})
requests = st.tuples(st.sampled_from(SCOPES), st.none() | st.sampled_from(PATHS))


@settings(max_examples=300, deadline=None)
@given(a=trees, b=trees, tunnel=tunnels, request=requests)
def test_intersection_allows_exactly_what_both_allow(a: object, b: object, tunnel: dict[str, Any],
                                                     request: tuple[Any, str | None]) -> None:
    scope, path = request
    left, right = Boundary.parse(a), Boundary.parse(b)
    both = left.intersect(right)
    kw: dict[str, Any] = {"project_id": tunnel["project_id"], "workspace_id": tunnel["workspace_id"], "path": path}
    assert both.allows(scope, tunnel, **kw) == (left.allows(scope, tunnel, **kw) and right.allows(scope, tunnel, **kw))
    # The derived claim, read back as a token would carry it, means the same.
    assert Boundary.from_resources(both.to_resources()).allows(scope, tunnel, **kw) == both.allows(scope, tunnel, **kw)


@settings(max_examples=300, deadline=None)
@given(a=trees, b=trees, tunnel=tunnels)
def test_intersection_shows_only_fields_both_show(a: object, b: object, tunnel: dict[str, Any]) -> None:
    left, right = Boundary.parse(a), Boundary.parse(b)
    shown, one, other = left.intersect(right).select(tunnel), left.select(tunnel), right.select(tunnel)
    if one is None or other is None:
        assert shown is None
    else:
        assert shown == {key: value for key, value in tunnel.items() if key in one and key in other}


@settings(max_examples=200, deadline=None)
@given(a=trees, b=trees, tunnel=tunnels, request=requests)
def test_or_allows_what_either_allows(a: object, b: object, tunnel: dict[str, Any],
                                      request: tuple[Any, str | None]) -> None:
    scope, path = request
    either = Boundary.parse({"OR": [a, b]})
    expected = Boundary.parse(a).allows(scope, tunnel, path=path) or Boundary.parse(b).allows(scope, tunnel, path=path)
    assert either.allows(scope, tunnel, path=path) == expected


@settings(max_examples=100, deadline=None)
@given(tunnel=tunnels, request=requests)
def test_no_claim_allows_everything(tunnel: dict[str, Any], request: tuple[Any, str | None]) -> None:
    scope, path = request
    assert Boundary.from_claims({}).allows(scope, tunnel, path=path)
    assert Boundary.from_claims({}).select(tunnel) == tunnel


def _spoil(tree: Any, how: int) -> Any:
    """A malformed variant of a valid tree, at its root or inside its first child."""
    if isinstance(tree, dict) and ("AND" in tree or "OR" in tree):
        key = "AND" if "AND" in tree else "OR"
        if tree[key] and how % 2:
            return {key: [_spoil(tree[key][0], how // 2), *tree[key][1:]]}
    spoilers = [
        lambda t: {**t, "unknown": 1},
        lambda t: {**t, "projects": ["p1"], "workspaces": ["w1"]},
        lambda t: {"AND": []},
        lambda t: [t],
        lambda t: {"OR": t},
        lambda t: {"scopes": {"tunnels": {"list": {"select": ["id"]}}}},
    ]
    return spoilers[how % len(spoilers)](tree)


@settings(max_examples=200, deadline=None)
@given(tree=trees, how=st.integers(0, 63), tunnel=tunnels, request=requests)
def test_malformed_trees_grant_nothing(tree: Any, how: int, tunnel: dict[str, Any],
                                       request: tuple[Any, str | None]) -> None:
    scope, path = request
    boundary = Boundary.from_claims({"resources": {"tunnels": _spoil(tree, how)}})
    assert boundary.problem is not None
    assert not boundary.allows(scope, tunnel, path=path)
    assert boundary.select(tunnel) is None
    assert not Boundary.parse(tree).intersect(boundary).allows(scope, tunnel, path=path)
