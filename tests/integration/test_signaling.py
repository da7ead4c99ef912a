"""Signaling (§4.2): `/api/sse` and `/api/websocket` over HTTP/1.1 and h2 on a running engine — the
snapshot, then every matching event, in order, none lost or duplicated; filters; keepalives; slow consumers
dropped with a reason; errors. Real TLS, real clients (httpx, websockets, an RFC 8441 client on h2)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import websockets

from portway.agent import ControlChannel
from tests.conftest import UNIT_S, EngineHandle, running_engine
from tests.integration.test_http2_websocket import h2_connect

WAIT_S = 10 * UNIT_S


class SseReader:
    """Reads SSE events (the `data:` JSON of each block; comment lines counted) from an httpx stream."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()
        self.comments: list[str] = []

    async def next(self) -> dict[str, Any]:
        data: list[str] = []
        while True:
            line = await asyncio.wait_for(self.lines.__anext__(), WAIT_S)
            if line.startswith(":"):
                self.comments.append(line)
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif line == "" and data:
                return dict(json.loads("\n".join(data)))


@contextlib.asynccontextmanager
async def sse(engine: EngineHandle, params: dict[str, Any] | None = None, *, http2: bool = False,
              token: str | None = None) -> AsyncIterator[SseReader]:
    query = {"params": json.dumps(params)} if params is not None else {}
    async with httpx.AsyncClient(verify=engine.visitor_tls(), http2=http2, timeout=WAIT_S) as client, \
            client.stream("GET", f"https://127.0.0.1:{engine.port}/api/sse", params=query,
                          headers={"Authorization": f"Bearer {token or engine.token()}"}) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
        yield SseReader(response)


async def open_and_close_a_tunnel(engine: EngineHandle, **fields: object) -> tuple[str, str]:
    """(client id, tunnel id) of a client that made one tunnel and left."""
    control = await engine.client().connect()
    tunnel = await control.create_tunnel(**fields)  # type: ignore[arg-type]
    await control.close()
    assert control.client_id is not None
    return control.client_id, tunnel.id


LIFECYCLE = ["client.created", "tunnel.created", "client.updated", "tunnel.deleted", "client.deleted"]


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "h2"])
async def test_sse_snapshot_then_events(tmp_path: Path, http2: bool) -> None:
    async with running_engine(tmp_path) as engine:
        before = await engine.client().connect()
        try:
            old = await before.create_tunnel(protocol="http", labels={"env": "prod"})
            async with sse(engine, http2=http2) as events:
                initial = await events.next()
                assert initial["type"] == "state.initial"
                assert [t["id"] for t in initial["object"]["tunnels"]] == [old.id]
                assert [c["id"] for c in initial["object"]["clients"]] == [before.client_id]
                client_id, tunnel_id = await open_and_close_a_tunnel(engine, publish=False, name="db")
                got = [await events.next() for _ in LIFECYCLE]
                # client.updated follows a tunnel's creation; tunnels that go with their client need none
                assert [e["type"] for e in got] == LIFECYCLE
                assert {e["object"]["id"] for e in got if e["type"].startswith("tunnel")} == {tunnel_id}
                assert {e["object"]["id"] for e in got if e["type"].startswith("client")} == {client_id}
                assert got[3]["object"]["status"] == "offline" and got[1]["object"]["status"] == "online"
                assert all(e["user_id"] == "test" and e["id"].startswith("evt_") for e in got)
                assert [e["id"] for e in got] == sorted(e["id"] for e in got)
        finally:
            await before.close()


async def test_filters_apply_to_snapshot_and_events(tmp_path: Path) -> None:
    async with running_engine(tmp_path) as engine:
        control = await engine.client().connect()
        try:
            await control.create_tunnel(protocol="http", labels={"env": "dev"})
            kept = await control.create_tunnel(protocol="http", labels={"env": "prod"})
            params = {"tunnels": {"labels": {"env": "prod"}}, "clients": {"agent": "nobody"},
                      "events": ["tunnel.created", "tunnel.deleted", "client.created"]}
            async with sse(engine, params) as events:
                snapshot = (await events.next())["object"]
                assert [t["id"] for t in snapshot["tunnels"]] == [kept.id] and snapshot["clients"] == []
                await open_and_close_a_tunnel(engine, protocol="http", labels={"env": "dev"})
                _, wanted = await open_and_close_a_tunnel(engine, protocol="http", labels={"env": "prod"})
                created, deleted = await events.next(), await events.next()
                assert (created["type"], created["object"]["id"]) == ("tunnel.created", wanted)
                assert (deleted["type"], deleted["object"]["id"]) == ("tunnel.deleted", wanted)
                with pytest.raises(TimeoutError):  # nothing else matched (client events filtered by agent)
                    await asyncio.wait_for(events.next(), 0.5)
        finally:
            await control.close()


async def test_websocket_over_http1_with_header_or_query_token(tmp_path: Path) -> None:
    async with running_engine(tmp_path) as engine:
        base = f"wss://127.0.0.1:{engine.port}/api/websocket"
        params = quote(json.dumps({"tunnels": {"name": "db"}}))
        async with websockets.connect(f"{base}?params={params}", ssl=engine.visitor_tls(),
                                      additional_headers={"Authorization": f"Bearer {engine.token()}"}) as ws, \
                websockets.connect(f"{base}?rstream.token={engine.token()}", ssl=engine.visitor_tls()) as other:
            for conn in (ws, other):
                first = json.loads(await asyncio.wait_for(conn.recv(), WAIT_S))
                assert first["type"] == "state.initial"
            _, tunnel_id = await open_and_close_a_tunnel(engine, publish=False, name="db")
            kinds = []
            for _ in LIFECYCLE:
                event = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
                kinds.append(event["type"])
                if event["type"].startswith("tunnel."):
                    assert event["object"]["id"] == tunnel_id
            assert kinds == LIFECYCLE
            assert json.loads(await asyncio.wait_for(other.recv(), WAIT_S))["type"] == "client.created"
            await asyncio.wait_for(ws.ping(), WAIT_S)  # pings are answered


async def test_websocket_over_http2_extended_connect(tmp_path: Path) -> None:
    async with running_engine(tmp_path) as engine:
        client = await h2_connect(engine, "localhost")
        try:
            await client.open("localhost", f"/api/websocket?rstream.token={engine.token()}")
            assert client.status == 200
            opcode, payload = await client.receive()
            assert opcode == 1 and json.loads(payload)["type"] == "state.initial"
            await open_and_close_a_tunnel(engine, publish=False, name="x")
            opcode, payload = await client.receive()
            assert json.loads(payload)["type"] == "client.created"
            await client.send(9, b"hi")  # a ping: answered with a pong
            while True:
                opcode, payload = await client.receive()
                if opcode == 10:
                    assert payload == b"hi"
                    break
        finally:
            client.writer.close()


async def test_errors(tmp_path: Path) -> None:
    async with running_engine(tmp_path) as engine, \
            httpx.AsyncClient(verify=engine.visitor_tls(), timeout=WAIT_S) as client:
        url = f"https://127.0.0.1:{engine.port}"
        assert (await client.get(f"{url}/api/sse")).status_code == 401
        assert (await client.get(f"{url}/api/sse", params={"rstream.token": "nope"})).status_code == 401
        auth = {"Authorization": f"Bearer {engine.token()}"}
        plain = await client.get(f"{url}/api/websocket", headers=auth)
        assert plain.status_code == 426 and plain.headers["upgrade"] == "websocket"
        for params, fragment in [("{", "JSON"), (json.dumps({"tunnels": {"colour": 1}}), "colour"),
                                 (json.dumps({"sort": 1}), "params takes"), (json.dumps({"events": "x"}), "list"),
                                 (json.dumps({"summaries": 1}), "summaries")]:
            got = await client.get(f"{url}/api/sse", params={"params": params}, headers=auth)
            assert got.status_code == 400 and fragment in got.json()["error"], got.text


async def test_a_slow_consumer_is_dropped_with_a_reason(tmp_path: Path) -> None:
    async with running_engine(tmp_path, "limits:\n  watch_buffer_bytes: 32768\n") as engine:
        assert engine.engine is not None
        ctx = engine.engine.ctx
        assert ctx is not None
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a client that reads nothing
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", engine.port))
        reader, writer = await asyncio.open_connection(sock=sock, ssl=engine.visitor_tls(),
                                                       server_hostname="localhost")
        writer.write(f"GET /api/sse HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {engine.token()}\r\n\r\n"
                     .encode())
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)).startswith(b"HTTP/1.1 200")
        assert len(ctx.watchers) == 1
        control = await engine.client().connect()
        try:
            for _ in range(300):  # each tunnel is 4 events of over 1 KiB: far past the bounds
                tunnel = await control.create_tunnel(protocol="http", labels={"a": "x" * 500, "b": "y" * 500})
                await tunnel.close()
                if not ctx.watchers:
                    break
            assert not ctx.watchers, "the slow watcher was not dropped"
        finally:
            await control.close()
        received = bytearray()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while chunk := await asyncio.wait_for(reader.read(65536), WAIT_S):
                received += chunk
        assert received.endswith(b": disconnected: the client did not keep up with the event stream\n\n")
        writer.close()


async def test_engine_stop_ends_watches(tmp_path: Path) -> None:
    async with running_engine(tmp_path) as engine, sse(engine) as events:
        await events.next()
        assert engine.engine is not None
        await engine.engine.stop()
        with pytest.raises((StopAsyncIteration, httpx.HTTPError)):
            await events.next()
        assert any("shutting down" in c for c in events.comments)


async def test_watch_opened_during_a_burst_sees_the_final_state(tmp_path: Path) -> None:
    """1,000 tunnel creations on 10 channels; a watch opened midway: snapshot + events = the final state,
    with no event twice."""
    async with running_engine(tmp_path) as engine:
        controls: list[ControlChannel] = [await engine.client().connect() for _ in range(10)]
        try:
            async def burst(control: ControlChannel, n: int) -> None:
                for i in range(100):
                    await control.create_tunnel(publish=False, name=f"t{n}-{i}")

            tasks = [asyncio.ensure_future(burst(c, n)) for n, c in enumerate(controls)]
            while len(engine.engine.ctx.registry) < 300:  # type: ignore[union-attr]
                await asyncio.sleep(0.01)
            async with sse(engine) as events:
                state = {t["id"]: t for t in (await events.next())["object"]["tunnels"]}
                await asyncio.wait_for(asyncio.gather(*tasks), 60 * UNIT_S)
                seen: set[str] = set()
                while len(state) < 1000:
                    event = await events.next()
                    assert event["id"] not in seen
                    seen.add(event["id"])
                    if event["type"] == "tunnel.created":
                        assert event["object"]["id"] not in state
                        state[event["object"]["id"]] = event["object"]
            async with httpx.AsyncClient(verify=engine.visitor_tls(), timeout=WAIT_S) as client:
                live = (await client.get(f"https://127.0.0.1:{engine.port}/api/tunnels",
                                         headers={"Authorization": f"Bearer {engine.token()}"})).json()
            assert {t["id"] for t in live} == set(state) and len(state) == 1000
        finally:
            for control in controls:
                await control.close()
