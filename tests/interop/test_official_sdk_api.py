"""The official SDK's Engine API calls (`list_tunnels`, `list_clients`) against a Portway engine."""

from __future__ import annotations

import pytest
import rstream
from rstream.engine_api import ClientFilters, TunnelFilters

from tests.conftest import EngineProcess
from tests.interop.test_official_sdk import bounded, official

pytestmark = pytest.mark.interop


async def test_list_tunnels_and_clients(engine_process: EngineProcess) -> None:
    async with official(engine_process) as client:
        control = await bounded(client.connect())
        web = await bounded(control.create_tunnel(protocol="http", labels={"app": "web"}))
        private = await bounded(control.create_tunnel(name="db", publish=False))
        try:
            listed = await bounded(client.list_tunnels())
            assert {t.properties.id for t in listed} == {web.id, private.id}
            mine = await bounded(client.list_tunnels(filters=TunnelFilters(labels={"app": "web"})))
            assert [t.properties.id for t in mine] == [web.id]
            assert mine[0].status == "online" and mine[0].client_id
            assert mine[0].properties.hostname == web.properties.hostname
            named = await bounded(client.list_tunnels(filters=TunnelFilters(name="db", publish=False)))
            assert [t.properties.id for t in named] == [private.id]
            assert len(await bounded(client.list_tunnels(limit=1))) == 1
            clients = await bounded(client.list_clients())
            assert [c["id"] for c in clients] == [mine[0].client_id]
            assert clients[0]["agent"]
            by_agent = await bounded(client.list_clients(filters=ClientFilters(agent="nobody")))
            assert by_agent == []
        finally:
            await bounded(control.close())


async def test_a_bad_token_is_an_sdk_error(engine_process: EngineProcess) -> None:
    async with official(engine_process, token="not-a-token") as client:
        with pytest.raises(rstream.RstreamError, match="401"):
            await bounded(client.list_tunnels())


@pytest.mark.parametrize("transport", ["sse", "websocket"])
async def test_watch(engine_process: EngineProcess, transport: str) -> None:
    async with official(engine_process) as client:
        stream = client.watch(tunnels=TunnelFilters(labels={"app": None}), transport=transport)  # type: ignore[arg-type]
        async with stream:
            initial = await bounded(stream.__anext__())
            assert initial.type == "state.initial" and initial.object is not None
            assert initial.object["tunnels"] == []
            control = await bounded(client.connect())
            try:
                await bounded(control.create_tunnel(name="plain", publish=False))  # filtered out
                labelled = await bounded(control.create_tunnel(name="web", publish=False, labels={"app": "x"}))
                kinds = []
                while "tunnel.created" not in kinds:
                    event = await bounded(stream.__anext__())
                    kinds.append(event.type)
                    if event.type == "tunnel.created":
                        assert event.object is not None and event.object["id"] == labelled.id
                        assert event.id is not None and event.created_at is not None
                assert kinds[0] == "client.created"
            finally:
                await bounded(control.close())
