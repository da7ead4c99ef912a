"""Stream summaries (§4.2) on a running engine: a signaling watch that asks for `summaries: true` gets one
`stream.summary` per HTTP request (HTTP/1.1 and h2, edge refusals included) and one per TCP or TLS
connection, with credentials redacted; a watch that did not ask gets none, and tunnel filters apply.
Real engine, real agents (our SDK), real visitors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx
import trustme

from portway.engine.auth import mint_token
from portway.engine.context import EngineContext
from portway.engine.summaries import StreamSummary
from tests.conftest import (
    UNIT_S,
    EchoServer,
    EngineHandle,
    close_writer,
    forwarded_hostname,
    forwarded_tunnel,
    http_get,
)
from tests.integration.test_signaling import SseReader, sse
from tests.integration.test_tls_terminated import published

WAIT_S = 10 * UNIT_S
QUIET_S = 0.5 * UNIT_S


async def next_summary(events: SseReader) -> dict[str, Any]:
    """The next stream.summary event (lifecycle events in between are skipped), held to the schema."""
    while True:
        event = await events.next()
        if event["type"] == "stream.summary":
            StreamSummary.model_validate(event["object"])
            return event


async def no_summary(events: SseReader) -> None:
    """Nothing but lifecycle events arrive for a while."""
    try:
        while True:
            event = await asyncio.wait_for(events.next(), QUIET_S)
            assert event["type"] != "stream.summary", event
    except TimeoutError:
        pass


@contextlib.asynccontextmanager
async def summaries(engine: EngineHandle, **params: Any) -> AsyncIterator[SseReader]:
    """A watch with summaries, past its snapshot."""
    async with sse(engine, {"summaries": True, **params}) as events:
        assert (await events.next())["type"] == "state.initial"
        yield events


def context(engine: EngineHandle) -> EngineContext:
    assert engine.engine is not None and engine.engine.ctx is not None
    return engine.engine.ctx


def assert_metrics(summary: dict[str, Any]) -> dict[str, Any]:
    metrics: dict[str, Any] = summary["response"]["metrics"]
    assert metrics["duration_ms"] >= 0
    assert metrics.get("establish_ms", 0) >= 0
    assert summary["created_at"] <= summary["terminated_at"]
    return metrics


async def test_http1_request_summary_with_credentials_redacted(engine: EngineHandle) -> None:
    async with EchoServer(http=True) as upstream, forwarded_hostname(engine, upstream.port) as hostname, \
            summaries(engine) as events, sse(engine) as plain:
        assert (await plain.next())["type"] == "state.initial"
        reader, writer = await engine.open_visitor(hostname)
        try:
            status, _ = await http_get(reader, writer, hostname, "/p/q?a=1&rstream.token=tok-in-query",
                                       body=b"hello", headers="Authorization: Bearer secret-in-header\r\n"
                                                             "Cookie: session=cookie-value\r\nUser-Agent: probe/1\r\n")
        finally:
            await close_writer(writer)
        assert status == 200
        event = await next_summary(events)
        text = json.dumps(event)
        for secret in ("tok-in-query", "secret-in-header", "cookie-value"):
            assert secret not in text
        assert event["user_id"] == "test"
        summary = event["object"]
        http = summary["request"]["http"]
        assert http["protocol"] == "http/1.1"
        request = http["request"]
        assert (request["method"], request["scheme"], request["host"], request["path"]) == \
            ("POST", "https", hostname, "/p/q")
        assert request["query"] == "a=1&rstream.token=[redacted]"
        assert request["url"] == f"https://{hostname}/p/q?a=1&rstream.token=[redacted]"
        assert request["headers"]["authorization"] == request["headers"]["cookie"] == "[redacted]"
        assert request["userAgent"] == "probe/1"
        downstream = summary["request"]["downstream"]
        assert downstream["ip"] == "127.0.0.1"
        assert downstream["tls"]["version"].startswith("TLS") and downstream["tls"]["cipher"]
        assert summary["firewall"] == {"decision": "allowed", "rule": {"kind": "none"}}
        tunnel = summary["routing"]["routed"]["tunnel"]
        assert tunnel["hostname"] == hostname and tunnel["protocol"] == "http"
        assert summary["tunnel_id"] == tunnel["id"] and summary["client_id"]
        response = summary["response"]
        assert response["outcome"] == "connected"
        assert response["http"]["response"]["status"] == 200
        assert response["termination"]["by"] == "agent"
        metrics = assert_metrics(summary)
        assert "establish_ms" in metrics
        assert metrics["upstream_bytes"] > len(b"hello") and metrics["downstream_bytes"] > len(b"hello")
        await no_summary(plain)  # the watch that did not ask gets none


async def test_h2_request_summary(engine: EngineHandle) -> None:
    async with EchoServer(http=True) as upstream, forwarded_hostname(engine, upstream.port) as hostname, \
            summaries(engine) as events, \
            httpx.AsyncClient(http2=True, verify=engine.visitor_tls(), timeout=WAIT_S) as client:
        response = await client.get(f"https://127.0.0.1:{engine.port}/h2?x=y", headers={
            "host": hostname, "authorization": "Bearer h2-secret", "user-agent": "probe/2"},
            extensions={"sni_hostname": hostname})
        assert response.http_version == "HTTP/2" and response.status_code == 200
        summary = (await next_summary(events))["object"]
        assert "h2-secret" not in json.dumps(summary)
        http = summary["request"]["http"]
        assert http["protocol"] == "h2"
        assert (http["request"]["path"], http["request"]["query"]) == ("/h2", "x=y")
        assert http["request"]["headers"]["authorization"] == "[redacted]"
        assert http["request"]["userAgent"] == "probe/2"
        assert summary["request"]["downstream"]["tls"]["protocol"] == "h2"
        assert summary["routing"]["routed"]["tunnel"]["hostname"] == hostname
        response_info = summary["response"]
        assert response_info["outcome"] == "connected"
        assert response_info["http"]["response"]["status"] == 200
        assert response_info["http"]["response"]["headers"]["content-length"] == str(len(response.content))
        metrics = assert_metrics(summary)
        assert metrics["downstream_bytes"] == len(response.content)


async def test_refused_and_unrouted_requests_have_summaries(engine: EngineHandle) -> None:
    async with EchoServer(http=True) as upstream, \
            forwarded_hostname(engine, upstream.port, trusted_ips=["10.0.0.0/8"]) as hostname, \
            summaries(engine) as events:
        for host, expected in [(hostname, 403), ("nowhere.t.localhost", 404)]:
            reader, writer = await engine.open_visitor(host)
            try:
                status, _ = await http_get(reader, writer, host, "/")
            finally:
                await close_writer(writer)
            assert status == expected
        denied = (await next_summary(events))["object"]
        assert denied["firewall"]["decision"] == "denied" and denied["firewall"]["rule"] == {"kind": "ip"}
        assert denied["routing"]["not_routed"]["failure"]["kind"] == "unauthorized"
        assert denied["tunnel_id"] and denied["response"]["outcome"] == "failed"
        assert denied["response"]["http"]["response"]["status"] == 403
        assert denied["response"]["termination"]["by"] == "engine"
        unknown = (await next_summary(events))["object"]
        assert unknown["routing"]["not_routed"]["failure"]["kind"] == "not_found"
        assert unknown["firewall"]["decision"] == "allowed" and "tunnel_id" not in unknown
        assert unknown["response"]["http"]["response"]["status"] == 404
        assert unknown["request"]["http"]["request"]["host"] == "nowhere.t.localhost"
        assert upstream.peers == []


async def test_tcp_connection_summary_counts_both_directions(engine: EngineHandle) -> None:
    async with EchoServer() as upstream, forwarded_tunnel(engine, upstream.port, protocol="tcp") as tunnel, \
            summaries(engine) as events:
        assert tunnel.properties.port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", tunnel.properties.port)
        writer.write(b"0123456789")
        assert await asyncio.wait_for(reader.readexactly(10), WAIT_S) == b"0123456789"
        writer.write(b"abc")
        assert await asyncio.wait_for(reader.readexactly(3), WAIT_S) == b"abc"
        await close_writer(writer)
        event = await next_summary(events)
        summary = event["object"]
        assert event["user_id"] == "test"
        assert summary["tunnel_id"] == tunnel.id
        assert summary["routing"]["routed"]["tunnel"]["protocol"] == "tcp"
        assert "http" not in summary["request"] and "tls" not in summary["request"]["downstream"]
        assert summary["response"]["outcome"] == "connected"
        assert summary["response"]["termination"]["by"] == "visitor"
        metrics = assert_metrics(summary)
        assert (metrics["upstream_bytes"], metrics["downstream_bytes"]) == (13, 13)
        assert "establish_ms" in metrics


async def test_tls_passthrough_connection_summary(engine: EngineHandle) -> None:
    control = await engine.client().connect()
    tunnel = await control.create_tunnel(protocol="tls", name="passthrough")
    hostname = tunnel.properties.hostname
    assert hostname is not None
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(hostname).configure_cert(server_tls)

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_tls)
    forwarding = asyncio.ensure_future(tunnel.forward_to("127.0.0.1", server.sockets[0].getsockname()[1]))
    try:
        async with summaries(engine) as events:
            visitor_tls = ssl.create_default_context()
            ca.configure_trust(visitor_tls)
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                "127.0.0.1", engine.port, ssl=visitor_tls, server_hostname=hostname), WAIT_S)
            writer.write(b"through")
            assert await asyncio.wait_for(reader.readexactly(7), WAIT_S) == b"through"
            await close_writer(writer)
            summary = (await next_summary(events))["object"]
            assert summary["routing"]["routed"]["tunnel"] == {
                "id": tunnel.id, "name": "passthrough", "protocol": "tls", "hostname": hostname, "labels": {}}
            assert "tls" not in summary["request"]["downstream"]  # the engine never saw inside it
            metrics = assert_metrics(summary)
            assert metrics["upstream_bytes"] > 7 and metrics["downstream_bytes"] > 7  # TLS records
    finally:
        forwarding.cancel()
        server.close()
        await control.close()


async def test_terminated_tls_summaries_carry_the_tls_and_the_mtls_refusal(engine: EngineHandle) -> None:
    visitor_ca = trustme.CA()
    async with published(engine, tls_alpns=("demo/1",), mtls_auth=True,
                         mtls_cacert_pem=visitor_ca.cert_pem.bytes().decode()) as t, summaries(engine) as events:
        await t.refused(t.visitor_tls(alpn=["demo/1"]))  # no client certificate
        refused = (await next_summary(events))["object"]
        assert refused["firewall"]["decision"] == "denied" and refused["firewall"]["rule"] == {"kind": "mtls"}
        assert refused["routing"]["not_routed"]["failure"]["kind"] == "unauthorized"
        await t.round_trip(t.visitor_tls(alpn=["demo/1"], cert=visitor_ca.issue_cert("visitor@example.com")))
        summary = (await next_summary(events))["object"]
        assert summary["firewall"] == {"decision": "allowed", "rule": {"kind": "mtls"}}
        tls = summary["request"]["downstream"]["tls"]
        assert (tls["version"], tls["protocol"]) == ("TLSv1.3", "demo/1") and tls["cipher"]
        metrics = assert_metrics(summary)
        assert (metrics["upstream_bytes"], metrics["downstream_bytes"]) == (5, 5)  # plaintext, both ways
        assert summary["response"]["termination"]["by"] == "agent"


async def test_tunnel_filters_apply_and_the_count_follows_watches(engine: EngineHandle) -> None:
    ctx = context(engine)
    assert ctx.summary_watchers == 0
    async with EchoServer(http=True) as upstream, \
            forwarded_hostname(engine, upstream.port, name="wanted") as wanted, \
            forwarded_hostname(engine, upstream.port, name="other") as other, \
            summaries(engine, tunnels={"name": "wanted"}) as events:
        assert ctx.summary_watchers == 1
        for host in (other, wanted):
            reader, writer = await engine.open_visitor(host)
            try:
                assert (await http_get(reader, writer, host))[0] == 200
            finally:
                await close_writer(writer)
        summary = (await next_summary(events))["object"]
        assert summary["routing"]["routed"]["tunnel"]["name"] == "wanted"
        await no_summary(events)
    for _ in range(100):
        if ctx.summary_watchers == 0:
            break
        await asyncio.sleep(0.02)
    assert ctx.summary_watchers == 0


async def test_a_restricted_watch_cannot_probe_fields_select_hides(engine: EngineHandle) -> None:
    """A token whose `select` shows only a tunnel's name: a summary filter on the owner finds nothing (the
    owner is hidden from it, as from the summary itself), and the envelope does not name the owner either."""
    only_names = mint_token(engine.secret, subject="viewer", ttl_s=600, extra={
        "resources": {"tunnels": {"scopes": {"tunnels": {"list": {"select": {"name": True}}}}}}})
    async with EchoServer(http=True) as upstream, \
            forwarded_hostname(engine, upstream.port, name="wanted") as wanted, \
            sse(engine, {"summaries": True, "tunnels": {"user_id": "test"}}, token=only_names) as probing, \
            sse(engine, {"summaries": True, "tunnels": {"name": "wanted"}}, token=only_names) as named:
        assert (await probing.next())["type"] == "state.initial"
        assert (await named.next())["type"] == "state.initial"
        reader, writer = await engine.open_visitor(wanted)
        try:
            assert (await http_get(reader, writer, wanted))[0] == 200
        finally:
            await close_writer(writer)
        event = await next_summary(named)
        assert set(event["object"]["routing"]["routed"]["tunnel"]) <= {"id", "name"}
        assert (event["user_id"], event["workspace_id"], event["project_id"]) == (None, None, None)
        await no_summary(probing)  # the owner is "test", but the filter may not read it
