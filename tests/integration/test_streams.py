"""Stream brokering details (protocol facts §2.6): stream ids, secret lifetime, an agent that never answers."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from portway import __version__
from portway.wire import messages
from portway.wire.messages import ClientDetails, TunnelProperties
from tests.conftest import (
    UNIT_S,
    EngineHandle,
    close_writer,
    open_agent_connection,
    read_until_closed,
    running_engine,
    send_frame,
)
from tests.integration.helpers import RawAgent, visit

FAST_STREAMS = "  stream_request_seconds: 0.5\n"


async def _raw_http_tunnel(engine: EngineHandle) -> tuple[RawAgent, TunnelProperties]:
    """A hand-written agent holding one published HTTP tunnel; it answers nothing unless told to."""
    agent = await RawAgent.connect(engine)
    await agent.open_control(engine.token())
    agent.start()
    return agent, await agent.create("r1", TunnelProperties(protocol="http"))


async def test_stream_ids_are_24_lowercase_hex_and_secrets_differ(tmp_path: Path) -> None:
    async with running_engine(tmp_path, FAST_STREAMS) as engine:
        agent, props = await _raw_http_tunnel(engine)
        assert props.hostname is not None
        visits = [asyncio.ensure_future(visit(engine, props.hostname)) for _ in range(2)]
        requests = [(await agent.expect("proxy_conn_req")).proxy_conn_req for _ in range(2)]
        for req in requests:
            assert re.fullmatch(r"[0-9a-f]{24}", req.stream_id)
            assert req.tunnel_id == props.id
            assert len(req.secret.value) >= 32
            assert req.source_ip.WhichOneof("addr") == "v4"
        assert requests[0].stream_id != requests[1].stream_id
        assert requests[0].secret.value != requests[1].secret.value
        await asyncio.gather(*visits, return_exceptions=True)
        await agent.close()


async def test_agent_that_never_answers_gets_the_visitor_a_504(tmp_path: Path) -> None:
    async with running_engine(tmp_path, FAST_STREAMS) as engine:
        agent, props = await _raw_http_tunnel(engine)
        assert props.hostname is not None
        status, body = await asyncio.wait_for(visit(engine, props.hostname), 5 * UNIT_S)
        assert status == 504
        assert props.hostname.encode() in body
        await agent.close()


async def test_secret_used_after_the_request_expired_is_refused(tmp_path: Path) -> None:
    async with running_engine(tmp_path, FAST_STREAMS) as engine:
        agent, props = await _raw_http_tunnel(engine)
        assert props.hostname is not None
        visitor = asyncio.ensure_future(visit(engine, props.hostname))
        req = (await agent.expect("proxy_conn_req")).proxy_conn_req
        assert (await visitor)[0] == 504  # the engine gave up after stream_request_seconds
        reader, writer = await open_agent_connection(engine)
        details = ClientDetails.local(req.secret.value, version=__version__)
        send_frame(writer, messages.proxy_req(details, req.stream_id, zero_rtt=False))
        reply = await read_until_closed(reader)
        decoded = messages.Message()
        decoded.ParseFromString(reply[4:])
        assert decoded.proxy_rsp.error.code == 4000  # INVALID_STREAM: the secret died with its request
        await close_writer(writer)
        await agent.close()
