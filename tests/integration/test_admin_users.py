"""Users through the admin API of a running engine (real store, real tokens): round trips, every refusal
(400, 403, 404, 409), and what a user's state does to its PATs — a disabled user's PAT and the tokens
derived from it are refused on the control channel (UNAUTHORIZED) and on the Engine API (401) until it is
enabled again; an operator's PAT may use the admin API, a member's may not."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jsonschema
import jwt
import pytest
from openapi_spec_validator import validate as validate_spec

from portway.engine.access.mint import load_client_secret, mint_app_token
from portway.errors import EngineRejected
from portway.wire.codes import ErrorCode
from tests.conftest import EngineHandle, running_engine
from tests.integration.test_admin_api import admin_api, operator_token

pytestmark = pytest.mark.store
CREATE = "tunnels.tunnels.create-delete"

@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[EngineHandle]:
    async with running_engine(tmp_path) as handle:
        yield handle


@contextlib.asynccontextmanager
async def engine_api(engine: EngineHandle, token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{engine.port}/api", verify=engine.visitor_tls(),
                                 headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
        yield client


async def control_refusal(engine: EngineHandle, token: str) -> str | None:
    """None when a control channel opens with `token`, else the engine's refusal text (UNAUTHORIZED only)."""
    refusal: EngineRejected | None = None
    try:
        channel = await engine.client(token).connect()
    except EngineRejected as refused:
        refusal = refused
    else:
        await channel.close()
        return None
    assert refusal.code == ErrorCode.UNAUTHORIZED, refusal
    return str(refusal)


async def test_round_trips(engine: EngineHandle) -> None:
    async with admin_api(engine, operator_token(engine)) as api:
        assert (await api.get("/users")).json() == []
        made = await api.post("/users", json={"subject": "alice@example.com", "role": "operator"})
        assert made.status_code == 201
        alice = made.json()
        assert alice["id"].startswith("usr_") and alice["role"] == "operator" and alice["disabled_at"] is None
        bob = (await api.post("/users", json={"subject": "bob"})).json()
        assert bob["role"] == "member"
        assert [u["subject"] for u in (await api.get("/users")).json()] == ["alice@example.com", "bob"]
        assert (await api.get(f"/users/{alice['id']}")).json() == alice
        assert (await api.get("/users/alice@example.com")).json() == alice
        assert (await api.get("/users/alice%40example.com")).json() == alice  # percent-encoded by clients

        demoted = await api.patch("/users/alice@example.com", json={"role": "member"})
        assert demoted.status_code == 200 and demoted.json()["role"] == "member"
        disabled = (await api.patch(f"/users/{bob['id']}", json={"disabled": True})).json()
        assert disabled["disabled_at"] is not None
        both = (await api.patch("/users/bob", json={"disabled": True, "role": "operator"})).json()
        assert both["role"] == "operator" and both["disabled_at"] == disabled["disabled_at"]
        assert (await api.patch("/users/bob", json={"disabled": False})).json()["disabled_at"] is None

        assert (await api.delete("/users/bob")).json() == {"deleted": "bob"}
        assert (await api.get("/users/bob")).status_code == 404
        assert [u["subject"] for u in (await api.get("/users")).json()] == ["alice@example.com"]


async def test_refs_may_hold_an_encoded_slash(engine: EngineHandle) -> None:
    """Path parameters are decoded one by one, so `%2F` stays inside its segment: a subject with a slash and
    a project named `workspace/project` are addressable by name."""
    async with admin_api(engine, operator_token(engine)) as api:
        team = (await api.post("/users", json={"subject": "team/alice"})).json()
        assert (await api.get("/users/team%2Falice")).json() == team
        assert (await api.patch("/users/team%2Falice", json={"role": "operator"})).json()["role"] == "operator"
        assert (await api.get("/users/team/alice")).status_code == 404  # an unencoded slash is a path separator
        assert (await api.delete("/users/team%2Falice")).json() == {"deleted": "team/alice"}
        await api.post("/workspaces", json={"name": "acme"})
        web = (await api.post("/projects", json={"name": "web", "workspace": "acme"})).json()
        assert (await api.get("/projects/acme%2Fweb")).json() == web
        stored = await api.put("/projects/acme%2Fweb/policy", json={"policy": {"allow_public": False}})
        assert stored.status_code == 200 and stored.json()["project_id"] == web["id"]
        assert [v["version"] for v in (await api.get("/projects/acme%2Fweb/policy/history")).json()] == [1]


async def test_refusals(engine: EngineHandle) -> None:
    async with admin_api(engine, operator_token(engine)) as api:
        assert (await api.post("/users", json={"subject": "carol"})).status_code == 201
        cases = [
            (api.post("/users", json={"subject": "carol"}), 409, "exists"),
            (api.post("/users", json={"subject": "carol", "role": "operator"}), 409, "exists"),
            (api.post("/users", json={"subject": ""}), 400, "subject"),
            (api.post("/users", json={"subject": "x" * 256}), 400, "subject"),
            (api.post("/users", json={"subject": "line\nbreak"}), 400, "control"),
            (api.post("/users", json={"subject": "dan", "role": "root"}), 400, "role"),
            (api.post("/users", json={"subject": "dan", "admin": True}), 400, "admin"),
            (api.post("/users", json={}), 400, "subject"),
            (api.post("/users", content=b"{nope"), 400, "body"),
            (api.patch("/users/carol", json={}), 400, "role and/or disabled"),
            (api.patch("/users/carol", json={"role": "owner"}), 400, "role"),
            (api.patch("/users/carol", json={"disabled": "yes"}), 400, "disabled"),
            (api.patch("/users/carol", json={"disabled": 1}), 400, "disabled"),
            (api.get("/users/nobody"), 404, "nobody"),
            (api.patch("/users/nobody", json={"role": "member"}), 404, "nobody"),
            (api.delete("/users/nobody"), 404, "nobody"),
            (api.put("/users/carol", json={}), 405, "use"),
            (api.post("/pats", json={"name": "ops", "subject": "carol", "permissions": ["admin"]}), 409,
             "make it an operator"),
        ]
        for request, status, fragment in cases:
            got = await request
            assert got.status_code == status, (got.request.url, got.text)
            assert fragment in got.json()["error"], got.text
        assert [u["subject"] for u in (await api.get("/users")).json()] == ["carol"]  # nothing else was made
    async with admin_api(engine, engine.token()) as plain:  # a token without role operator or admin
        for request in (plain.get("/users"), plain.post("/users", json={"subject": "x"}), plain.get("/users/carol"),
                        plain.patch("/users/carol", json={"role": "operator"}), plain.delete("/users/carol")):
            refused = await request
            assert refused.status_code == 403 and "operator" in refused.json()["error"], refused.text
    async with admin_api(engine, None) as anonymous:
        assert (await anonymous.get("/users")).status_code == 401


async def test_disabling_refuses_the_users_pats_and_what_derives_from_them(
        engine: EngineHandle, caplog: pytest.LogCaptureFixture) -> None:
    async with admin_api(engine, operator_token(engine)) as api:
        made = await api.post("/pats", json={"name": "ci", "subject": "erin", "expires_in": 600})
        token = made.json()["token"]
        erin = (await api.get("/users/erin")).json()  # made on the PAT's creation, as a member
        assert erin["role"] == "member" and made.json()["pat"]["user_id"] == erin["id"]
        async with engine_api(engine, token) as with_pat:
            derived = (await with_pat.post("/tokens", json={"expires_in": 600})).json()["token"]
            assert (await with_pat.get("/tunnels")).status_code == 200
        for usable in (token, derived):
            assert await control_refusal(engine, usable) is None

        assert (await api.patch("/users/erin", json={"disabled": True})).status_code == 200
        caplog.set_level(logging.WARNING, logger="portway")
        assert (await control_refusal(engine, token) or "").endswith(": user disabled")
        assert "control channel unauthorized: user disabled" in caplog.text
        assert (await control_refusal(engine, derived) or "").endswith(": token source credential's user disabled")
        for usable, reason in ((token, "user disabled"), (derived, "token source credential's user disabled")):
            async with engine_api(engine, usable) as refused:
                for answer in (await refused.get("/tunnels"), await refused.post("/tokens", json={})):
                    assert answer.status_code == 401 and answer.json()["error"] == reason, answer.text
        blocked = await api.post("/pats", json={"name": "more", "subject": "erin"})
        assert blocked.status_code == 409 and "disabled" in blocked.json()["error"]

        assert (await api.patch(f"/users/{erin['id']}", json={"disabled": False})).status_code == 200
        for usable in (token, derived):
            assert await control_refusal(engine, usable) is None
            async with engine_api(engine, usable) as accepted:
                assert (await accepted.get("/tunnels")).status_code == 200


async def test_operator_role_makes_a_pat_an_operator_token(engine: EngineHandle) -> None:
    async with admin_api(engine, operator_token(engine)) as api:
        await api.post("/users", json={"subject": "frank"})
        token = (await api.post("/pats", json={"name": "ops", "subject": "frank"})).json()["token"]
        narrow = (await api.post("/pats", json={"name": "ro", "subject": "frank",
                                                "permissions": ["tunnels.resources.read-only"]})).json()["token"]
        async with admin_api(engine, token) as member:
            refused = await member.get("/users")
            assert refused.status_code == 403 and "operator" in refused.json()["error"]
        await api.patch("/users/frank", json={"role": "operator"})
        async with admin_api(engine, token) as operator:  # applies at the next request
            assert (await operator.get("/users")).status_code == 200
            assert (await operator.post("/users", json={"subject": "grace"})).status_code == 201
            async with engine_api(engine, token) as engine_calls:
                derived = (await engine_calls.post("/tokens", json={"expires_in": 60})).json()["token"]
            async with admin_api(engine, derived) as from_operator:  # the role is not inherited
                assert (await from_operator.get("/users")).status_code == 403
            async with admin_api(engine, narrow) as restricted:  # a PAT narrowed without admin stays narrow
                assert (await restricted.get("/users")).status_code == 403
            await operator.patch("/users/frank", json={"role": "member"})  # an operator demoting itself
            assert (await operator.get("/users")).status_code == 403


async def test_the_stored_role_decides_for_pats_that_claim_admin_and_their_derived_tokens(
        engine: EngineHandle) -> None:
    """A PAT made with the `admin` permission, and a token derived from it asking for `admin`, are operator
    tokens only while their user is an operator: demoting the user takes the rights away at the next request."""
    async with admin_api(engine, operator_token(engine)) as api:
        await api.post("/users", json={"subject": "heidi", "role": "operator"})
        token = (await api.post("/pats", json={"name": "ops", "subject": "heidi",
                                               "permissions": ["admin", CREATE]})).json()["token"]
        async with engine_api(engine, token) as engine_calls:
            minted = await engine_calls.post("/tokens", json={"expires_in": 60, "permissions": ["admin"]})
            assert minted.status_code == 200, minted.text
            derived = minted.json()["token"]
            plain = (await engine_calls.post("/tokens", json={"expires_in": 60,
                                                               "permissions": [CREATE]})).json()["token"]
        for usable in (token, derived):
            async with admin_api(engine, usable) as operator:
                assert (await operator.get("/users")).status_code == 200
        async with admin_api(engine, plain) as narrowed:  # derived without `admin`: not an operator's
            assert (await narrowed.get("/users")).status_code == 403
        await api.patch("/users/heidi", json={"role": "member"})
        for refused_token in (token, derived):
            async with admin_api(engine, refused_token) as member:
                refused = await member.get("/users")
                assert refused.status_code == 403 and "operator" in refused.json()["error"]
            assert await control_refusal(engine, refused_token) is None  # still a valid token otherwise
        await api.patch("/users/heidi", json={"role": "operator"})
        async with admin_api(engine, derived) as again:
            assert (await again.get("/users")).status_code == 200


async def test_delete_is_refused_while_the_user_has_live_pats(engine: EngineHandle) -> None:
    async with admin_api(engine, operator_token(engine)) as api:
        pat = (await api.post("/pats", json={"name": "ci", "subject": "heidi"})).json()
        busy = await api.delete("/users/heidi")
        assert busy.status_code == 409 and "1 live personal access token" in busy.json()["error"]
        assert "revoke them first" in busy.json()["error"]
        assert (await api.get("/users/heidi")).status_code == 200
        await api.post(f"/pats/{pat['pat']['id']}/revoke", json={"reason": "leaving"})
        assert (await api.delete("/users/heidi")).status_code == 200
        assert (await api.get(f"/pats/{pat['pat']['id']}")).json()["user_id"] is None
        assert (await api.get("/users/heidi")).status_code == 404


async def test_openapi_documents_the_user_routes(engine: EngineHandle) -> None:
    async with admin_api(engine, operator_token(engine)) as api:
        document = (await api.get(f"https://127.0.0.1:{engine.port}/api/openapi.json")).json()
        validate_spec(document)
        paths = document["paths"]
        assert set(paths["/api/admin/users"]) == {"get", "post"}
        assert set(paths["/api/admin/users/{ref}"]) == {"get", "patch", "delete"}
        created = (await api.post("/users", json={"subject": "ivan"})).json()
        disabled = (await api.patch("/users/ivan", json={"disabled": True})).json()
        for path, method, status, answer in (("/api/admin/users", "post", "201", created),
                                             ("/api/admin/users/{ref}", "patch", "200", disabled),
                                             ("/api/admin/users", "get", "200", (await api.get("/users")).json())):
            schema = paths[path][method]["responses"][status]["content"]["application/json"]["schema"]
            jsonschema.Draft202012Validator({**schema, "components": document["components"]}).validate(answer)
        assert set(document["components"]["schemas"]["UserUpdate"]["properties"]) == {"role", "disabled"}


async def test_claims_signed_by_their_holder_make_no_operator(engine: EngineHandle) -> None:
    """An app-credential holder signs its own tokens: claiming `"role": "operator"` or `admin` gives it nothing
    unless the credential's stored permissions list `admin`. A plain engine token cannot mint itself `admin`."""
    async with admin_api(engine, operator_token(engine)) as api:
        app = (await api.post("/apps", json={"name": "device"})).json()
        boss = (await api.post("/apps", json={"name": "automation", "permissions": ["admin", CREATE]})).json()
    now = int(time.time())
    key = load_client_secret(app["secret"])
    for claims in ({"role": "operator"}, {"permissions": ["admin"]}, {"role": "operator", "permissions": ["admin"]}):
        forged = jwt.encode({"type": "app", "clientId": app["credential"]["client_id"], "iat": now, "exp": now + 600,
                             "project_id": app["credential"]["project_id"], **claims}, key, algorithm="ES512")
        async with admin_api(engine, forged) as holder:
            refused = await holder.get("/workspaces")
            assert refused.status_code == 403, (claims, refused.text)
        async with engine_api(engine, forged) as holder:  # nor can it derive an operator token
            minted = await holder.post("/tokens", json={"expires_in": 60, "permissions": ["admin"]})
            assert minted.status_code == 403 and "operator" in minted.json()["error"], minted.text
    automation = mint_app_token(boss["credential"]["client_id"], boss["secret"], expires_in=600,
                                project_id=boss["credential"]["project_id"])
    async with admin_api(engine, automation) as admitted:  # stored `admin`: an operator's credential
        assert (await admitted.get("/workspaces")).status_code == 200
    async with engine_api(engine, engine.token()) as plain:
        minted = await plain.post("/tokens", json={"expires_in": 60, "permissions": ["admin"]})
        assert minted.status_code == 403 and "only an operator token" in minted.json()["error"], minted.text
        inherited = (await plain.post("/tokens", json={"expires_in": 60})).json()["token"]
    async with admin_api(engine, inherited) as child:
        assert (await child.get("/workspaces")).status_code == 403


async def test_revoking_a_token_withdraws_what_was_derived_from_it(engine: EngineHandle) -> None:
    root = engine.token()  # an engine-secret token: no stored credential behind the chain
    async with engine_api(engine, root) as holder:
        child = (await holder.post("/tokens", json={"expires_in": 600})).json()["token"]
    async with engine_api(engine, child) as holder:
        grandchild = (await holder.post("/tokens", json={"expires_in": 600})).json()["token"]
    assert await control_refusal(engine, grandchild) is None
    async with admin_api(engine, operator_token(engine)) as api:
        revoked = await api.post("/revocations", json={"token": child, "reason": "leaked"})
        assert revoked.status_code == 201, revoked.text
    assert await control_refusal(engine, child) is not None
    refusal = await control_refusal(engine, grandchild)
    assert refusal is not None and "token source revoked" in refusal
    async with engine_api(engine, grandchild) as holder:
        assert (await holder.get("/tunnels")).status_code == 401
    assert await control_refusal(engine, root) is None  # above the revoked token: untouched
