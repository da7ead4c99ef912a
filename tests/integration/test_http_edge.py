"""The HTTP/1.1 edge end to end (real TLS, in-process engine, our SDK as the agent): request smuggling and
oversized requests refused, hop-by-hop and forwarding fields, responses followed (HEAD, 1xx, pipelining,
close-delimited), the access log and status counters, WebSocket and CONNECT, error pages.

Every refusal is answered once, logged once, never reaches the upstream, and leaves the bystander tunnel
serving.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import ServerConnection, serve

from portway.agent import ControlChannel
from portway.engine.context import Counters
from portway.wire.messages import TunnelProperties
from tests.conftest import (
    UNIT_S,
    EchoServer,
    EngineHandle,
    close_writer,
    log_count,
    read_until_closed,
    running_engine,
)
from tests.integration.helpers import RawAgent, visit
from tests.integration.origins import Origin, Seen

ACCESS = "portway.access"


@dataclass
class Edge:
    engine: EngineHandle
    control: ControlChannel
    bystander: str
    forwards: list[asyncio.Future[None]] = field(default_factory=list)

    @property
    def counters(self) -> Counters:
        assert self.engine.engine is not None and self.engine.engine.ctx is not None
        return self.engine.engine.ctx.counters

    async def publish(self, port: int) -> str:
        """A new HTTP tunnel forwarding to 127.0.0.1:`port`; returns its hostname."""
        tunnel = await self.control.create_tunnel(protocol="http")
        self.forwards.append(asyncio.ensure_future(tunnel.forward_to("127.0.0.1", port)))
        assert tunnel.properties.hostname is not None
        return tunnel.properties.hostname

    async def check(self) -> None:
        """The bystander tunnel still serves requests."""
        status, body = await visit(self.engine, self.bystander, "/still-alive")
        assert status == 200
        assert body.startswith(b"GET /still-alive HTTP/1.1")

    def url(self, path: str = "/") -> str:
        return f"https://127.0.0.1:{self.engine.port}{path}"

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(verify=self.engine.visitor_tls(), timeout=10 * UNIT_S)


@pytest.fixture
async def edge(engine: EngineHandle, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Edge]:
    caplog.set_level(logging.INFO, logger="portway")
    async with EchoServer(http=True) as upstream:
        control = await engine.client().connect()
        state = Edge(engine, control, "")
        state.bystander = await state.publish(upstream.port)
        try:
            yield state
        finally:
            for forward in state.forwards:
                forward.cancel()
            await control.close()


async def send_raw(edge: Edge, hostname: str, data: bytes) -> bytes:
    """`data` on a fresh visitor connection; everything the engine sends until it closes."""
    reader, writer = await edge.engine.open_visitor(hostname)
    try:
        writer.write(data)
        return await read_until_closed(reader)
    finally:
        await close_writer(writer)


async def read_response(reader: asyncio.StreamReader, *, head_only: bool = False) -> tuple[int, bytes, bytes]:
    """One response with a Content-Length body (or none): status, head, body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5 * UNIT_S)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = b"" if head_only else await asyncio.wait_for(reader.readexactly(length), 5 * UNIT_S)
    return int(head.split(b" ", 2)[1]), head, body


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:80]
    return int(response.split(b" ", 2)[1])


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == ACCESS]


# ---- request smuggling and malformed heads ----

REFUSED = [
    # llhttp refuses these by default (tests/unit/test_h1rules.py pins it)
    ("duplicate Content-Length",
     b"POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    ("Content-Length list", b"POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 3, 3\r\n\r\nabc", 400),
    ("Transfer-Encoding with Content-Length",
     b"POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("coding other than chunked", b"POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    ("chunked twice", b"POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: {h}\r\nX-A: b\r\n c\r\n\r\n", 400),
    ("bare LF", b"GET / HTTP/1.1\nHost: {h}\n\n", 400),
    ("bare CR in a value", b"GET / HTTP/1.1\r\nHost: {h}\r\nX-A: b\rc\r\n\r\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\nHost: {h}\r\nX-A : b\r\n\r\n", 400),
    ("invalid header name", b"GET / HTTP/1.1\r\nHost: {h}\r\nX(A): b\r\n\r\n", 400),
    ("NUL in a value", b"GET / HTTP/1.1\r\nHost: {h}\r\nX-A: b\x00c\r\n\r\n", 400),
    # the edge's own rules
    ("chunked after another coding", b"POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                                     b"0\r\n\r\n", 400),
    ("Transfer-Encoding in HTTP/1.0", b"POST / HTTP/1.0\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n"
                                      b"0\r\n\r\n", 400),
    ("absolute-form naming another host", b"GET https://other.example/ HTTP/1.1\r\nHost: {h}\r\n\r\n", 400),
    ("userinfo in the target", b"GET https://user@{h}/ HTTP/1.1\r\nHost: {h}\r\n\r\n", 400),
    ("missing Host", b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n", 400),
    ("two Host headers", b"GET / HTTP/1.1\r\nHost: {h}\r\nHost: {h}\r\n\r\n", 400),
    ("invalid Host", b"GET / HTTP/1.1\r\nHost: {h}/x\r\n\r\n", 400),
    ("asterisk target for GET", b"GET * HTTP/1.1\r\nHost: {h}\r\n\r\n", 400),
    ("CONNECT to a path", b"CONNECT /x HTTP/1.1\r\nHost: {h}\r\n\r\n", 400),
    ("Upgrade with a body", b"POST / HTTP/1.1\r\nHost: {h}\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
                            b"Content-Length: 3\r\n\r\nabc", 400),
    ("HTTP/2.0 request line", b"GET / HTTP/2.0\r\nHost: {h}\r\n\r\n", 505),
    ("request target too long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: {h}\r\n\r\n", 414),
    ("too many headers", b"GET / HTTP/1.1\r\nHost: {h}\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", 431),
    ("headers too large", b"GET / HTTP/1.1\r\nHost: {h}\r\n" + (b"X-A: " + b"b" * 1000 + b"\r\n") * 70 + b"\r\n",
     431),
]


@pytest.mark.parametrize(("request_bytes", "status"), [pytest.param(r, s, id=name) for name, r, s in REFUSED])
async def test_refused_requests(edge: Edge, caplog: pytest.LogCaptureFixture, request_bytes: bytes,
                                status: int) -> None:
    async with Origin() as origin:
        host = await edge.publish(origin.port)
        answer = await send_raw(edge, host, request_bytes.replace(b"{h}", host.encode()))
        assert status_of(answer) == status  # and then the connection closed
        assert b"Connection: close" in answer
        assert host.encode() in answer.split(b"\r\n\r\n", 1)[1]  # the page names the host
        assert origin.requests == []
    [line] = [line for line in access_lines(caplog) if f"status={status}" in line]
    assert len(line) < 600  # the target is cut to 256 characters
    assert edge.counters.http_responses.get(status) == 1
    await edge.check()


async def test_unterminated_header_value_is_cut_off(edge: Edge, caplog: pytest.LogCaptureFixture) -> None:
    """A header that never ends is refused once the head limit is passed, not buffered without bound."""
    async with Origin() as origin:
        host = await edge.publish(origin.port)
        reader, writer = await edge.engine.open_visitor(host)
        try:
            writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\nX-Big: ".encode())
            for _ in range(20):
                writer.write(b"x" * 16384)
                await writer.drain()
            assert status_of(await read_until_closed(reader)) == 431
        finally:
            await close_writer(writer)
        assert origin.requests == []
    assert log_count(caplog, ACCESS, "status=431") == 1
    await edge.check()


async def test_oversized_trailers_are_cut_off(edge: Edge, caplog: pytest.LogCaptureFixture) -> None:
    async with Origin() as origin:
        host = await edge.publish(origin.port)
        head = f"POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nX-T: ".encode()
        answer = await send_raw(edge, host, head + b"t" * 100_000 + b"\r\n\r\n")
        assert status_of(answer) == 431
    assert log_count(caplog, ACCESS, "status=431") == 1
    await edge.check()


async def test_bad_request_behind_a_pending_one_waits_for_its_response(edge: Edge) -> None:
    """The 400 for a pipelined bad request comes after the response owed to the good one before it."""
    def slow_ok(seen: Seen) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood"

    async with Origin(slow_ok) as origin:
        host = await edge.publish(origin.port)
        answer = await send_raw(edge, host, f"GET /a HTTP/1.1\r\nHost: {host}\r\n\r\n"
                                            f"GET /b HTTP/1.1\r\nHost: {host}\r\nHost: x\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngoodHTTP/1.1 400 Bad Request\r\n")
        assert [r.target for r in origin.requests] == ["/a"]


async def test_http10_without_host_routes_by_tls_name(edge: Edge) -> None:
    async with Origin() as origin:
        host = await edge.publish(origin.port)
        answer = await send_raw(edge, host, b"GET /old HTTP/1.0\r\n\r\n")
        assert status_of(answer) == 200
        assert origin.requests[0].header("connection") == ["close"]


# ---- what the upstream receives ----


async def test_hop_by_hop_fields_are_dropped_and_forwarding_fields_set(edge: Edge) -> None:
    async with Origin() as origin:
        host = await edge.publish(origin.port)
        reader, writer = await edge.engine.open_visitor(host)
        try:
            writer.write(
                f"GET /h HTTP/1.1\r\nHost: {host}:{edge.engine.port}\r\n"
                "Connection: keep-alive, X-Private, Content-Length\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\n"
                "TE: trailers\r\nProxy-Authorization: Basic eDp5\r\nUpgrade: h2c\r\nX-Kept: yes\r\n"
                "Forwarded: for=6.6.6.6\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: evil.example\r\n"
                "X-Forwarded-For: 10.1.1.1\r\nX-Forwarded-For: 10.2.2.2\r\nContent-Length: 2\r\n\r\nhi".encode())
            status, _, body = await read_response(reader)
            assert status == 200 and body == b"GET /h 2"
        finally:
            await close_writer(writer)
    seen = origin.requests[0]
    names = {name for name, _ in seen.headers}
    assert not names & {"connection", "x-private", "keep-alive", "te", "proxy-authorization", "upgrade"}
    assert seen.header("x-kept") == ["yes"]
    assert seen.header("content-length") == ["2"]  # listed in Connection, but framing is never dropped
    assert seen.header("host") == [f"{host}:{edge.engine.port}"]
    assert seen.header("x-forwarded-for") == ["10.1.1.1, 10.2.2.2, 127.0.0.1"]
    assert seen.header("x-forwarded-proto") == ["https"]
    assert seen.header("x-forwarded-host") == [f"{host}:{edge.engine.port}"]
    assert seen.header("forwarded") == [f'for=127.0.0.1;proto=https;host="{host}:{edge.engine.port}"']


async def test_chunked_request_body_is_streamed_rechunked(edge: Edge) -> None:
    async with Origin() as origin:
        host = await edge.publish(origin.port)

        async def parts() -> AsyncIterator[bytes]:
            for part in (b"a" * 10, b"b" * 70_000, b"c"):
                yield part

        async with edge.client() as client:
            reply = await client.post(edge.url("/up"), content=parts(), headers={"Host": host},
                                      extensions={"sni_hostname": host})
        assert reply.status_code == 200
        assert reply.text == "POST /up 70011"
    seen = origin.requests[0]
    assert seen.body == b"a" * 10 + b"b" * 70_000 + b"c"
    assert seen.header("transfer-encoding") == ["chunked"]


# ---- responses ----


async def test_head_response_without_body_keeps_the_connection_in_step(edge: Edge) -> None:
    def answer(seen: Seen) -> bytes:
        if seen.method == "HEAD":
            return b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
        return b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n" + seen.target[1:4].encode()

    async with Origin(answer) as origin:
        host = await edge.publish(origin.port)
        reader, writer = await edge.engine.open_visitor(host)
        try:
            writer.write(f"HEAD /h HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            status, head, _ = await read_response(reader, head_only=True)
            assert status == 200 and b"Content-Length: 1000" in head
            # pipelined: HEAD between two GETs, all in one write
            writer.write(f"GET /one HTTP/1.1\r\nHost: {host}\r\n\r\nHEAD /h2 HTTP/1.1\r\nHost: {host}\r\n\r\n"
                         f"GET /two HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            assert (await read_response(reader))[2] == b"one"
            assert (await read_response(reader, head_only=True))[0] == 200
            assert (await read_response(reader))[2] == b"two"
        finally:
            await close_writer(writer)
        assert [(r.method, r.target) for r in origin.requests] == [
            ("HEAD", "/h"), ("GET", "/one"), ("HEAD", "/h2"), ("GET", "/two")]
    assert edge.counters.http_responses.get(200) == 4


async def test_interim_responses_are_relayed_and_not_counted(edge: Edge, caplog: pytest.LogCaptureFixture) -> None:
    async with Origin() as origin:
        host = await edge.publish(origin.port)
        reader, writer = await edge.engine.open_visitor(host)
        try:
            writer.write(f"POST /e HTTP/1.1\r\nHost: {host}\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
                         .encode())
            assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5 * UNIT_S) == \
                b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"body")
            status, _, body = await read_response(reader)
            assert status == 200 and body == b"POST /e 4"
        finally:
            await close_writer(writer)
    assert 100 not in edge.counters.http_responses
    assert log_count(caplog, ACCESS, "method=POST path=/e status=200") == 1


async def test_response_ending_at_connection_close(edge: Edge, caplog: pytest.LogCaptureFixture) -> None:
    def answer(seen: Seen) -> bytes:
        return b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"

    async with Origin(answer) as origin:
        host = await edge.publish(origin.port)
        answer_bytes = await send_raw(edge, host, f"GET /c HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert answer_bytes == b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"
    await asyncio.sleep(0.05)
    assert log_count(caplog, ACCESS, "path=/c status=200 ") == 1
    assert log_count(caplog, ACCESS, f"resp_bytes={len(answer_bytes)} ") == 1


async def test_chunked_response_is_relayed_byte_for_byte(edge: Edge) -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n"

    async with Origin(lambda seen: raw) as origin:
        host = await edge.publish(origin.port)
        reader, writer = await edge.engine.open_visitor(host)
        try:
            writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\nGET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            got = await asyncio.wait_for(reader.readexactly(2 * len(raw)), 5 * UNIT_S)
            assert got == raw + raw
        finally:
            await close_writer(writer)


async def test_access_log_line(edge: Edge, caplog: pytest.LogCaptureFixture) -> None:
    async with Origin() as origin:
        host = await edge.publish(origin.port)
        async with edge.client() as client:
            reply = await client.post(edge.url("/log/" + "p" * 300 + "?q=1"), content=b"12345",
                                      headers={"Host": host}, extensions={"sni_hostname": host})
        assert reply.status_code == 200
    tunnel_id = next(t.id for t in edge.control.tunnels.values() if t.properties.hostname == host)
    [line] = [line for line in access_lines(caplog) if "/log/" in line]
    match = re.fullmatch(r"tunnel=(\S+) src=127\.0\.0\.1 method=POST path=(\S+) status=200 req_bytes=(\d+) "
                         r"resp_bytes=(\d+) duration_ms=(\d+\.\d)", line)
    assert match is not None, line
    assert match.group(1) == tunnel_id
    assert match.group(2) == ("/log/" + "p" * 300)[:256]
    assert int(match.group(3)) > 5
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(reply.content)
    assert int(match.group(4)) == len(head) + len(reply.content)


async def test_invalid_response_is_relayed_then_the_connection_closes(edge: Edge,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    async with Origin(lambda seen: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokGARBAGE\r\n\r\n") as origin:
        host = await edge.publish(origin.port)
        answer = await send_raw(edge, host, f"GET /1 HTTP/1.1\r\nHost: {host}\r\n\r\n"
                                            f"GET /2 HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert log_count(caplog, ACCESS, "invalid response from the upstream") == 1
    await edge.check()


async def test_unrequested_protocol_switch_closes_the_connection(edge: Edge, caplog: pytest.LogCaptureFixture) -> None:
    async with Origin(lambda seen: b"HTTP/1.1 101 Switching Protocols\r\n\r\n") as origin:
        host = await edge.publish(origin.port)
        answer = await send_raw(edge, host, f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert answer == b"HTTP/1.1 101 Switching Protocols\r\n\r\n"
    assert log_count(caplog, ACCESS, 'status=101 ') == 1
    assert log_count(caplog, ACCESS, "unexpected 101 response") == 1


async def test_visitor_leaving_before_the_response_is_logged(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """A visitor that goes away (here: TCP close, which could also be a half-close still waiting for the
    answer) while the upstream stays silent: the idle timeout ends it, and the request is logged once."""
    caplog.set_level(logging.INFO, logger="portway")
    async with running_engine(tmp_path, "  http_idle_seconds: 0.3\n") as engine, \
            Origin(lambda seen: b"") as origin:  # never answers
        control = await engine.client().connect()
        tunnel = await control.create_tunnel(protocol="http")
        forwarding = asyncio.ensure_future(tunnel.forward_to("127.0.0.1", origin.port))
        try:
            host = tunnel.properties.hostname
            assert host is not None
            _, writer = await engine.open_visitor(host)
            writer.write(f"GET /slow HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            for _ in range(100):
                await asyncio.sleep(0.02)
                if origin.requests:
                    break
            writer.transport.abort()
            for _ in range(100):
                await asyncio.sleep(0.02)
                if log_count(caplog, ACCESS, "path=/slow"):
                    break
        finally:
            forwarding.cancel()
            await control.close()
    assert log_count(caplog, ACCESS, 'path=/slow status=0 ') == 1
    assert log_count(caplog, ACCESS, 'error="the connection closed before the response ended"') == 1


async def test_engine_endpoint_waits_for_no_owed_response(edge: Edge) -> None:
    """The engine's own endpoints answer at once, so not behind a response still owed on the connection."""
    async with Origin() as origin:
        host = await edge.publish(origin.port)
        reader, writer = await edge.engine.open_visitor(host)
        try:
            writer.write(f"GET /t HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            assert (await read_response(reader))[2] == b"GET /t 0"
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")  # nothing owed: answered
            status, _, body = await read_response(reader)
            assert status == 200 and json.loads(body)["status"] == "ok"
            writer.write(f"GET /t2 HTTP/1.1\r\nHost: {host}\r\n\r\n"
                         "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            assert (await read_response(reader))[2] == b"GET /t2 0"
            assert status_of(await read_until_closed(reader)) == 421
        finally:
            await close_writer(writer)


# ---- WebSocket and CONNECT ----


async def test_websocket_through_the_tunnel(edge: Edge, caplog: pytest.LogCaptureFixture) -> None:
    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1] if server.sockets else 0
        host = await edge.publish(port)
        async with ws_connect(f"wss://{host}:{edge.engine.port}/ws?x=1", ssl=edge.engine.visitor_tls(),
                              host="127.0.0.1", port=edge.engine.port) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\x01binary" * 1000)
            assert await ws.recv() == b"\x00\x01binary" * 1000
            await ws.close()
            assert ws.close_code == 1000
    assert log_count(caplog, ACCESS, "method=GET path=/ws?x=1 status=101") == 1
    assert edge.counters.http_responses.get(101) == 1
    await edge.check()


async def test_declined_upgrade_closes_and_smuggles_nothing(edge: Edge) -> None:
    async with Origin(lambda seen: b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno") as origin:
        host = await edge.publish(origin.port)
        answer = await send_raw(edge, host, (
            f"GET /ws HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
            f"GET /smuggled HTTP/1.1\r\nHost: {host}\r\n\r\n").encode())
        assert answer == b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno"
        assert [r.target for r in origin.requests] == ["/ws"]
        assert origin.requests[0].header("upgrade") == ["websocket"]
        assert origin.requests[0].header("connection") == ["upgrade"]


async def test_connect_accepted_by_the_upstream_becomes_a_raw_relay(edge: Edge) -> None:
    async with Origin(lambda seen: b"HTTP/1.1 200 Connection established\r\n\r\n") as origin:
        host = await edge.publish(origin.port)
        reader, writer = await edge.engine.open_visitor(host)
        try:
            writer.write(b"CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\nearly bytes")
            assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5 * UNIT_S) == \
                b"HTTP/1.1 200 Connection established\r\n\r\n"
            assert await asyncio.wait_for(reader.readexactly(11), 5 * UNIT_S) == b"early bytes"
            writer.write(b"GET / HTTP/1.1\r\n\r\n")  # not HTTP to the edge any more
            assert await asyncio.wait_for(reader.readexactly(18), 5 * UNIT_S) == b"GET / HTTP/1.1\r\n\r\n"
        finally:
            await close_writer(writer)
        assert [(r.method, r.target) for r in origin.requests] == [("CONNECT", "db.internal:5432")]


async def test_connect_refused_by_the_upstream(edge: Edge) -> None:
    async with Origin(lambda seen: b"HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\n\r\nno way") as origin:
        host = await edge.publish(origin.port)
        answer = await send_raw(edge, host, b"CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n"
                                            + f"GET /smuggled HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert answer == b"HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\n\r\nno way"
        assert [r.method for r in origin.requests] == ["CONNECT"]
        assert origin.echoed == b""
    assert edge.counters.http_responses.get(403) == 1


# ---- error pages ----


def check_page(response: bytes, status: int, host: str, *, json_page: bool) -> None:
    assert status_of(response) == status
    head, body = response.split(b"\r\n\r\n", 1)
    if json_page:
        assert b"Content-Type: application/json" in head
        page = json.loads(body)
        assert page["status"] == status and page["host"] == host
    else:
        assert b"Content-Type: text/html" in head
        assert f"<b>{host}</b>".encode() in body


@pytest.mark.parametrize("json_page", [False, True])
async def test_unknown_host_is_404(edge: Edge, json_page: bool) -> None:
    accept = "application/json" if json_page else "text/html"
    host = "nothing-here.t.localhost"
    answer = await send_raw(edge, host, f"GET / HTTP/1.1\r\nHost: {host}\r\nAccept: {accept}\r\n\r\n".encode())
    check_page(answer, 404, host, json_page=json_page)


async def test_unreachable_upstream_is_502(edge: Edge, caplog: pytest.LogCaptureFixture) -> None:
    async with Origin() as origin:
        port = origin.port
    host = await edge.publish(port)  # nothing listens there any more
    answer = await send_raw(edge, host, f"GET / HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n\r\n"
                            .encode())
    check_page(answer, 502, host, json_page=True)
    assert log_count(caplog, ACCESS, "status=502") == 1
    await edge.check()


async def test_upstream_closing_without_answer_is_502(edge: Edge, caplog: pytest.LogCaptureFixture) -> None:
    async with Origin(lambda seen: None) as origin:
        host = await edge.publish(origin.port)
        answer = await send_raw(edge, host, f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        check_page(answer, 502, host, json_page=False)
    assert log_count(caplog, ACCESS, "status=502") == 1


async def test_agent_gone_is_503(edge: Edge, caplog: pytest.LogCaptureFixture) -> None:
    raw = await RawAgent.connect(edge.engine)
    try:
        assert (await raw.open_control(edge.engine.token())).WhichOneof("payload") == "ok"
        raw.start()
        props = await raw.create("w", TunnelProperties(protocol="http"))
        assert props.hostname is not None
        host = props.hostname
        visitor = asyncio.ensure_future(send_raw(edge, host, f"GET / HTTP/1.1\r\nHost: {host}\r\n"
                                                             "Accept: application/json\r\n\r\n".encode()))
        await raw.expect("proxy_conn_req")
        raw.writer.transport.abort()
        check_page(await asyncio.wait_for(visitor, 5 * UNIT_S), 503, host, json_page=True)
    finally:
        await raw.close()
    assert log_count(caplog, ACCESS, "status=503") == 1
    await edge.check()


async def test_agent_not_answering_in_time_is_504(tmp_path: Path) -> None:
    async with running_engine(tmp_path, "  stream_request_seconds: 0.5\n") as engine:
        raw = await RawAgent.connect(engine)
        try:
            await raw.open_control(engine.token())
            raw.start()
            props = await raw.create("r", TunnelProperties(protocol="http"))
            assert props.hostname is not None
            reader, writer = await engine.open_visitor(props.hostname)
            try:
                writer.write(f"GET / HTTP/1.1\r\nHost: {props.hostname}\r\n\r\n".encode())
                check_page(await read_until_closed(reader), 504, props.hostname, json_page=False)
            finally:
                await close_writer(writer)
        finally:
            await raw.close()


async def test_websocket_library_refuses_a_missing_tunnel(edge: Edge) -> None:
    ctx = ssl.create_default_context(cafile=str(edge.engine.ca_file))
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with ws_connect(f"wss://nothing.t.localhost:{edge.engine.port}/", ssl=ctx, host="127.0.0.1",
                              port=edge.engine.port):
            pass
    assert refused.value.response.status_code == 404
