"""keep_tunnel: an agent survives an engine restart and gets its public hostname back."""

from __future__ import annotations

import asyncio
from pathlib import Path

from portway.agent import Backoff, Tunnel, keep_tunnel
from portway.engine import Engine
from portway.engine.configfile import load_config
from portway.engine.state import EngineState
from portway.wire.messages import TunnelProperties
from tests.conftest import EchoServer, EngineHandle, engine_yaml, http_get


async def _start(tmp_path: Path, port: int) -> tuple[Engine, EngineHandle]:
    config_file = tmp_path / "engine.yaml"
    config_file.write_text(engine_yaml().replace("127.0.0.1:0", f"127.0.0.1:{port}"))
    state = EngineState.open(tmp_path / "state", engine_host="localhost", jwt_secret=None)
    server = Engine(load_config(str(config_file), {}), state)
    await server.start()
    return server, EngineHandle(server.port, state.ca_path, state.jwt_secret, server)


async def test_agent_reconnects_after_engine_restart_with_same_hostname(tmp_path: Path) -> None:
    server, handle = await _start(tmp_path, 0)
    port = handle.port
    online: asyncio.Queue[Tunnel] = asyncio.Queue()
    states: list[str] = []

    def on_state(state: str, tunnel: Tunnel | None, error: BaseException | None) -> None:
        states.append(state)
        if tunnel is not None:
            online.put_nowait(tunnel)

    async with EchoServer(http=True) as upstream:
        client = handle.client(token=handle.token(ttl_s=3600))
        job = asyncio.ensure_future(keep_tunnel(client, TunnelProperties(protocol="http"), ("127.0.0.1", upstream.port),
                                                on_state=on_state, backoff=Backoff(initial_s=0.05, maximum_s=0.2)))
        try:
            first = await asyncio.wait_for(online.get(), 5)
            hostname = first.properties.hostname
            assert hostname is not None
            await server.stop()
            server, handle = await _start(tmp_path, port)  # same port, same state (CA, secret)
            second = await asyncio.wait_for(online.get(), 10)
            assert second.properties.hostname == hostname
            assert "reconnecting" in states
            reader, writer = await handle.open_visitor(hostname)
            status, body = await http_get(reader, writer, hostname, "/again")
            assert status == 200 and body.startswith(b"GET /again")
            writer.close()
        finally:
            job.cancel()
            await asyncio.gather(job, return_exceptions=True)
            await server.stop()
