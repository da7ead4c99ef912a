"""The Engine HTTP API on a running engine: real TLS, HTTP/1.1 and h2 (httpx), live tunnels made with
our SDK, responses validated against the engine's own OpenAPI document."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import jwt
import pytest
from openapi_spec_validator import validate as validate_spec

from portway.engine.auth import mint_token
from tests.conftest import EchoServer, EngineHandle, forwarded_tunnel, running_engine


@contextlib.asynccontextmanager
async def api(engine: EngineHandle, *, http2: bool = False,
              token: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {token or engine.token()}"} if token != "" else {}
    async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{engine.port}", verify=engine.visitor_tls(),
                                 http2=http2, headers=headers, timeout=10) as client:
        yield client


def schema_of(document: dict[str, Any], path: str, status: str = "200") -> dict[str, Any]:
    """The response schema the document declares, resolvable against its components."""
    schema = document["paths"][path]["get"]["responses"][status]["content"]["application/json"]["schema"]
    return {**schema, "components": document["components"]}


def _validate(document: dict[str, Any], schema: dict[str, Any], body: object) -> None:
    """Validate `body` against `schema` (which carries the document's components for its references)."""
    jsonschema.Draft202012Validator(schema).validate(body)


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "h2"])
async def test_inventory_filters_and_shapes(tmp_path: Path, http2: bool) -> None:
    async with running_engine(tmp_path) as engine, EchoServer(http=True) as upstream, \
            forwarded_tunnel(engine, upstream.port, protocol="http", labels={"env": "prod", "team": "a"},
                             trusted_ips=["127.0.0.0/8"]) as web, \
            forwarded_tunnel(engine, upstream.port, publish=False, name="ssh", labels={"env": "dev"}) as ssh, \
            api(engine, http2=http2) as client:
        document = (await client.get("/api/openapi.json")).json()
        validate_spec(document)

        got = await client.get("/api/tunnels")
        assert got.status_code == 200
        assert got.headers["content-type"] == "application/json"
        assert got.headers["cache-control"] == "no-store"
        if http2:
            assert got.http_version == "HTTP/2"
        tunnels = got.json()
        _validate(document, schema_of(document, "/api/tunnels"), tunnels)
        by_id = {t["id"]: t for t in tunnels}
        assert set(by_id) == {web.id, ssh.id}
        assert by_id[web.id]["protocol"] == "http" and by_id[web.id]["status"] == "online"
        assert by_id[web.id]["hostname"] == web.properties.hostname
        assert by_id[web.id]["trusted_ips"] == ["127.0.0.0/8"]
        assert "geo_ip" in by_id[web.id] and "geoip" not in by_id[web.id]
        assert by_id[web.id]["forwarding_address"] == web.forwarding_address
        assert by_id[ssh.id]["publish"] is False and by_id[ssh.id]["forwarding_address"] is None
        assert by_id[web.id]["user_id"] == "test"

        async def ids(params: object) -> set[str]:
            got = await client.get("/api/tunnels", params={"params": json.dumps(params)})
            assert got.status_code == 200, got.text
            return {t["id"] for t in got.json()}

        assert await ids({"filters": {"labels": {"env": "prod"}}}) == {web.id}
        assert await ids({"filters": {"labels": {"env": None}}}) == {web.id, ssh.id}
        assert await ids({"filters": {"labels": {"team": None}}}) == {web.id}
        assert await ids({"filters": {"name": "ssh"}}) == {ssh.id}
        assert await ids({"filters": {"publish": True, "protocol": "http"}}) == {web.id}
        assert await ids({"filters": {"protocol": {"oneof": ["tcp", "tls"]}}}) == set()
        assert await ids({"filters": {"status": "online", "client_id": by_id[web.id]["client_id"]}}) == {web.id}
        assert len(await ids({"limit": 1})) == 1

        one = await client.get(f"/api/tunnels/{web.id}")
        assert one.status_code == 200 and one.json()["id"] == web.id
        _validate(document, schema_of(document, "/api/tunnels/{id}"), one.json())

        clients = (await client.get("/api/clients")).json()
        _validate(document, schema_of(document, "/api/clients"), clients)
        assert len(clients) == 2
        assert {c["id"] for c in clients} == {t["client_id"] for t in tunnels}
        assert all(c["agent"] and c["status"] == "online" and c["tunnels"] == 1 for c in clients)
        params = json.dumps({"filters": {"id": tunnels[0]["client_id"]}})
        assert len((await client.get("/api/clients", params={"params": params})).json()) == 1

        auth = await client.get("/api/auth")
        assert auth.status_code == 200 and auth.json()["subject"] == "test"
        _validate(document, schema_of(document, "/api/auth"), auth.json())


async def test_errors_are_json_with_the_right_status(tmp_path: Path) -> None:
    async with running_engine(tmp_path) as engine:
        async with api(engine) as client:
            document = (await client.get("/api/openapi.json")).json()
            cases = [
                ("/api/tunnels/nope", 404, "no live tunnel"),
                ("/api/nothing", 404, "unknown engine endpoint"),
                ("/api/tunnels?params=%7Bnot-json", 400, "params must be JSON"),
                ("/api/tunnels?params=" + json.dumps({"filters": {"colour": "red"}}), 400, "colour"),
                ("/api/tunnels?params=" + json.dumps({"limit": 0}), 400, "params.limit"),
                ("/api/tunnels?params=" + json.dumps({"filters": {"name": {"regex": ".*"}}}), 400, "regular"),
                ("/api/clients?params=" + json.dumps({"sort": "x"}), 400, "filters"),
            ]
            for path, status, fragment in cases:
                got = await client.get(path)
                assert got.status_code == status, (path, got.text)
                assert fragment in got.json()["error"], (path, got.text)
                assert got.json()["status"] == status
            bad = await client.get("/api/tunnels?params=" + json.dumps({"limit": 0}))
            _validate(document, schema_of(document, "/api/tunnels", "400"), bad.json())
            post = await client.post("/api/tunnels", json={})
            assert post.status_code == 405 and post.headers["allow"] == "GET"
        token = engine.token()
        expired = mint_token(engine.secret, subject="x", ttl_s=60, now=time.time() - 3600)
        for headers, fragment in [({}, "token"), ({"Authorization": "Bearer nope"}, "malformed"),
                                  ({"Authorization": f"Basic {token}"}, "bearer <token>"),
                                  ({"Authorization": f"Bearer {expired}"}, "expired")]:
            async with api(engine, token="") as client:
                got = await client.get("/api/tunnels", headers=headers)
                assert got.status_code == 401, got.text
                assert got.headers["www-authenticate"].startswith("Bearer")
                assert fragment in got.json()["error"].lower()
                assert token not in got.text
        async with api(engine, token="") as client:  # a token in the query is for streaming endpoints only
            got = await client.get("/api/tunnels", params={"rstream.token": token})
            assert got.status_code == 401


async def test_unauthenticated_documents(tmp_path: Path) -> None:
    async with running_engine(tmp_path) as engine, api(engine, token="") as client:
        discovery = await client.get("/.well-known/rstream/engine")
        assert discovery.status_code == 200
        assert discovery.headers["cache-control"] == "max-age=300"
        body = discovery.json()
        assert body["version"] == 1 and body["engine"] == "localhost" and "engine-api" in body["capabilities"]
        document = (await client.get("/api/openapi.json")).json()
        _validate(document, schema_of(document, "/.well-known/rstream/engine"), body)
        assert set(document["paths"]) >= {"/api/auth", "/api/tunnels", "/api/tunnels/{id}", "/api/clients"}
        assert set(document["paths"]) >= {"/api/webhooks", "/api/webhooks/{id}", "/api/webhooks/{id}/rotate",
                                          "/api/webhooks/{id}/deliveries",
                                          "/api/webhooks/{id}/deliveries/{delivery_id}/redeliver"}
        assert set(document["paths"]["/api/webhooks/{id}"]) == {"get", "delete"}
        assert {"WebhookCreate", "WebhookView", "DeliveryView"} <= set(document["components"]["schemas"])


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "h2"])
async def test_minting_a_derived_token(tmp_path: Path, http2: bool) -> None:
    async with running_engine(tmp_path) as engine:
        parent = mint_token(engine.secret, subject="ci", ttl_s=600,
                            extra={"permissions": ["tunnels.tunnels.create-delete", "tunnels.resources.read-only"]})
        async with api(engine, http2=http2, token=parent) as client:
            got = await client.post("/api/tokens", json={"expires_in": 3600,
                                                         "permissions": ["tunnels.resources.read-only"]})
            assert got.status_code == 200, got.text
            minted = got.json()
            claims = jwt.decode(minted["token"], engine.secret, algorithms=["HS256"])
            assert claims["sub"] == "ci" and claims["permissions"] == ["tunnels.resources.read-only"]
            assert claims["exp"] <= time.time() + 601  # capped by the parent's expiry, not 3600 s
            assert claims["metadata"] == {"engine": "localhost"} and claims["sourceCredentialId"]
            assert minted["expires_at"] == claims["exp"]
            default = (await client.post("/api/tokens")).json()  # no body: 60 s, the parent's permissions
            claims = jwt.decode(default["token"], engine.secret, algorithms=["HS256"])
            assert claims["exp"] - claims["iat"] == 60 and len(claims["permissions"]) == 2
            for body, status, fragment in [
                ({"permissions": ["account.projects.read-write"]}, 403, "account.projects.read-write"),
                ({"expires_in": 4000}, 400, "expires_in"),
                ({"colour": 1}, 400, "colour"),
                ({"resources": {"workspaces": []}}, 400, "resources"),
                ({"resources": {"tunnels": {"scopes": {"tunnels": {"lists": True}}}}}, 400, "resources.tunnels"),
                ({"resources": {"tunnels": {"AND": []}}}, 400, "empty AND"),
            ]:
                got = await client.post("/api/tokens", json=body)
                assert got.status_code == status, got.text
                assert fragment in got.json()["error"]
            got = await client.post("/api/tokens", content=b"{" * 70_000, headers={"content-type": "application/json"})
            assert got.status_code == 413
        async with api(engine, http2=http2, token=minted["token"]) as client:  # the derived token works
            assert (await client.get("/api/auth")).json()["subject"] == "ci"
        control = await engine.client(token=minted["token"]).connect()
        await control.close()


async def test_minting_can_be_turned_off(tmp_path: Path) -> None:
    async with running_engine(tmp_path, "auth:\n  jwt:\n    token_minting: false\n") as engine, \
            api(engine) as client:
        got = await client.post("/api/tokens", json={})
        assert got.status_code == 403 and "token_minting" in got.json()["error"]
        assert (await client.get("/api/tokens")).status_code == 405
