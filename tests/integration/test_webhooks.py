"""Webhooks end to end: a real engine, tunnels made with our SDK, a real HTTP receiver on loopback, and
every signature checked with the official rstream SDK's verifier."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate as validate_spec

from portway import __version__
from portway.engine.auth import mint_token
from tests.conftest import EchoServer, forwarded_tunnel, running_engine
from tests.integration.webhook_helpers import Received, Receiver, api, create, deliveries, until_deliveries

pytestmark = pytest.mark.store  # on SQLite and PostgreSQL (tests/conftest.py)

FAST = ("webhooks:\n  retry_base_seconds: 0.2\n  retry_cap_seconds: 0.4\n  timeout_seconds: 2\n"
        "  lease_seconds: 5\n")
ALL = ["client.created", "client.deleted", "tunnel.created", "tunnel.deleted"]


def types(received: list[Received]) -> list[str]:
    return [r.headers["rstream-event-type"] for r in received]


def validate(document: dict[str, Any], path: str, method: str, status: str, body: object) -> None:
    schema = document["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator({**schema, "components": document["components"]}).validate(body)


async def test_lifecycle_events_arrive_signed(tmp_path: Path) -> None:
    async with running_engine(tmp_path, FAST) as engine, Receiver() as receiver, \
            EchoServer(http=True) as upstream, api(engine) as client:
        document = (await client.get("/api/openapi.json")).json()
        validate_spec(document)
        hook = await create(client, url=receiver.url)
        validate(document, "/api/webhooks", "post", "201", hook)
        secret = hook["secret"]
        assert secret.startswith("whsec_") and hook["events"] == ALL and hook["enabled"] is True
        assert hook["project_id"].startswith("prj_") and hook["secret_hint"] == secret[:10] + "…"

        listed = await client.get("/api/webhooks")
        validate(document, "/api/webhooks", "get", "200", listed.json())
        assert [h["id"] for h in listed.json()] == [hook["id"]]
        one = await client.get(f"/api/webhooks/{hook['id']}")
        validate(document, "/api/webhooks/{id}", "get", "200", one.json())
        assert secret not in listed.text and secret not in one.text and "secret" not in one.json()

        async with forwarded_tunnel(engine, upstream.port, protocol="http") as tunnel:
            await receiver.wait_for(lambda got: {"client.created", "tunnel.created"} <= set(types(got)))
        received = await receiver.wait_for(lambda got: len(got) >= 4)
        assert sorted(types(received)) == sorted(ALL)
        for item in received:
            event = item.verified(secret)
            headers = item.headers
            assert headers["rstream-event-id"] == event.id and event.id.startswith("evt_")
            assert headers["rstream-event-type"] == event.type
            assert headers["rstream-webhook-id"] == hook["id"]
            assert headers["rstream-delivery-id"].startswith("dlv_")
            assert headers["content-type"] == "application/json"
            assert headers["user-agent"] == f"portway-webhooks/{__version__}"
            assert event.user_id == "test"
            assert event.project_id == hook["project_id"] and event.workspace_id.startswith("ws_")
            if event.type.startswith("tunnel."):
                assert event.object["id"] == tunnel.id
            assert set(json.loads(item.body)) == {"id", "type", "created_at", "user_id", "workspace_id",
                                                  "project_id", "cluster_id", "object"}
        created = next(r for r in received if r.headers["rstream-event-type"] == "tunnel.created")
        assert created.verified(secret).object["status"] == "online"

        listing = await until_deliveries(client, hook["id"], lambda ds: len(ds) == 4 and
                                         all(d["status"] == "delivered" for d in ds))
        validate(document, "/api/webhooks/{id}/deliveries", "get", "200", listing)
        assert {d["event_id"] for d in listing} == {r.headers["rstream-event-id"] for r in received}
        for delivery in listing:
            (attempt,) = delivery["attempts"]
            assert attempt["status_code"] == 200 and attempt["response_excerpt"] == "thanks"
            assert attempt["error"] is None and attempt["latency_ms"] >= 0
            assert delivery["next_attempt_at"] is None


async def test_failures_are_retried_then_delivered(tmp_path: Path) -> None:
    async with running_engine(tmp_path, FAST) as engine, Receiver() as receiver, \
            EchoServer(http=True) as upstream, api(engine) as client:
        receiver.script = [(500, b"broken " * 400), (503, b"busy"), (302, b"")]
        hook = await create(client, url=receiver.url, events=["tunnel.created"])
        async with forwarded_tunnel(engine, upstream.port, protocol="http"):
            received = await receiver.wait_for(lambda got: len(got) >= 4)
        assert types(received) == ["tunnel.created"] * 4
        assert len({r.headers["rstream-delivery-id"] for r in received}) == 1
        assert len({r.body for r in received}) == 1  # the same event, byte for byte
        for item in received:
            item.verified(hook["secret"])
        (delivery,) = await until_deliveries(client, hook["id"], lambda ds: ds and ds[0]["status"] == "delivered")
        attempts = delivery["attempts"]
        assert [a["status_code"] for a in attempts] == [500, 503, 302, 200]
        assert [a["number"] for a in attempts] == [1, 2, 3, 4]
        assert len(attempts[0]["response_excerpt"].encode()) == 1024  # an excerpt, not the whole answer
        assert attempts[1]["response_excerpt"] == "busy"
        assert attempts[2]["error"] == "redirects are not followed"
        assert delivery["event_type"] == "tunnel.created"


async def test_rotation_signs_with_both_secrets_for_the_grace_period(tmp_path: Path) -> None:
    async with running_engine(tmp_path, FAST) as engine, Receiver() as receiver, \
            EchoServer(http=True) as upstream, api(engine) as client:
        hook = await create(client, url=receiver.url, events=["tunnel.created"])
        rotated = await client.post(f"/api/webhooks/{hook['id']}/rotate")
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()
        assert new["secret"] != hook["secret"] and new["secrets_active"] == 2
        assert new["secret_hint"] == new["secret"][:10] + "…"
        async with forwarded_tunnel(engine, upstream.port, protocol="http"):
            (item,) = await receiver.wait_for(lambda got: len(got) >= 1)
        assert item.headers["rstream-signature"].count("v1=") == 2
        assert item.verified(hook["secret"]).id == item.verified(new["secret"]).id

        again = await client.post(f"/api/webhooks/{hook['id']}/rotate", json={"grace_seconds": 0})
        latest = again.json()
        assert latest["secrets_active"] == 1
        async with forwarded_tunnel(engine, upstream.port, protocol="http"):
            second = (await receiver.wait_for(lambda got: len(got) >= 2))[1]
        assert second.headers["rstream-signature"].count("v1=") == 1
        second.verified(latest["secret"])
        with pytest.raises(Exception, match="Signature verification failed"):
            second.verified(new["secret"])


async def test_redelivery_by_hand_also_after_failing_for_good(tmp_path: Path) -> None:
    config = FAST + "  max_attempts: 2\n"
    async with running_engine(tmp_path, config) as engine, Receiver() as receiver, \
            EchoServer(http=True) as upstream, api(engine) as client:
        receiver.default = (500, b"down")
        given = "whsec_" + "A" * 43
        hook = await create(client, url=receiver.url, events=["tunnel.created"], secret=given)
        assert hook["secret"] == given
        async with forwarded_tunnel(engine, upstream.port, protocol="http"):
            (failed,) = await until_deliveries(client, hook["id"], lambda ds: ds and ds[0]["status"] == "failed")
        assert [a["status_code"] for a in failed["attempts"]] == [500, 500]

        receiver.default = (204, b"")
        redone = await client.post(f"/api/webhooks/{hook['id']}/deliveries/{failed['id']}/redeliver")
        assert redone.status_code == 202, redone.text
        copy = redone.json()
        assert copy["id"] != failed["id"] and copy["redelivery_of"] == failed["id"]
        assert copy["event_id"] == failed["event_id"] and copy["status"] == "pending"
        received = await receiver.wait_for(lambda got: len(got) >= 3)
        assert received[2].headers["rstream-delivery-id"] == copy["id"]
        assert received[2].body == received[0].body
        assert received[2].verified(given).id == failed["event_id"]
        listing = await until_deliveries(client, hook["id"], lambda ds: ds[0]["status"] == "delivered")
        assert [d["id"] for d in listing] == [copy["id"], failed["id"]]
        assert listing[1]["status"] == "failed"


async def test_refusals(tmp_path: Path) -> None:
    async with running_engine(tmp_path) as engine:
        async with api(engine, token="") as client:
            got = await client.get("/api/webhooks")
            assert got.status_code == 401 and got.headers["www-authenticate"].startswith("Bearer")
        narrow = mint_token(engine.secret, subject="t", ttl_s=60, extra={"permissions": ["tunnels.read-only"]})
        async with api(engine, narrow) as client:
            for method, path in [("GET", "/api/webhooks"), ("POST", "/api/webhooks"), ("GET", "/api/webhooks/x"),
                                 ("DELETE", "/api/webhooks/x"), ("POST", "/api/webhooks/x/rotate")]:
                got = await client.request(method, path)
                assert got.status_code == 403 and "webhooks.read-write" in got.json()["error"], (method, path)
        allowed = mint_token(engine.secret, subject="t", ttl_s=60, extra={"permissions": ["webhooks.read-write"]})
        async with api(engine, allowed) as client:
            assert (await client.get("/api/webhooks")).json() == []
        async with api(engine) as client:
            bad = [({}, "url"), ({"url": "ftp://x/"}, "http"), ({"url": "http://u:p@x/"}, "credentials"),
                   ({"url": "http://x/", "events": ["stream.summary"]}, "events"),
                   ({"url": "http://x/", "events": []}, "events"),
                   ({"url": "http://x/", "secret": "hunter2"}, "whsec_"), ({"url": "http://x/", "colour": 1}, "colour")]
            for body, fragment in bad:
                got = await client.post("/api/webhooks", json=body)
                assert got.status_code == 400 and fragment in got.json()["error"], (body, got.text)
                assert "hunter2" not in got.text
            got = await client.post("/api/webhooks", content=b"{not json")
            assert got.status_code == 400
            hook = await create(client, url="http://127.0.0.1:9/")
            for method, path in [("GET", "/api/webhooks/wh_nope"), ("DELETE", "/api/webhooks/wh_nope"),
                                 ("POST", "/api/webhooks/wh_nope/rotate"), ("GET", "/api/webhooks/wh_nope/deliveries"),
                                 ("POST", f"/api/webhooks/{hook['id']}/deliveries/dlv_nope/redeliver")]:
                got = await client.request(method, path)
                assert got.status_code == 404, (method, path, got.text)
            got = await client.post(f"/api/webhooks/{hook['id']}/rotate", json={"grace_seconds": -1})
            assert got.status_code == 400
            got = await client.get(f"/api/webhooks/{hook['id']}/deliveries", params={"params": '{"limit": 0}'})
            assert got.status_code == 400
            got = await client.put(f"/api/webhooks/{hook['id']}")
            assert got.status_code == 405 and set(got.headers["allow"].split(", ")) == {"DELETE", "GET"}
            deleted = await client.delete(f"/api/webhooks/{hook['id']}")
            assert deleted.status_code == 200 and deleted.json() == {"id": hook["id"], "deleted": True}
            assert (await client.get(f"/api/webhooks/{hook['id']}")).status_code == 404


async def test_a_disabled_endpoint_gets_nothing_and_webhooks_can_be_turned_off(tmp_path: Path) -> None:
    (tmp_path / "on").mkdir()
    async with running_engine(tmp_path / "on", FAST) as engine, Receiver() as receiver, \
            EchoServer(http=True) as upstream, api(engine) as client:
        quiet = await create(client, url=receiver.url, enabled=False)
        loud = await create(client, url=receiver.url, events=["client.created"])
        async with forwarded_tunnel(engine, upstream.port, protocol="http"):
            (item,) = await receiver.wait_for(lambda got: len(got) >= 1)
        assert item.headers["rstream-webhook-id"] == loud["id"]
        assert await deliveries(client, quiet["id"]) == []
    (tmp_path / "off").mkdir()
    async with running_engine(tmp_path / "off", "webhooks:\n  enabled: false\n") as engine, api(engine) as client:
        got = await client.get("/api/webhooks")
        assert got.status_code == 404 and "webhooks.enabled" in got.json()["error"]


async def test_an_endpoint_hears_only_its_own_projects_events(tmp_path: Path) -> None:
    """Endpoints belong to the caller's project: a PAT of project `web` and a CE token (the default project)
    each see only their own endpoints, and each endpoint gets only its project's events."""
    async with running_engine(tmp_path, FAST) as engine, Receiver() as receiver, \
            EchoServer(http=True) as upstream, api(engine) as default_api:
        operator = mint_token(engine.secret, subject="root", ttl_s=600, extra={"role": "operator"})
        async with api(engine, operator) as admin:
            assert (await admin.post("/api/admin/projects", json={"name": "web"})).status_code == 201
            made = await admin.post("/api/admin/pats", json={"name": "web-ci", "project": "web", "expires_in": 600})
            assert made.status_code == 201, made.text
        pat = made.json()["token"]
        home = await create(default_api, url=receiver.url, events=["tunnel.created"])
        async with api(engine, pat) as web_api:
            web = await create(web_api, url=receiver.url, events=["tunnel.created"])
            assert web["project_id"] != home["project_id"]
            assert [h["id"] for h in (await web_api.get("/api/webhooks")).json()] == [web["id"]]
            assert (await web_api.get(f"/api/webhooks/{home['id']}")).status_code == 404
            assert (await web_api.delete(f"/api/webhooks/{home['id']}")).status_code == 404
        assert [h["id"] for h in (await default_api.get("/api/webhooks")).json()] == [home["id"]]
        assert (await default_api.get(f"/api/webhooks/{web['id']}/deliveries")).status_code == 404

        async with forwarded_tunnel(engine, upstream.port, protocol="http") as mine:
            control = await engine.client(pat).connect()
            try:
                theirs = await control.create_tunnel(protocol="http")
                got = await receiver.wait_for(lambda items: len(items) >= 2)
            finally:
                await control.close()
        by_hook = {item.headers["rstream-webhook-id"]: item for item in got}
        assert set(by_hook) == {home["id"], web["id"]}
        assert by_hook[home["id"]].verified(home["secret"]).object["id"] == mine.id
        assert by_hook[web["id"]].verified(web["secret"]).object["id"] == theirs.id
        assert by_hook[web["id"]].verified(web["secret"]).project_id == web["project_id"]
        assert len(got) == 2
