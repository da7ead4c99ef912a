"""Bad input on the engine's port: each is answered or closed, logged exactly once, and never disturbs the
other tunnels (every test ends with a request through a live HTTP tunnel).

A StreamReq for a missing tunnel is covered in test_private_tunnel.py
(test_dial_missing_name_is_refused, test_dial_missing_name_zero_rtt_closes_without_bytes).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from portway import __version__
from portway.agent import Client, ControlChannel, TLSOptions, Tunnel
from portway.engine.auth import mint_token
from portway.errors import EngineRejected
from portway.wire import messages
from portway.wire._pb import rstream_pb2 as pb
from portway.wire.errors import FrameUndecodable
from portway.wire.framing import decode_message
from portway.wire.messages import ClientDetails, TunnelProperties
from tests.conftest import (
    UNIT_S,
    EchoServer,
    EngineHandle,
    close_writer,
    log_count,
    open_agent_connection,
    read_frame,
    read_until_closed,
    send_frame,
)
from tests.integration.helpers import RawAgent, echo, visit

AGENT_LOG = "portway.engine.agent"
SESSION_LOG = "portway.engine.session"
LISTENER_LOG = "portway.engine.listener"


@dataclass
class LiveTunnel:
    engine: EngineHandle
    control: ControlChannel
    tunnel: Tunnel

    async def check(self) -> None:
        """The bystander tunnel still serves requests."""
        assert not self.control.closed
        assert self.tunnel.properties.hostname is not None
        status, body = await visit(self.engine, self.tunnel.properties.hostname, "/still-alive")
        assert status == 200
        assert body.startswith(b"GET /still-alive HTTP/1.1")


@pytest.fixture
async def live(engine: EngineHandle, caplog: pytest.LogCaptureFixture) -> AsyncIterator[LiveTunnel]:
    """A healthy HTTP tunnel of another agent, plus INFO log capture of the engine."""
    caplog.set_level(logging.INFO, logger="portway.engine")
    async with EchoServer(http=True) as upstream:
        control = await engine.client().connect()
        tunnel = await control.create_tunnel(protocol="http")
        forwarding = asyncio.ensure_future(tunnel.forward_to("127.0.0.1", upstream.port))
        try:
            yield LiveTunnel(engine, control, tunnel)
        finally:
            forwarding.cancel()
            await control.close()


async def send_raw_and_wait_close(engine: EngineHandle, data: bytes) -> bytes:
    reader, writer = await open_agent_connection(engine)
    try:
        writer.write(data)
        return await read_until_closed(reader)
    finally:
        await close_writer(writer)


# ---- first frame ----


async def test_malformed_first_frame_closes_the_connection(live: LiveTunnel,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    garbage = random.Random(7).randbytes(40)
    with pytest.raises(FrameUndecodable):
        decode_message(garbage)
    assert await send_raw_and_wait_close(live.engine, len(garbage).to_bytes(4, "big") + garbage) == b""
    assert log_count(caplog, AGENT_LOG, "bad first frame") == 1
    await live.check()


async def test_oversize_frame_header_closes_the_connection(live: LiveTunnel,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    assert await send_raw_and_wait_close(live.engine, (70_000).to_bytes(4, "big") + b"x" * 100) == b""
    assert log_count(caplog, AGENT_LOG, "70000") == 1
    await live.check()


async def test_unknown_first_message_closes_the_connection(live: LiveTunnel,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    frame = messages.heartbeat(1)
    reader, writer = await open_agent_connection(live.engine)
    try:
        send_frame(writer, frame)
        assert await read_until_closed(reader) == b""
    finally:
        await close_writer(writer)
    assert log_count(caplog, AGENT_LOG, "unexpected first frame heartbeat") == 1
    await live.check()


# ---- tokens ----


def _wrong(engine: EngineHandle) -> str | None:
    return "not-a-jwt"


def _expired(engine: EngineHandle) -> str | None:
    return mint_token(engine.secret, subject="late", ttl_s=60, now=time.time() - 3600)


def _other_secret(engine: EngineHandle) -> str | None:
    return mint_token("another-secret-of-sufficient-length-0123", subject="forger", ttl_s=600)


def _missing(engine: EngineHandle) -> str | None:
    return None


@pytest.mark.parametrize(("make_token", "reason"), [
    (_wrong, "malformed"), (_expired, "expired"), (_other_secret, "signature"), (_missing, "missing"),
], ids=["wrong", "expired", "other-secret", "none"])
async def test_bad_token_is_refused(live: LiveTunnel, caplog: pytest.LogCaptureFixture,
                                    make_token: Callable[[EngineHandle], str | None], reason: str) -> None:
    client = Client(live.engine.address, make_token(live.engine), tls=TLSOptions(ca_file=str(live.engine.ca_file)),
                    operation_timeout_s=5, connect_timeout_s=5)
    with pytest.raises(EngineRejected) as refused:
        await client.connect()
    assert refused.value.code == 1000
    assert reason in refused.value.detail
    assert log_count(caplog, AGENT_LOG, "control channel unauthorized") == 1
    await live.check()


# ---- data connections ----


async def test_reused_proxy_secret_is_refused(live: LiveTunnel, caplog: pytest.LogCaptureFixture) -> None:
    raw = await RawAgent.connect(live.engine)
    data_writers: list[asyncio.StreamWriter] = []
    visitor: asyncio.StreamWriter | None = None
    try:
        assert (await raw.open_control(live.engine.token())).WhichOneof("payload") == "ok"
        raw.start()
        tcp = await raw.create("t", TunnelProperties(protocol="tcp"))
        assert tcp.port is not None
        visitor_reader, visitor = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", tcp.port),
                                                         5 * UNIT_S)
        visitor.write(b"first")
        req, data_reader, data_writer = await raw.accept()
        data_writers.append(data_writer)
        echoing = asyncio.ensure_future(echo(data_reader, data_writer))
        assert await asyncio.wait_for(visitor_reader.readexactly(5), 5 * UNIT_S) == b"first"

        replay = messages.proxy_req(ClientDetails.local(req.secret.value, version=__version__), req.stream_id,
                                    zero_rtt=True)
        reader, writer = await open_agent_connection(live.engine)
        send_frame(writer, replay)
        assert await read_until_closed(reader) == b""
        await close_writer(writer)
        assert log_count(caplog, AGENT_LOG, "already used stream") == 1

        # with zero_rtt=False the refusal is answered: ProxyRsp{error INVALID_STREAM}
        replay.proxy_req.zero_rtt.value = False
        reader, writer = await open_agent_connection(live.engine)
        send_frame(writer, replay)
        rsp = await read_frame(reader)
        assert rsp.WhichOneof("payload") == "proxy_rsp"
        assert rsp.proxy_rsp.error.code == 4000
        assert await read_until_closed(reader) == b""
        await close_writer(writer)
        assert log_count(caplog, AGENT_LOG, "already used stream") == 2

        # the legitimate stream was not disturbed
        visitor.write(b"second")
        assert await asyncio.wait_for(visitor_reader.readexactly(6), 5 * UNIT_S) == b"second"
        echoing.cancel()
    finally:
        if visitor is not None:
            await close_writer(visitor)
        for writer in data_writers:
            await close_writer(writer)
        await raw.close()
    await live.check()


@pytest.mark.parametrize("zero_rtt", [True, False])
async def test_unknown_stream_id_is_refused(live: LiveTunnel, caplog: pytest.LogCaptureFixture,
                                            zero_rtt: bool) -> None:
    details = ClientDetails.local("not-a-secret", version=__version__)
    reader, writer = await open_agent_connection(live.engine)
    try:
        send_frame(writer, messages.proxy_req(details, "0123456789abcdef01234567", zero_rtt=zero_rtt))
        if not zero_rtt:
            rsp = await read_frame(reader)
            assert rsp.WhichOneof("payload") == "proxy_rsp"
            assert rsp.proxy_rsp.error.code == 4000
        assert await read_until_closed(reader) == b""
    finally:
        await close_writer(writer)
    assert log_count(caplog, AGENT_LOG, "ProxyReq for unknown") == 1
    await live.check()


# ---- silence, vanishing agents, wrong protocol ----


async def test_silent_connections_are_closed_after_first_message_timeout(
        live: LiveTunnel, caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def silent_tcp() -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", live.engine.port)
        try:
            assert await read_until_closed(reader) == b""
        finally:
            await close_writer(writer)
        return loop.time() - started

    async def silent_agent() -> float:
        reader, writer = await open_agent_connection(live.engine)
        try:
            assert await read_until_closed(reader) == b""
        finally:
            await close_writer(writer)
        return loop.time() - started

    before_tls, after_tls = await asyncio.gather(silent_tcp(), silent_agent())
    for elapsed in (before_tls, after_tls):
        assert 1.5 <= elapsed <= 4 * UNIT_S  # first_message_seconds is 2 in the test configuration
    assert log_count(caplog, LISTENER_LOG, "timed out") == 1
    assert log_count(caplog, AGENT_LOG, "sent no frame within") == 1
    await live.check()


class TrackingEcho(EchoServer):
    """An echo upstream that can sever every connection it holds."""

    def __init__(self) -> None:
        super().__init__()
        self.writers: list[asyncio.StreamWriter] = []

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        await super()._handle(reader, writer)

    def sever(self) -> None:
        for writer in self.writers:
            writer.transport.abort()


async def test_agent_vanishing_mid_stream(live: LiveTunnel, caplog: pytest.LogCaptureFixture) -> None:
    async with TrackingEcho() as upstream:
        control = await live.engine.client().connect()
        tunnel = await control.create_tunnel(protocol="tcp")
        forwarding = asyncio.ensure_future(tunnel.forward_to("127.0.0.1", upstream.port))
        assert tunnel.properties.port is not None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", tunnel.properties.port), 5 * UNIT_S)
        try:
            writer.write(b"alive")
            assert await asyncio.wait_for(reader.readexactly(5), 5 * UNIT_S) == b"alive"
            # the agent process dies: its upstream connection and its control connection drop at once
            upstream.sever()
            assert control.transport is not None
            control.transport.abort()
            assert await read_until_closed(reader) == b""
        finally:
            await close_writer(writer)
            forwarding.cancel()
            await control.close()
    await asyncio.sleep(0.05)  # let the engine notice the control connection is gone
    assert log_count(caplog, SESSION_LOG, f"control channel closed: client {control.client_id}") == 1
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", tunnel.properties.port)
    await live.check()


async def test_plain_http_on_the_tls_port_is_closed(live: LiveTunnel, caplog: pytest.LogCaptureFixture) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", live.engine.port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert await read_until_closed(reader) == b""
    finally:
        await close_writer(writer)
    assert log_count(caplog, LISTENER_LOG, "not a TLS handshake") == 1
    await live.check()


# ---- control channel after it opened ----


async def _open_raw_control(live: LiveTunnel) -> RawAgent:
    raw = await RawAgent.connect(live.engine)
    assert (await raw.open_control(live.engine.token(), 1000)).WhichOneof("payload") == "ok"
    return raw


async def test_garbage_on_an_open_control_channel_closes_it(live: LiveTunnel,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    raw = await _open_raw_control(live)
    try:
        raw.writer.write((5).to_bytes(4, "big") + b"\xff\xff\xff\xff\xff")
        assert await read_until_closed(raw.reader) == b""
    finally:
        await raw.close()
    assert log_count(caplog, SESSION_LOG, ": bad frame:") == 1
    assert log_count(caplog, SESSION_LOG, "(bad frame)") == 1  # the channel's own end-of-life line
    await live.check()


@pytest.mark.parametrize("frame", [
    pytest.param(messages.proxy_req(ClientDetails(), "x", zero_rtt=True), id="proxy-req"),
    pytest.param(messages.open_control_channel_req(ClientDetails(), None), id="second-open"),
])
async def test_protocol_violation_on_a_control_channel(live: LiveTunnel, caplog: pytest.LogCaptureFixture,
                                                       frame: pb.Message) -> None:
    raw = await _open_raw_control(live)
    try:
        send_frame(raw.writer, frame)
        notice = await read_frame(raw.reader)
        assert notice.WhichOneof("payload") == "server_message"
        assert "protocol violation" in notice.server_message.message
        assert await read_until_closed(raw.reader) == b""
    finally:
        await raw.close()
    assert log_count(caplog, SESSION_LOG, ": protocol violation:") == 1
    await live.check()


async def test_heartbeat_sequence_must_increase(live: LiveTunnel, caplog: pytest.LogCaptureFixture) -> None:
    raw = await _open_raw_control(live)
    try:
        send_frame(raw.writer, messages.heartbeat(2))
        ack = await read_frame(raw.reader)
        assert ack.heartbeat.acknowledgement == 2
        send_frame(raw.writer, messages.heartbeat(2))
        notice = await read_frame(raw.reader)
        assert notice.WhichOneof("payload") == "server_message"
        assert await read_until_closed(raw.reader) == b""
    finally:
        await raw.close()
    assert log_count(caplog, SESSION_LOG, "does not increase") == 1
    await live.check()


async def test_wrong_secret_does_not_burn_the_stream(live: LiveTunnel, caplog: pytest.LogCaptureFixture) -> None:
    raw = await RawAgent.connect(live.engine)
    writers: list[asyncio.StreamWriter] = []
    try:
        assert (await raw.open_control(live.engine.token())).WhichOneof("payload") == "ok"
        raw.start()
        tcp = await raw.create("t", TunnelProperties(protocol="tcp"))
        assert tcp.port is not None
        visitor_reader, visitor = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", tcp.port),
                                                         5 * UNIT_S)
        writers.append(visitor)
        visitor.write(b"hi")
        req = (await raw.expect("proxy_conn_req")).proxy_conn_req
        forged = messages.proxy_req(ClientDetails.local("forged-" + req.secret.value, version=__version__),
                                    req.stream_id, zero_rtt=False)
        reader, writer = await open_agent_connection(live.engine)
        writers.append(writer)
        send_frame(writer, forged)
        rsp = await read_frame(reader)
        assert rsp.proxy_rsp.error.code == 4000
        assert await read_until_closed(reader) == b""
        assert log_count(caplog, AGENT_LOG, "ProxyReq for unknown") == 1
        # the real secret still opens the stream
        genuine = messages.proxy_req(ClientDetails.local(req.secret.value, version=__version__), req.stream_id,
                                     zero_rtt=False)
        reader, writer = await open_agent_connection(live.engine)
        writers.append(writer)
        send_frame(writer, genuine)
        rsp = await read_frame(reader)
        assert rsp.WhichOneof("payload") == "proxy_rsp"
        assert not rsp.proxy_rsp.HasField("error")
        assert await asyncio.wait_for(reader.readexactly(2), 5 * UNIT_S) == b"hi"
        writer.write(b"back")
        assert await asyncio.wait_for(visitor_reader.readexactly(4), 5 * UNIT_S) == b"back"
    finally:
        for writer in writers:
            await close_writer(writer)
        await raw.close()
    await live.check()


async def test_agent_vanishing_before_answering_a_stream(live: LiveTunnel,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """The visitor is released as soon as the agent's channel drops, not after stream_request_seconds."""
    raw = await RawAgent.connect(live.engine)
    visitor: asyncio.StreamWriter | None = None
    try:
        assert (await raw.open_control(live.engine.token())).WhichOneof("payload") == "ok"
        raw.start()
        tcp = await raw.create("t", TunnelProperties(protocol="tcp"))
        web = await raw.create("w", TunnelProperties(protocol="http"))
        assert tcp.port is not None
        assert web.hostname is not None
        visitor_reader, visitor = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", tcp.port),
                                                         5 * UNIT_S)
        await raw.expect("proxy_conn_req")
        web_visit = asyncio.ensure_future(visit(live.engine, web.hostname))
        await raw.expect("proxy_conn_req")
        loop = asyncio.get_running_loop()
        started = loop.time()
        raw.writer.transport.abort()
        assert await read_until_closed(visitor_reader) == b""
        status, _ = await asyncio.wait_for(web_visit, 5 * UNIT_S)
        assert status == 503
        assert loop.time() - started < 2 * UNIT_S
    finally:
        if visitor is not None:
            await close_writer(visitor)
        await raw.close()
    await asyncio.sleep(0.05)
    assert log_count(caplog, SESSION_LOG, "(connection closed)") == 1
    await live.check()
