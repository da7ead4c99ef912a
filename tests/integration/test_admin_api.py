"""The admin API through a running engine (real TLS, HTTP/1.1 and h2): operator-only access, round trips,
validation errors, async answers kept in order on a pipelined HTTP/1.1 connection and concurrent on h2,
and the OpenAPI document still valid with the admin paths in it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate as validate_spec

from portway.engine.auth import mint_token
from portway.engine.store import lookup_pat_by_hash, token_sha256
from tests.conftest import EngineHandle, running_engine

pytestmark = pytest.mark.store  # on SQLite and PostgreSQL (tests/conftest.py)


def operator_token(engine: EngineHandle, **claims: object) -> str:
    return mint_token(engine.secret, subject="root", ttl_s=600, extra=claims or {"role": "operator"})


@contextlib.asynccontextmanager
async def admin_api(engine: EngineHandle, token: str | None, *, http2: bool = False,
                    ) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{engine.port}/api/admin", verify=engine.visitor_tls(),
                                 http2=http2, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[EngineHandle]:
    async with running_engine(tmp_path) as handle:
        yield handle


@pytest.mark.parametrize("http2", [False, True])
async def test_round_trips_for_an_operator(engine: EngineHandle, http2: bool) -> None:
    async with admin_api(engine, operator_token(engine), http2=http2) as api:
        assert [w["name"] for w in (await api.get("/workspaces")).json()] == ["default"]
        created = await api.post("/workspaces", json={"name": "acme"})
        assert created.status_code == 201 and created.json()["name"] == "acme"
        if http2:
            assert created.http_version == "HTTP/2"
        project = (await api.post("/projects", json={"name": "web", "workspace": "acme"})).json()
        assert (await api.get(f"/projects/{project['id']}")).json() == project
        assert [p["name"] for p in (await api.get("/projects", params={"workspace": "acme"})).json()] == ["web"]

        pat = await api.post("/pats", json={"name": "ci", "project": "web", "permissions": ["admin"],
                                            "expires_in": 600})
        assert pat.status_code == 201
        token = pat.json()["token"]
        listed = (await api.get("/pats", params={"project": "web"})).json()
        assert [p["id"] for p in listed] == [pat.json()["pat"]["id"]]
        assert token not in json.dumps(listed) and listed[0]["token_sha256"] == token_sha256(token)
        async with admin_api(engine, token) as with_pat:  # a PAT with `admin` is an operator token
            assert (await with_pat.get("/workspaces")).status_code == 200
        assert engine.engine is not None and engine.engine.store is not None
        assert await lookup_pat_by_hash(engine.engine.store, token_sha256(token)) is not None

        app = (await api.post("/apps", json={"name": "backend", "project": "web"})).json()
        client_id = app["credential"]["client_id"]
        assert len(bytes.fromhex(app["secret"])) > 200
        assert app["secret"] not in (await api.get(f"/apps/{client_id}")).text
        assert [a["client_id"] for a in (await api.get("/apps")).json()] == [client_id]

        policy = await api.put("/projects/web/policy", json={"policy": {"allow_public": False}, "expected_version": 0})
        assert policy.status_code == 200 and policy.json()["version"] == 1
        assert policy.json()["created_by"] == "root"
        assert (await api.get("/projects/web/policy")).json()["policy"]["allow_public"] is False
        stale = await api.put("/projects/web/policy", json={"policy": {}, "expected_version": 0})
        assert stale.status_code == 409 and "version 1" in stale.json()["error"]
        assert len((await api.get("/projects/web/policy/history")).json()) == 1

        busy = await api.delete("/projects/web")
        assert busy.status_code == 409 and "live credential" in busy.json()["error"]
        revoked = await api.post(f"/pats/{pat.json()['pat']['id']}/revoke", json={"reason": "rotated"})
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
        assert (await api.post(f"/apps/{client_id}/revoke")).json()["revoked_at"]
        log = (await api.get("/revocations", params={"project": "web"})).json()
        assert [(r["kind"], r["reason"]) for r in log] == [("pat", "rotated"), ("app", None)]
        assert (await api.delete("/projects/web")).json() == {"deleted": "web"}
        assert (await api.delete("/workspaces/acme")).status_code == 200
        assert (await api.get("/workspaces/acme")).status_code == 404


async def test_only_operators(engine: EngineHandle) -> None:
    async with admin_api(engine, None) as anonymous:
        missing = await anonymous.get("/workspaces")
        assert missing.status_code == 401 and "error" in missing.json()
    async with admin_api(engine, engine.token()) as plain:
        refused = await plain.get("/workspaces")
        assert refused.status_code == 403 and "operator" in refused.json()["error"]
        assert (await plain.post("/workspaces", json={"name": "x"})).status_code == 403
    narrow = operator_token(engine, permissions=["tunnels.resources.read-only"])
    async with admin_api(engine, narrow) as not_admin:
        assert (await not_admin.get("/pats")).status_code == 403
    async with admin_api(engine, operator_token(engine, permissions=["admin"])) as admin:
        assert (await admin.get("/pats")).status_code == 200
    async with admin_api(engine, "not-a-token") as bad:
        assert (await bad.get("/workspaces")).status_code == 401


async def test_validation_errors(engine: EngineHandle) -> None:
    async with admin_api(engine, operator_token(engine)) as api:
        cases = [
            (api.post("/workspaces", json={"name": "Bad Name"}), 400, "name"),
            (api.post("/workspaces", json={"name": "ok", "extra": 1}), 400, "extra"),
            (api.post("/workspaces", content=b"{not json"), 400, "body"),
            (api.post("/workspaces", json={"name": "default"}), 409, "exists"),
            (api.post("/projects", json={"name": "p", "workspace": "nowhere"}), 404, "nowhere"),
            (api.post("/pats", json={"name": "ci", "permissions": ["Not Valid"]}), 400, "permission"),
            (api.post("/pats", json={"name": "ci", "expires_in": 0}), 400, "expires_in"),
            (api.post("/pats", json={"name": "ci", "resources": {"x": 1}}), 400, "resources"),
            (api.post("/pats/pat_nope/revoke"), 404, "pat_nope"),
            (api.get("/apps/app_nope"), 404, "app_nope"),
            (api.put("/projects/default/policy", json={"policy": {"allowed_countries": ["France"]}}), 400, "alpha-2"),
            (api.put("/projects/default/policy", json={"policy": {"min_tls_version": "1.0"}}), 400, "min_tls"),
            (api.get("/projects/nope/policy"), 404, "nope"),
            (api.delete("/workspaces/default"), 409, "default"),
            (api.patch("/workspaces"), 405, "use"),
        ]
        for request, status, fragment in cases:
            got = await request
            assert got.status_code == status, (got.request.url, got.text)
            assert fragment in got.json()["error"], got.text


async def test_pipelined_http1_answers_stay_in_order(engine: EngineHandle) -> None:
    """Async (admin) and immediate (health) answers on one pipelined connection come back in request order."""
    token = operator_token(engine)
    body = json.dumps({"name": "piped"}).encode()
    requests = [
        b"POST /api/admin/workspaces HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (token.encode(), len(body), body),
        b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET /api/admin/workspaces HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n\r\n" % token.encode(),
        b"GET /api/admin/workspaces/piped HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n"
        b"Connection: close\r\n\r\n" % token.encode(),
    ]
    reader, writer = await engine.open_visitor("localhost")
    try:
        writer.write(b"".join(requests))
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(-1), 10)
    finally:
        writer.close()
    answers = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(
            b"content-length:"))
        answers.append((head.split(b" ")[1], json.loads(rest[:length])))
        raw = rest[length:]
    assert [status for status, _ in answers] == [b"201", b"200", b"200", b"200"]
    assert answers[0][1]["name"] == "piped"
    assert answers[1][1]["status"] == "ok"
    assert [w["name"] for w in answers[2][1]] == ["default", "piped"]
    assert answers[3][1]["name"] == "piped"


async def test_h2_streams_answer_concurrently(engine: EngineHandle) -> None:
    async with admin_api(engine, operator_token(engine), http2=True) as api:
        made = await asyncio.gather(*(api.post("/projects", json={"name": f"p{i}"}) for i in range(8)),
                                    api.get("/workspaces"))
        assert [r.status_code for r in made] == [201] * 8 + [200]
        assert {r.http_version for r in made} == {"HTTP/2"}
        assert len((await api.get("/projects")).json()) == 9


async def test_openapi_documents_the_admin_api(engine: EngineHandle) -> None:
    async with admin_api(engine, operator_token(engine)) as api:
        document = (await api.get(f"https://127.0.0.1:{engine.port}/api/openapi.json")).json()
        validate_spec(document)
        assert {"/api/admin/pats", "/api/admin/projects/{ref}/policy"} <= set(document["paths"])
        created = (await api.post("/pats", json={"name": "doc"})).json()
        schema = document["paths"]["/api/admin/pats"]["post"]["responses"]["201"]["content"]["application/json"]
        jsonschema.Draft202012Validator({**schema["schema"], "components": document["components"]}).validate(created)
        listed = (await api.get("/pats")).json()
        schema = document["paths"]["/api/admin/pats"]["get"]["responses"]["200"]["content"]["application/json"]
        jsonschema.Draft202012Validator({**schema["schema"], "components": document["components"]}).validate(listed)


async def test_admin_needs_token_auth(tmp_path: Path) -> None:
    async with running_engine(tmp_path, "auth:\n  jwt:\n    enabled: false\n") as engine, \
            admin_api(engine, None) as api:
        refused = await api.get("/workspaces")
        assert refused.status_code == 403 and "auth.jwt.enabled" in refused.json()["error"]
