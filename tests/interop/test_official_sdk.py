"""The unmodified official rstream Python SDK (`rstreamlabs-rstream`, import `rstream`) against a
`portway engine` subprocess: control channels, published HTTP/TCP tunnels, private tunnels dialed
both ways between the two SDKs, clean shutdown, auth errors and negotiated liveness."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import TypeVar

import pytest
import rstream
import rstream.config

from portway.engine.auth import mint_token
from tests.conftest import (
    UNIT_S,
    EchoServer,
    EngineProcess,
    http_get,
    start_engine_process,
    stop_engine_process,
)

pytestmark = pytest.mark.interop

T = TypeVar("T")
WAIT_S = 10 * UNIT_S


async def bounded(awaitable: Awaitable[T], timeout: float = WAIT_S) -> T:
    return await asyncio.wait_for(awaitable, timeout)


def official_client(handle: EngineProcess, token: str | None = None, server_name: str | None = None,
                    **kwargs: object) -> rstream.Client:
    """An official SDK client aimed at the engine (by IP literal unless `engine=` is given), trusting
    the engine's own CA."""
    options: dict[str, object] = {"engine": handle.address, "connect_timeout": WAIT_S,
                                  "operation_timeout": WAIT_S, **kwargs}
    return rstream.Client(
        token=token or handle.token(),
        tls=rstream.TLSOptions(ca_file=str(handle.ca_file), server_name=server_name),
        read_config_file=False,
        **options,  # type: ignore[arg-type]
    )


@contextlib.asynccontextmanager
async def official(handle: EngineProcess, **kwargs: object) -> AsyncIterator[rstream.Client]:
    client = official_client(handle, **kwargs)
    try:
        yield client
    finally:
        await bounded(client.close())


async def wait_for_log(handle: EngineProcess, text: str, timeout: float = 5 * UNIT_S) -> str:
    deadline = time.monotonic() + timeout
    while True:
        logs = handle.logs()
        if text in logs or time.monotonic() > deadline:
            return logs
        await asyncio.sleep(0.05)


async def finish(task: asyncio.Task[T]) -> None:
    """Cancel a helper task and wait for it (bounded) so nothing outlives the test."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(task, WAIT_S)


async def echo_once(stream: rstream.RstreamStream | object) -> None:
    """Serve one accepted stream (either SDK's): echo every byte until EOF."""
    reader = stream.reader  # type: ignore[attr-defined]
    writer = stream.writer  # type: ignore[attr-defined]
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


# ---------------------------------------------------------------- control channel


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_official_sdk_opens_control_channel(engine_process: EngineProcess, host: str) -> None:
    """By IP literal (certificate IP name) and by DNS name (SNI = engine host)."""
    async with official(engine_process, engine=f"{host}:{engine_process.port}") as client:
        control = await bounded(client.connect())
        details = control.server_details
        assert details is not None
        assert details.agent == "portway-engine"
        assert details.version
        assert not control.closed
        await bounded(control.close())
        assert control.closed
    logs = await wait_for_log(engine_process, "closed by agent")
    assert "agent=rstream-python-runtime" in logs
    assert "(closed by agent)" in logs


async def test_official_sdk_legacy_heartbeats_without_liveness(engine_process: EngineProcess) -> None:
    """heartbeat=False: the SDK asks for no liveness, so the engine must not negotiate any."""
    async with official(engine_process, heartbeat=False) as client:
        control = await bounded(client.connect())
        tunnel = await bounded(control.create_tunnel(publish=False, name="legacy-svc"))
        assert tunnel.id
        await bounded(control.close())
    assert "(liveness legacy)" in await wait_for_log(engine_process, "(liveness legacy)")


async def test_official_sdk_wrong_token_is_engine_error_1000(engine_process: EngineProcess) -> None:
    wrong = mint_token("not-the-engine-secret-" * 2, subject="intruder", ttl_s=600)
    async with official(engine_process, token=wrong) as client:
        with pytest.raises(rstream.EngineError) as caught:
            await bounded(client.connect())
    assert caught.value.engine_code == 1000


# ---------------------------------------------------------------- published tunnels


async def test_official_sdk_http_tunnel_serves_keepalive_requests(engine_process: EngineProcess) -> None:
    async with EchoServer(http=True) as upstream, official(engine_process) as client:
        control = await bounded(client.connect())
        tunnel = await bounded(control.create_tunnel(protocol="http"))
        hostname = tunnel.properties.hostname
        assert hostname is not None and hostname.endswith(".t.localhost")
        assert tunnel.properties.protocol == "http"
        assert tunnel.properties.publish is True
        assert tunnel.forwarding_address == f"https://{hostname}:{engine_process.port}"
        forwarding = asyncio.create_task(tunnel.forward_to("127.0.0.1", upstream.port))
        try:
            reader, writer = await bounded(engine_process.open_visitor(hostname))
            try:
                for i in range(3):
                    status, body = await http_get(reader, writer, hostname, f"/req{i}?n={i}")
                    assert status == 200
                    assert body.startswith(f"GET /req{i}?n={i} HTTP/1.1".encode())
                    assert f"Host: {hostname}".encode() in body
                    assert b"X-Forwarded-Proto: https" in body
            finally:
                writer.close()
            # Closing the tunnel ends forward_to() by itself (the SDK's accept loop stops).
            await bounded(tunnel.close())
            await bounded(forwarding)
            assert tunnel.closed
        finally:
            await finish(forwarding)
        await bounded(control.close())
    logs = await wait_for_log(engine_process, f"tunnel {tunnel.id} closed by agent")
    assert f"tunnel {tunnel.id} closed by agent" in logs
    assert upstream.peers == ["127.0.0.1"]  # one keep-alive upstream connection for the 3 requests


async def test_official_sdk_agent_without_zero_rtt_gets_proxy_rsp(engine_process: EngineProcess) -> None:
    """With zero_rtt=False the SDK waits for ProxyRsp on each data connection (§2.6 step 4)."""
    async with EchoServer(http=True) as upstream, official(engine_process, zero_rtt=False) as client:
        control = await bounded(client.connect())
        tunnel = await bounded(control.create_tunnel(protocol="http"))
        hostname = tunnel.properties.hostname
        assert hostname is not None
        forwarding = asyncio.create_task(tunnel.forward_to("127.0.0.1", upstream.port))
        try:
            reader, writer = await bounded(engine_process.open_visitor(hostname))
            try:
                status, body = await http_get(reader, writer, hostname, "/slow-path", body=b"y" * 70_000)
                assert status == 200 and body.endswith(b"y" * 70_000)
            finally:
                writer.close()
        finally:
            await finish(forwarding)
        await bounded(control.close())


async def test_official_sdk_tcp_tunnel(engine_process: EngineProcess) -> None:
    async with EchoServer() as upstream, official(engine_process) as client:
        control = await bounded(client.connect())
        tunnel = await bounded(control.create_tunnel(protocol="tcp"))
        port = tunnel.properties.port
        assert tunnel.properties.protocol == "tcp" and port is not None
        assert tunnel.forwarding_address.endswith(f":{port} (tcp)")
        forwarding = asyncio.create_task(tunnel.forward_to("127.0.0.1", upstream.port))
        try:
            reader, writer = await bounded(asyncio.open_connection("127.0.0.1", port))
            try:
                for chunk in (b"ping\n", b"x" * 200_000):
                    writer.write(chunk)
                    await writer.drain()
                    assert await bounded(reader.readexactly(len(chunk))) == chunk
            finally:
                writer.close()
            await bounded(tunnel.close())
            await bounded(forwarding)
        finally:
            await finish(forwarding)
        await bounded(control.close())
    logs = await wait_for_log(engine_process, f"tunnel {tunnel.id} closed by agent")
    assert f"tunnel {tunnel.id} closed by agent" in logs


async def test_official_sdk_stable_hostname_is_accepted_and_served(tmp_path: Path) -> None:
    """The SDK's stable domains (`r<8 hex>-<first label>.t.<rest>`, protocol facts §2.5) must be
    accepted by the engine AND covered by its certificate, or visitors get a TLS name mismatch."""
    handle = start_engine_process(tmp_path, env={"RSTREAM_ENGINE_ENGINE__HOST": "edge.localhost"})
    try:
        async with EchoServer(http=True) as upstream, official(handle, server_name="edge.localhost") as client:
            stable = rstream.generate_stable_domain(f"edge.localhost:{handle.port}")
            assert stable is not None and stable.endswith("-edge.t.localhost")
            control = await bounded(client.connect())
            tunnel = await bounded(control.create_tunnel(protocol="http", hostname=stable))
            assert tunnel.properties.hostname == stable
            assert tunnel.forwarding_address == f"https://{stable}:{handle.port}"
            # ... and an engine-allocated name under *.t.edge.localhost keeps working next to it.
            allocated = await bounded(control.create_tunnel(protocol="http"))
            assert (allocated.properties.hostname or "").endswith(".t.edge.localhost")
            forwarders = [asyncio.create_task(t.forward_to("127.0.0.1", upstream.port)) for t in (tunnel, allocated)]
            try:
                for hostname in (stable, allocated.properties.hostname or ""):
                    reader, writer = await bounded(handle.open_visitor(hostname))
                    try:
                        status, body = await http_get(reader, writer, hostname, "/stable")
                    finally:
                        writer.close()
                    assert status == 200 and f"Host: {hostname}".encode() in body
            finally:
                for forwarding in forwarders:
                    await finish(forwarding)
            await bounded(control.close())
    finally:
        stop_engine_process(handle)


async def test_official_sdk_unavailable_feature_is_refused_cleanly(engine_process: EngineProcess) -> None:
    """CE has no rstream Auth: the request fails with FEATURE_NOT_AVAILABLE and the channel lives on."""
    async with official(engine_process) as client:
        control = await bounded(client.connect())
        with pytest.raises(rstream.EngineError) as caught:
            await bounded(control.create_tunnel(protocol="http", rstream_auth=True))
        assert caught.value.engine_code == 5000
        tunnel = await bounded(control.create_tunnel(protocol="http"))
        assert tunnel.properties.hostname
        await bounded(control.close())


async def test_official_sdk_sees_engine_retire_a_tunnel(engine_process: EngineProcess) -> None:
    """The same credential reconnecting takes a name back; the engine retires the old tunnel with an
    unsolicited CloseTunnelRsp, which the SDK must treat as "tunnel closed"."""
    token = engine_process.token()
    async with official(engine_process, token=token) as first, official(engine_process, token=token) as second:
        old_control = await bounded(first.connect())
        old = await bounded(old_control.create_tunnel(publish=False, name="moving-svc"))
        new_control = await bounded(second.connect())
        new = await bounded(new_control.create_tunnel(publish=False, name="moving-svc"))
        with pytest.raises(rstream.RuntimeError, match="closed"):
            await bounded(old.accept())
        assert old.closed and not new.closed and not old_control.closed
        accepted = asyncio.create_task(new.accept())
        try:
            stream = await bounded(first.dial("moving-svc"))
            async with stream, await bounded(accepted) as served:
                stream.write(b"to the new owner")
                await stream.drain()
                assert await bounded(served.readexactly(16)) == b"to the new owner"
        finally:
            await finish(accepted)
        await bounded(old_control.close())
        await bounded(new_control.close())


# ---------------------------------------------------------------- private tunnels


async def test_official_sdk_private_tunnel_dialed_by_both_sdks(engine_process: EngineProcess) -> None:
    async with official(engine_process) as client:
        control = await bounded(client.connect())
        tunnel = await bounded(control.create_tunnel(publish=False, name="interop-svc"))
        assert tunnel.properties.publish is False
        assert tunnel.properties.name == "interop-svc"
        assert tunnel.forwarding_address == "rstrm://interop-svc (unpublished)"
        served: list[asyncio.Task[None]] = []

        async def serve() -> None:
            while True:
                stream = await tunnel.accept()
                served.append(asyncio.create_task(echo_once(stream)))

        server = asyncio.create_task(serve())
        try:
            dialers: list[tuple[str, Awaitable[object]]] = [
                ("official zero-rtt", client.dial("interop-svc")),
                ("official with StreamRsp", client.dial("interop-svc", zero_rtt=False)),
                ("portway zero-rtt", engine_process.client().dial("interop-svc")),
                ("portway with StreamRsp", engine_process.client().dial("interop-svc", zero_rtt=False)),
            ]
            for label, dial in dialers:
                stream = await bounded(dial)
                reader: asyncio.StreamReader = stream.reader  # type: ignore[attr-defined]
                writer: asyncio.StreamWriter = stream.writer  # type: ignore[attr-defined]
                try:
                    message = f"hello from {label}\n".encode()
                    writer.write(message)
                    await writer.drain()
                    assert await bounded(reader.readexactly(len(message))) == message, label
                    writer.write(b"again")
                    await writer.drain()
                    assert await bounded(reader.readexactly(5)) == b"again", label
                finally:
                    writer.close()
                    with contextlib.suppress(Exception):
                        await bounded(writer.wait_closed())
            assert len(served) == 4
            await bounded(asyncio.gather(*served))  # each served stream saw its dialer close
            await bounded(tunnel.close())
            with pytest.raises(rstream.RuntimeError):
                await bounded(tunnel.accept())
        finally:
            await finish(server)
            for task in served:
                await finish(task)
        # After the close, the name no longer resolves.
        with pytest.raises(rstream.EngineError) as caught:
            await bounded(client.dial("interop-svc", zero_rtt=False))
        assert caught.value.engine_code == 3000
        await bounded(control.close())
        assert control.closed
    logs = await wait_for_log(engine_process, "(closed by agent)")
    assert f"tunnel {tunnel.id} closed by agent" in logs
    assert "(closed by agent)" in logs


async def test_portway_private_tunnel_dialed_by_official_sdk(engine_process: EngineProcess) -> None:
    control = await bounded(engine_process.client().connect())
    try:
        tunnel = await bounded(control.create_tunnel(publish=False, name="portway-svc"))
        served: list[asyncio.Task[None]] = []

        async def serve() -> None:
            async for stream in tunnel:
                served.append(asyncio.create_task(echo_once(stream)))

        server = asyncio.create_task(serve())
        try:
            async with official(engine_process) as client:
                for zero_rtt in (True, False):
                    stream = await bounded(client.dial("portway-svc", zero_rtt=zero_rtt))
                    async with stream:
                        stream.write(b"ping")
                        await stream.drain()
                        assert await bounded(stream.readexactly(4)) == b"ping"
                        big = bytes(range(256)) * 400
                        stream.write(big)
                        await stream.drain()
                        assert await bounded(stream.readexactly(len(big))) == big
                # The tunnel id works as a dial key too.
                stream = await bounded(client.dial(tunnel.id, zero_rtt=False))
                async with stream:
                    stream.write(b"id")
                    await stream.drain()
                    assert await bounded(stream.readexactly(2)) == b"id"
            await bounded(asyncio.gather(*served))
        finally:
            await finish(server)
            for task in served:
                await finish(task)
    finally:
        await bounded(control.close())


# ---------------------------------------------------------------- liveness


async def test_official_sdk_negotiated_liveness_stays_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK announces a 200 ms interval; with a 1 s engine timeout both sides would drop the
    channel within ~1 s if heartbeats were not acknowledged correctly (the SDK also aborts on any
    out-of-order or excess acknowledgement)."""
    # The SDK's option validation insists on >= 1 s; lower that floor (only the check, not the protocol
    # code) so the test sees several heartbeats in a short time.
    monkeypatch.setattr(rstream.config, "MIN_HEARTBEAT_INTERVAL_MS", 100)
    handle = start_engine_process(tmp_path, env={"RSTREAM_ENGINE_TIMEOUTS__HEARTBEAT_TIMEOUT_SECONDS": "1"})
    try:
        async with official(handle, heartbeat_interval=0.2) as client:
            control = await bounded(client.connect())
            await asyncio.sleep(1.5)
            assert not control.closed
            # The SDK keeps its own count of acknowledged heartbeats; several must have arrived.
            acknowledged = getattr(control, "_heartbeat_acknowledgement", None)
            if acknowledged is not None:
                assert acknowledged >= 4
            tunnel = await bounded(control.create_tunnel(publish=False, name="alive-svc"))
            assert tunnel.id
            await bounded(control.close())
        logs = await wait_for_log(handle, "(closed by agent)")
        assert "(liveness 200ms/1000ms)" in logs
        assert "liveness expired" not in logs
        assert "protocol violation" not in logs
    finally:
        stop_engine_process(handle)


async def test_official_sdk_token_auth_tunnel_never_sees_unauthenticated_requests(
    engine_process: EngineProcess,
) -> None:
    async with EchoServer(http=True) as upstream, official(engine_process) as client:
        control = await bounded(client.connect())
        tunnel = await bounded(control.create_tunnel(protocol="http", token_auth=True))
        assert tunnel.properties.token_auth is True
        hostname = tunnel.properties.hostname
        assert hostname is not None
        forwarding = asyncio.create_task(tunnel.forward_to("127.0.0.1", upstream.port))
        try:
            for headers in ("", "Authorization: Bearer not-a-token\r\n"):
                reader, writer = await bounded(engine_process.open_visitor(hostname))
                try:
                    status, _ = await http_get(reader, writer, hostname, "/private", headers=headers)
                    assert status == 401
                finally:
                    writer.close()
            assert upstream.peers == []  # no stream was ever asked of the agent
            reader, writer = await bounded(engine_process.open_visitor(hostname))
            try:
                status, body = await http_get(reader, writer, hostname, "/private",
                                              headers=f"Authorization: Bearer {engine_process.token()}\r\n")
                assert status == 200
                assert body.startswith(b"GET /private HTTP/1.1")
                assert b"authorization" not in body.lower()
            finally:
                writer.close()
        finally:
            await finish(forwarding)
        await bounded(control.close())
