"""The access matrix on one running engine: for each token kind (ce, auth, pat, app) and each shape of
grant (§3.2: exact, oneof and regex filters, labels with a value or any value, AND/OR in filters and in
the tree, project and workspace targets, a connect path, a list projection, permissions), what the token
may create, connect to, list and watch — every denial asserted, and nothing listed, by the API or through
signaling, that the token may not see. Then revocation of PATs and application credentials.

The fixture tunnels are created once by an unrestricted engine token in the default project, plus two in
a second project by a PAT of that project. A project credential (pat, app) never sees or reaches another
project's tunnels, whatever its grant; engine-secret tokens (ce, auth) have no project, so only their
`resources` keep them out. Each row's expectations are written for a token without a project; for pat and
app the other project's tunnels are taken out (`expected`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio

from portway.agent import ControlChannel, Tunnel
from portway.engine.access.mint import mint_app_token
from portway.engine.auth import mint_token
from portway.errors import EngineRejected
from portway.wire.codes import ErrorCode
from tests.conftest import UNIT_S, EchoServer, EngineHandle, http_get, running_engine
from tests.integration.test_signaling import SseReader

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.store]  # store: on SQLite and PostgreSQL

WAIT_S = 10 * UNIT_S
READ = "tunnels.resources.read-only"
CONNECT = "tunnels.streams.create-delete"
CREATE = "tunnels.tunnels.create-delete"
KINDS = ["ce", "auth", "pat", "app"]
PROJECT_KINDS = {"pat", "app"}

# name → properties; every http tunnel requires a token (token_auth), so a request is a connect check.
HOME_TUNNELS: dict[str, dict[str, Any]] = {
    "web-prod": {"protocol": "http", "token_auth": True, "labels": {"env": "prod", "team": "web"}},
    "web-dev": {"protocol": "http", "token_auth": True, "labels": {"env": "dev", "team": "web"}},
    "db": {"publish": False, "labels": {"env": "prod"}},
    "cache": {"publish": False, "labels": {"env": "dev"}},
}
OTHER_TUNNELS: dict[str, dict[str, Any]] = {
    "other-web": {"protocol": "http", "token_auth": True, "labels": {"env": "prod", "team": "web"}},
    "other-db": {"publish": False, "labels": {"env": "prod"}},
}
HOME, OTHER = frozenset(HOME_TUNNELS), frozenset(OTHER_TUNNELS)
ALL = HOME | OTHER
# Tunnels an unrestricted token creates while a row's watch is open; `Case.events` names those it must see.
EVENT_PROBES: dict[str, dict[str, Any]] = {
    "web-new": {"protocol": "http", "token_auth": True, "labels": {"env": "prod", "team": "web"}},
    "db-new": {"publish": False, "labels": {"env": "dev"}},
}


@dataclass(frozen=True)
class Case:
    """One row: a grant and what it allows. Names are fixture tunnels (connect: a request to `/` or a
    private dial); `create` lists (properties, allowed); `paths` lists extra (tunnel, path, allowed)."""

    id: str
    tree: object = None  # resources.tunnels; None = no resources claim
    permissions: list[str] | None = None
    list: frozenset[str] = ALL
    connect: frozenset[str] = ALL
    create: tuple[tuple[dict[str, Any], bool], ...] = (({"publish": False}, True),)
    events: frozenset[str] = frozenset(EVENT_PROBES)
    select: frozenset[str] | None = None  # the fields a listed tunnel shows (None: all)
    paths: tuple[tuple[str, str, bool], ...] = ()


def every(filters: object, create: object = False) -> dict[str, Any]:
    """A leaf granting connect and list on `filters` (create: a rule of its own)."""
    return {"scopes": {"tunnels": {"create": create, "connect": {"filters": filters}, "list": {"filters": filters}}}}


def scopes(**rules: object) -> dict[str, Any]:
    return {"scopes": {"tunnels": rules}}


NONE: frozenset[str] = frozenset()
DENIED_CREATE = (({"publish": False}, False),)

# Project and workspace ids are only known once the engine runs: "$home", "$other", "$home-ws" stand for them.
CASES = [
    Case("no-claims"),
    Case("exact-name", every({"name": "web-prod"}, create={"filters": {"name": "mine"}}),
         list=frozenset({"web-prod"}), connect=frozenset({"web-prod"}), events=NONE,
         create=(({"publish": False, "name": "mine"}, True), ({"publish": False, "name": "yours"}, False),
                 ({"publish": False}, False))),
    Case("exact-object", every({"name": {"exact": "db"}}),
         list=frozenset({"db"}), connect=frozenset({"db"}), events=NONE, create=DENIED_CREATE),
    Case("oneof", every({"name": {"oneof": ["web-prod", "cache", "other-db", "db-new"]}},
                        create={"filters": {"name": {"oneof": ["a", "b"]}}}),
         list=frozenset({"web-prod", "cache", "other-db"}), connect=frozenset({"web-prod", "cache", "other-db"}),
         events=frozenset({"db-new"}), create=(({"publish": False, "name": "b"}, True),
                                                ({"publish": False, "name": "c"}, False))),
    Case("regex", every({"name": {"regex": "web-.*"}}, create={"filters": {"name": {"regex": "web-.*"}}}),
         list=frozenset({"web-prod", "web-dev"}), connect=frozenset({"web-prod", "web-dev"}),
         events=frozenset({"web-new"}),
         create=(({"publish": False, "name": "web-x"}, True), ({"publish": False, "name": "db-x"}, False),
                 ({"publish": False, "name": "my-web-x"}, False))),  # the regex matches in full
    Case("label-value", every({"labels": {"env": "prod"}}, create={"filters": {"labels": {"env": "dev"}}}),
         list=frozenset({"web-prod", "db", "other-web", "other-db"}),
         connect=frozenset({"web-prod", "db", "other-web", "other-db"}), events=frozenset({"web-new"}),
         create=(({"publish": False, "labels": {"env": "dev"}}, True),
                 ({"publish": False, "labels": {"env": "prod"}}, False), ({"publish": False}, False))),
    Case("label-any", every({"labels": {"team": None}}, create={"filters": {"labels": {"team": None}}}),
         list=frozenset({"web-prod", "web-dev", "other-web"}), connect=frozenset({"web-prod", "web-dev", "other-web"}),
         events=frozenset({"web-new"}),
         create=(({"publish": False, "labels": {"team": "x"}}, True), ({"publish": False}, False))),
    Case("filter-and-or", every({"OR": [{"name": "db"}, {"AND": [{"labels": {"env": "dev"}}, {"protocol": "http"}]}]}),
         list=frozenset({"db", "web-dev"}), connect=frozenset({"db", "web-dev"}), events=NONE,
         create=DENIED_CREATE),
    Case("tree-or", {"OR": [scopes(list={"filters": {"labels": {"env": "prod"}}}),
                            scopes(connect={"filters": {"name": "cache"}}),
                            scopes(create=True)]},
         list=frozenset({"web-prod", "db", "other-web", "other-db"}), connect=frozenset({"cache"}),
         events=frozenset({"web-new"})),
    Case("tree-and", {"AND": [scopes(create={"filters": {"labels": {"env": "prod"}}}, connect=True,
                                     list={"filters": {"labels": {"env": "prod"}}}),
                              scopes(create={"filters": {"publish": False}}, connect={"filters": {"protocol": "http"}},
                                     list=True)]},
         list=frozenset({"web-prod", "db", "other-web", "other-db"}), connect=frozenset({"web-prod", "web-dev",
                                                                                       "other-web"}),
         events=frozenset({"web-new"}),
         create=(({"publish": False, "labels": {"env": "prod"}}, True),
                 ({"publish": False, "labels": {"env": "dev"}}, False),
                 ({"protocol": "http", "labels": {"env": "prod"}}, False))),
    Case("project-home", {"projects": ["$home"]}, list=HOME, connect=HOME),
    Case("project-other", {"projects": ["$other"]}, list=OTHER, connect=OTHER, events=NONE,
         create=DENIED_CREATE),  # a creation happens in the creator's (home) project
    Case("workspace-home", {"workspaces": ["$home-ws"]}, list=HOME, connect=HOME),
    Case("connect-path", scopes(connect={"filters": {"name": {"oneof": ["web-prod", "db"]}},
                                         "params": {"path": {"regex": "/public/.*"}}}, list=True),
         connect=NONE, create=DENIED_CREATE,
         paths=(("web-prod", "/public/page", True), ("web-prod", "/public/a/b?q=/x", True),
                ("web-prod", "/public/../admin", False), ("web-prod", "/public/%2e%2e/admin", False),
                ("web-prod", "/private", False), ("web-dev", "/public/page", False))),
    Case("list-select", scopes(list={"select": {"name": True, "labels": True, "protocol": False}}),
         connect=NONE, create=DENIED_CREATE, select=frozenset({"id", "name", "labels"})),
    Case("list-select-or", {"OR": [scopes(list={"filters": {"labels": {"env": "prod"}}, "select": {"name": True}}),
                                   scopes(list={"filters": {"name": "web-prod"}, "select": {"labels": True}})]},
         list=frozenset({"web-prod", "db", "other-web", "other-db"}), connect=NONE, create=DENIED_CREATE,
         events=frozenset({"web-new"}), select=frozenset({"id", "name"})),  # web-prod: name + labels (below)
    Case("permission-list", permissions=[READ], connect=NONE, create=DENIED_CREATE),
    Case("permission-connect-create", permissions=[CONNECT, CREATE], list=NONE, events=NONE),
    Case("permission-none", permissions=[], list=NONE, connect=NONE, events=NONE, create=DENIED_CREATE),
    Case("nothing", {"OR": []}, list=NONE, connect=NONE, events=NONE, create=DENIED_CREATE),
]
# Fields shown beyond `Case.select` for one tunnel (a union under OR).
EXTRA_FIELDS = {("list-select-or", "web-prod"): {"labels"}}


def expected(names: frozenset[str], kind: str) -> frozenset[str]:
    """What a token of `kind` sees of `names`: a project credential never reaches another project."""
    return names - OTHER if kind in PROJECT_KINDS else names


# ---- the engine and its fixture tunnels ---------------------------------------------------------------------------


@dataclass
class World:
    engine: EngineHandle
    root: str  # an unrestricted engine token, operator too
    home: str = ""
    home_ws: str = ""
    other: str = ""
    ids: dict[str, str] = field(default_factory=dict)  # fixture tunnel name → id
    hostnames: dict[str, str] = field(default_factory=dict)
    owner: ControlChannel | None = None
    serial: int = 0

    def api(self, token: str | None, *, base: str = "/api") -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=f"https://127.0.0.1:{self.engine.port}{base}", headers=headers,
                                 verify=self.engine.visitor_tls(), timeout=WAIT_S)

    def unique(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.serial}"

    def resolve(self, tree: object) -> object:
        """`tree` with the placeholders for project and workspace ids replaced."""
        text = json.dumps(tree).replace('"$home-ws"', json.dumps(self.home_ws))
        return json.loads(text.replace('"$home"', json.dumps(self.home)).replace('"$other"', json.dumps(self.other)))

    async def admin(self, method: str, path: str, body: object = None) -> Any:
        async with self.api(self.root, base="/api/admin") as client:
            answer = await client.request(method, path, json=body)
        assert answer.status_code in (200, 201), answer.text
        return answer.json()

    async def issue(self, kind: str, permissions: list[str] | None, tree: object, *,
                    project: str | None = None) -> str:
        """A token of `kind` holding `permissions` and `resources.tunnels` = `tree` (None: no claim)."""
        resources = None if tree is None else {"tunnels": self.resolve(tree)}
        name = self.unique(kind)
        if kind == "ce":
            extra: dict[str, object] = {"permissions": permissions}
            if resources is not None:
                extra["resources"] = resources
            return mint_token(self.engine.secret, subject=name, ttl_s=600, extra=extra)
        if kind == "auth":  # derived from an unrestricted token of its own subject (not root's: see /clients)
            parent = mint_token(self.engine.secret, subject=name, ttl_s=600)
            async with self.api(parent) as client:
                answer = await client.post("/tokens", json={"expires_in": 600, "permissions": permissions,
                                                            "resources": resources})
            assert answer.status_code == 200, answer.text
            return str(answer.json()["token"])
        if kind == "pat":
            created = await self.admin("POST", "/pats", {
                "name": name, "project": project or self.home, "subject": name, "permissions": permissions,
                "resources": resources, "expires_in": 600})
            return str(created["token"])
        assert kind == "app"
        app = await self.admin("POST", "/apps", {"name": name, "project": project or self.home})
        target = {"project_id": project or self.home} if resources is None else {"resources": resources}
        return mint_app_token(app["credential"]["client_id"], app["secret"], expires_in=600,
                              permissions=permissions, **target)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def serve(control: ControlChannel, tunnels: dict[str, dict[str, Any]], world: World, web_port: int,
                echo_port: int) -> AsyncIterator[None]:
    forwarding: list[asyncio.Future[None]] = []
    try:
        for name, props in tunnels.items():
            tunnel = await control.create_tunnel(name=name, **props)
            world.ids[name] = tunnel.id
            if tunnel.properties.hostname:
                world.hostnames[name] = tunnel.properties.hostname
            port = web_port if props.get("protocol") == "http" else echo_port
            forwarding.append(asyncio.ensure_future(tunnel.forward_to("127.0.0.1", port)))
        yield
    finally:
        for task in forwarding:
            task.cancel()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, module_store_database: str | None) -> AsyncIterator[World]:
    """One engine for the module (per store backend: its PostgreSQL database serves all the module's tests)."""
    async with running_engine(tmp_path_factory.mktemp("matrix")) as engine, \
            EchoServer(http=True) as web, EchoServer() as echo:
        world = World(engine, mint_token(engine.secret, subject="root", ttl_s=3600, extra={"role": "operator"}))
        home = next(p for p in await world.admin("GET", "/projects") if p["name"] == "default")
        world.home, world.home_ws = home["id"], home["workspace_id"]
        await world.admin("POST", "/workspaces", {"name": "acme"})
        world.other = (await world.admin("POST", "/projects", {"name": "other", "workspace": "acme"}))["id"]
        owner = await engine.client(world.root).connect()
        stranger = await engine.client(await world.issue("pat", None, None, project=world.other)).connect()
        world.owner = owner
        try:
            async with serve(owner, HOME_TUNNELS, world, web.port, echo.port), \
                    serve(stranger, OTHER_TUNNELS, world, web.port, echo.port):
                yield world
        finally:
            await stranger.close()
            await owner.close()


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def rows() -> Iterator[Any]:
    for case in CASES:
        yield pytest.param(case, id=case.id)


# ---- the checks ---------------------------------------------------------------------------------------------------


async def request_status(world: World, name: str, path: str, token: str) -> int:
    hostname = world.hostnames[name]
    reader, writer = await world.engine.open_visitor(hostname)
    try:
        status, _ = await http_get(reader, writer, hostname, path, headers=f"Authorization: Bearer {token}\r\n")
    finally:
        writer.close()
    return status


async def dial_works(world: World, name: str, token: str, kind: str) -> bool:
    """A private dial: True when it echoes; False on the refusal the engine must give."""
    refusal: int | None = None
    try:
        stream = await world.engine.client(token).dial(name, zero_rtt=False)
    except EngineRejected as refused:
        refusal = refused.code
    if refusal is not None:
        hidden = kind in PROJECT_KINDS and name in OTHER  # another project's tunnel does not exist for it
        assert refusal == (ErrorCode.TUNNEL_NOT_FOUND if hidden else ErrorCode.UNAUTHORIZED)
        return False
    async with stream:
        stream.write(b"ping")
        await stream.drain()
        assert await asyncio.wait_for(stream.readexactly(4), WAIT_S) == b"ping"
    return True


async def connects(world: World, name: str, token: str, kind: str, path: str = "/") -> bool:
    if name in world.hostnames:
        status = await request_status(world, name, path, token)
        assert status in (200, 403), status
        return status == 200
    return await dial_works(world, name, token, kind)


def check_fields(case: Case, record: dict[str, Any], name: str) -> None:
    if case.select is not None:
        assert set(record) == case.select | EXTRA_FIELDS.get((case.id, name), set()), (name, record)
    else:
        assert {"id", "name", "labels", "protocol", "project_id"} <= set(record)


async def check_list(world: World, case: Case, kind: str, token: str) -> None:
    names = {tid: name for name, tid in world.ids.items()}
    async with world.api(token) as client:
        listed = (await client.get("/tunnels")).json()
        want = expected(case.list, kind)
        assert {names.get(t["id"], t["id"]) for t in listed} == want  # nothing else either
        for record in listed:
            check_fields(case, record, names[record["id"]])
        for name, tid in world.ids.items():
            one = await client.get(f"/tunnels/{tid}")
            assert one.status_code == (200 if name in want else 404), (name, one.text)
            if name in want:
                check_fields(case, one.json(), name)
        clients = (await client.get("/clients")).json()
        if not want:
            assert clients == []  # an agent is shown only through a tunnel one may list (or one's own)


@contextlib.asynccontextmanager
async def watch(world: World, token: str, params: dict[str, Any]) -> AsyncIterator[SseReader]:
    async with world.api(token) as client, \
            client.stream("GET", "/sse", params={"params": json.dumps(params)}) as response:
        assert response.status_code == 200, await response.aread()
        yield SseReader(response)


async def check_watch(world: World, case: Case, kind: str, token: str) -> None:
    names = {tid: name for name, tid in world.ids.items()}
    want = expected(case.list, kind)
    async with watch(world, token, {"events": ["tunnel.created"]}) as events:
        snapshot = (await events.next())["object"]
        assert {names.get(t["id"], t["id"]) for t in snapshot["tunnels"]} == want
        for record in snapshot["tunnels"]:
            check_fields(case, record, names[record["id"]])
        if not want:
            assert snapshot["clients"] == []
        # Unseen probes first: a seen one arriving after them proves they were skipped (one bus, in order).
        order = sorted(EVENT_PROBES, key=lambda probe: probe in case.events)
        assert world.owner is not None
        created: list[Tunnel] = []
        try:
            for probe in order:
                created.append(await world.owner.create_tunnel(name=probe, **EVENT_PROBES[probe]))
            by_id = {t.id: probe for t, probe in zip(created, order, strict=True)}
            seen = [await events.next() for _ in case.events]
            assert [by_id.get(e["object"]["id"]) for e in seen] == [p for p in order if p in case.events]
            for event in seen:
                check_fields(case, event["object"], by_id[event["object"]["id"]])
                for key in ("user_id", "workspace_id", "project_id"):  # the envelope tells no more than the object
                    if key not in event["object"]:
                        assert event[key] is None, (key, event)
            if not case.events:
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(events.next(), 0.3 * UNIT_S)
        finally:
            for tunnel in created:
                await tunnel.close()


async def check_create(world: World, case: Case, token: str) -> None:
    control = await world.engine.client(token).connect()
    try:
        for props, allowed in case.create:
            fields = {"name": world.unique("probe"), **props} if "name" not in props else props
            if allowed:
                tunnel = await control.create_tunnel(**fields)
                await tunnel.close()
            else:
                with pytest.raises(EngineRejected) as refused:
                    await control.create_tunnel(**fields)
                assert refused.value.code == ErrorCode.UNAUTHORIZED, (props, refused.value)
    finally:
        await control.close()


# ---- the matrix ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", rows())
async def test_access_matrix(world: World, kind: str, case: Case) -> None:
    token = await world.issue(kind, case.permissions, case.tree)
    for name in sorted(ALL):
        allowed = name in expected(case.connect, kind)
        assert await connects(world, name, token, kind) is allowed, f"connect {name}"
    for name, path, allowed in case.paths:
        assert await connects(world, name, token, kind, path) is allowed, f"connect {name} {path}"
    await check_list(world, case, kind, token)
    await check_watch(world, case, kind, token)
    await check_create(world, case, token)


@pytest.mark.parametrize("kind", ["ce", "pat"])
async def test_watch_and_list_filters_never_read_hidden_fields(world: World, kind: str) -> None:
    """A caller's own filter sees a tunnel as the caller may see it: filtering on a field `select` hides
    would otherwise tell, event by event, what the hidden field holds."""
    token = await world.issue(kind, None, scopes(list={"select": {"name": True}}))
    by_label = {"labels": {"env": "prod"}}
    async with world.api(token) as client:
        assert (await client.get("/tunnels", params={"params": json.dumps({"filters": by_label})})).json() == []
        named = (await client.get("/tunnels", params={"params": json.dumps({"filters": {"name": "db"}})})).json()
        assert named == [{"id": world.ids["db"], "name": "db"}]
    assert world.owner is not None
    async with watch(world, token, {"tunnels": {"OR": [by_label, {"name": "db-new"}]},
                                    "events": ["tunnel.created"]}) as events:
        snapshot = (await events.next())["object"]
        assert snapshot["tunnels"] == []  # no label is visible to match
        hidden = await world.owner.create_tunnel(name="web-new", **EVENT_PROBES["web-new"])  # env=prod
        shown = await world.owner.create_tunnel(name="db-new", **EVENT_PROBES["db-new"])
        try:
            event = await events.next()  # db-new (by its visible name); web-new was skipped before it
            assert event["object"] == {"id": shown.id, "name": "db-new"}
            assert (event["user_id"], event["workspace_id"], event["project_id"]) == (None, None, None)
        finally:
            await hidden.close()
            await shown.close()


# ---- revocation ---------------------------------------------------------------------------------------------------


async def revoke(world: World, kind: str, token: str) -> None:
    if kind == "pat":
        pats = await world.admin("GET", "/pats")
        pat = next(p for p in pats if p["token_sha256"] == hashlib.sha256(token.encode()).hexdigest())
        await world.admin("POST", f"/pats/{pat['id']}/revoke", {"reason": "test"})
    else:
        client_id = jwt.decode(token, options={"verify_signature": False})["clientId"]
        await world.admin("POST", f"/apps/{client_id}/revoke", {"reason": "test"})


async def refused_everywhere(world: World, token: str) -> None:
    with pytest.raises(EngineRejected) as refused:
        await world.engine.client(token).connect()
    assert refused.value.code == ErrorCode.UNAUTHORIZED
    with pytest.raises(EngineRejected) as refused:
        await world.engine.client(token).dial("db", zero_rtt=False)
    assert refused.value.code == ErrorCode.UNAUTHORIZED
    assert await request_status(world, "web-prod", "/", token) == 401
    async with world.api(token) as client:
        for answer in [await client.get("/tunnels"), await client.post("/tokens", json={}),
                       await client.get("/sse")]:
            assert answer.status_code == 401, answer.text


@pytest.mark.parametrize("kind", ["pat", "app"])
async def test_revocation_refuses_the_credential_and_what_was_derived_from_it(world: World, kind: str) -> None:
    token = await world.issue(kind, None, None)
    async with world.api(token) as client:
        derived = (await client.post("/tokens", json={"expires_in": 600})).json()["token"]
        assert (await client.get("/tunnels")).status_code == 200
    for usable in (token, derived):
        control = await world.engine.client(usable).connect()
        await control.close()
        assert await dial_works(world, "db", usable, kind)
        assert await request_status(world, "web-prod", "/", usable) == 200
    await revoke(world, kind, token)
    await refused_everywhere(world, token)
    await refused_everywhere(world, derived)
