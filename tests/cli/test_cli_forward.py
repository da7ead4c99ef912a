"""`portway forward` flags, output modes and usage errors: a real `portway engine` process, a real `portway
forward` process and real local services on loopback. Every flag is checked by what a visitor observes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest
import trustme

from tests.cli.helpers import WAIT_S, CliProcess, agent_args, assert_clean_stderr, cli_process, error_lines, run_cli
from tests.conftest import EchoServer, EngineProcess, http_get, start_engine_process, stop_engine_process

# ---------------------------------------------------------------- local services


@contextlib.asynccontextmanager
async def h2c_upstream() -> AsyncIterator[int]:
    """An HTTP/2-only (prior knowledge) service answering `h2c:<path>`: an HTTP/1.1 request would fail."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        try:
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        body = b"h2c:" + dict(event.headers)[":path"].encode()  # type: ignore[arg-type]
                        conn.send_headers(event.stream_id, [(":status", "200"), ("content-length", str(len(body)))])
                        conn.send_data(event.stream_id, body, end_stream=True)
                writer.write(conn.data_to_send())
                await writer.drain()
        except (ConnectionError, h2.exceptions.ProtocolError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@contextlib.asynccontextmanager
async def https_upstream(ca: trustme.CA) -> AsyncIterator[int]:
    """An HTTPS-only HTTP/1.1 service answering `tls:<path>`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            body = b"tls:" + head.split(b" ", 2)[1]
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


class _UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.transport.sendto(b"echo:" + data, addr)


# ---------------------------------------------------------------- helpers


async def online(cli: CliProcess) -> dict[str, object]:
    event: dict[str, object] = json.loads((await cli.wait_for_line(r'"status": "online"')).string)
    return event


def host_of(event: dict[str, object]) -> str:
    return str(event["forwarding"]).split("//", 1)[1].rsplit(":", 1)[0]


async def visitor_tls(engine: EngineProcess, hostname: str, context: ssl.SSLContext) -> tuple[
        asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection(
        "127.0.0.1", engine.port, ssl=context, server_hostname=hostname), WAIT_S)


async def get(engine: EngineProcess, hostname: str, path: str,
              context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    reader, writer = await visitor_tls(engine, hostname, context or engine.visitor_tls())
    try:
        return await http_get(reader, writer, hostname, path)
    finally:
        writer.close()


# ---------------------------------------------------------------- output modes


async def test_json_mode_prints_one_object_per_state(engine_process: EngineProcess, tmp_path: Path) -> None:
    async with EchoServer(http=True) as upstream, cli_process(
            tmp_path, "forward", str(upstream.port), *agent_args(engine_process), "-o", "json") as cli:
        await online(cli)
        events = [json.loads(line) for line in cli.lines]
        assert [e["status"] for e in events] == ["connecting", "connected", "online"]
        for event in events:
            assert event["forwarded"] == f"127.0.0.1:{upstream.port}"
            assert event["version"]
        assert events[-1]["tunnel_id"] and str(events[-1]["forwarding"]).startswith("https://")
        assert await cli.terminate() == 0


async def test_output_none_prints_nothing(engine_process: EngineProcess, tmp_path: Path) -> None:
    hostname = "quiet.t.localhost"
    async with EchoServer(http=True) as upstream, cli_process(
            tmp_path, "forward", str(upstream.port), "--host", hostname, *agent_args(engine_process),
            "-o", "none") as cli:
        for _ in range(int(100 * WAIT_S)):  # no output to wait on: poll the public address
            with contextlib.suppress(OSError, ssl.SSLError, asyncio.IncompleteReadError):
                status, _ = await get(engine_process, hostname, "/quiet")
                if status == 200:
                    break
            await asyncio.sleep(0.1)
        else:
            pytest.fail(f"tunnel never served; stderr: {cli.stderr()}")
        assert await cli.terminate() == 0
        assert cli.process.stdout is not None
        assert await asyncio.wait_for(cli.process.stdout.read(), WAIT_S) == b""
        assert not error_lines(cli.stderr())


# ---------------------------------------------------------------- TLS edge flags


async def test_tls_terminated_serves_the_engine_cert_with_alpn_and_min_version(
        engine_process: EngineProcess, tmp_path: Path) -> None:
    async with EchoServer() as upstream, cli_process(
            tmp_path, "forward", str(upstream.port), "--tls", "--tls-mode", "terminated", "--tls-alpn", "x-one,x-two",
            "--tls-min-version", "tls1.3", *agent_args(engine_process), "-o", "json") as cli:
        event = await online(cli)
        assert str(event["forwarding"]).startswith("tls://")
        hostname = host_of(event)
        context = engine_process.visitor_tls()  # verifies the engine's certificate for the hostname
        context.set_alpn_protocols(["x-two"])
        reader, writer = await visitor_tls(engine_process, hostname, context)
        try:
            tls = writer.get_extra_info("ssl_object")
            assert tls.selected_alpn_protocol() == "x-two"
            assert tls.version() == "TLSv1.3"
            writer.write(b"decrypted?")  # the agent gets plain bytes: the echo proves it
            assert await asyncio.wait_for(reader.readexactly(10), WAIT_S) == b"decrypted?"
        finally:
            writer.close()
        old = engine_process.visitor_tls()
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(ssl.SSLError):
            await visitor_tls(engine_process, hostname, old)
        assert await cli.terminate() == 0


async def test_tls_ciphers_pick_the_tls12_suite(engine_process: EngineProcess, tmp_path: Path) -> None:
    async with EchoServer() as upstream, cli_process(
            tmp_path, "forward", str(upstream.port), "--tls", "--tls-mode", "terminated",
            "--tls-ciphers", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", *agent_args(engine_process),
            "-o", "json") as cli:
        hostname = host_of(await online(cli))
        context = engine_process.visitor_tls()
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        _, writer = await visitor_tls(engine_process, hostname, context)
        try:
            assert writer.get_extra_info("cipher")[0] == "ECDHE-ECDSA-AES256-GCM-SHA384"
        finally:
            writer.close()
        assert await cli.terminate() == 0


async def test_mtls_refuses_visitors_without_a_certificate_from_the_ca(engine_process: EngineProcess,
                                                                       tmp_path: Path) -> None:
    visitors_ca, other_ca = trustme.CA(), trustme.CA()
    ca_file = tmp_path / "visitors-ca.pem"
    visitors_ca.cert_pem.write_to_path(str(ca_file))
    async with EchoServer(http=True) as upstream, cli_process(
            tmp_path, "forward", str(upstream.port), "--mtls", "--mtls-cacert-file", str(ca_file),
            *agent_args(engine_process), "-o", "json") as cli:
        hostname = host_of(await online(cli))
        for issuer in (None, other_ca):
            context = engine_process.visitor_tls()
            if issuer is not None:
                issuer.issue_cert("stranger@example.com").configure_cert(context)
            with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
                await get(engine_process, hostname, "/", context)
        context = engine_process.visitor_tls()
        visitors_ca.issue_cert("visitor@example.com").configure_cert(context)
        status, body = await get(engine_process, hostname, "/with-cert", context)
        assert status == 200 and body.startswith(b"GET /with-cert")
        assert await cli.terminate() == 0


# ---------------------------------------------------------------- upstream protocol flags


async def test_http_version_h2c_reaches_an_h2c_upstream(engine_process: EngineProcess, tmp_path: Path) -> None:
    async with h2c_upstream() as port, cli_process(
            tmp_path, "forward", str(port), "--http-version", "h2c", *agent_args(engine_process), "-o", "json") as cli:
        status, body = await get(engine_process, host_of(await online(cli)), "/over-h2c")
        assert (status, body) == (200, b"h2c:/over-h2c")
        assert await cli.terminate() == 0


async def test_upstream_tls_reaches_an_https_upstream(engine_process: EngineProcess, tmp_path: Path) -> None:
    async with https_upstream(trustme.CA()) as port, cli_process(
            tmp_path, "forward", str(port), "--upstream-tls", *agent_args(engine_process), "-o", "json") as cli:
        status, body = await get(engine_process, host_of(await online(cli)), "/secure")
        assert (status, body) == (200, b"tls:/secure")
        assert await cli.terminate() == 0


async def test_datagram_private_tunnel_relays_udp(engine_process: EngineProcess, tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    udp, _ = await loop.create_datagram_endpoint(_UdpEcho, local_addr=("127.0.0.1", 0))
    port = udp.get_extra_info("sockname")[1]
    try:
        async with cli_process(tmp_path, "forward", str(port), "--datagram", "--no-publish", "--name", "udp-echo",
                               *agent_args(engine_process), "-o", "json") as cli:
            event = await online(cli)
            assert event["forwarding"] == "rstrm://udp-echo (unpublished)"
            packets = await asyncio.wait_for(engine_process.client().dial_datagram("udp-echo"), WAIT_S)
            try:
                for payload in (b"one", b"two" * 300):
                    await packets.send(payload)
                    assert await asyncio.wait_for(packets.recv(), WAIT_S) == b"echo:" + payload
            finally:
                await packets.close()
            assert await cli.terminate() == 0
            assert_clean_stderr(cli.stderr())
    finally:
        udp.close()


async def test_retry_interval_sets_the_first_reconnect_delay(tmp_path: Path) -> None:
    engine = start_engine_process(tmp_path)
    try:
        async with cli_process(tmp_path, "forward", "9", *agent_args(engine), "-o", "json",
                               "--retry-interval", "100") as quick, \
                cli_process(tmp_path, "forward", "9", *agent_args(engine), "-o", "json",
                            "--retry-interval", "60000") as slow:
            await online(quick)
            await online(slow)
            await asyncio.to_thread(stop_engine_process, engine)
            for cli in (quick, slow):
                await cli.wait_for_line(r'"status": "reconnecting"')
            await quick.wait_for_line(r'"status": "connecting"', timeout=5 * WAIT_S)  # after ≤ 100 ms
            with pytest.raises(TimeoutError):  # after ≥ 30 s (60 s, jittered down to half at most)
                await slow.readline(timeout=3)
    finally:
        stop_engine_process(engine)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(("args", "fragment"), [
    (["--tcp", "--tls-mode", "terminated"], "--tcp does not take --tls-mode"),
    (["--tcp", "--token-auth"], "--tcp does not take --token-auth"),
    (["--tcp", "--no-publish"], "--tcp does not take --no-publish"),
    (["--tls-mode", "terminated"], "--tls-mode applies only to --tls"),
    (["--tls-mode", "sideways", "--tls"], "invalid --tls-mode 'sideways'"),
    (["--tls", "--tls-min-version", "tls1.3"], "TLS passthrough cannot enforce --tls-min-version"),
    (["--tls", "--tls-mode", "terminated", "--tls-min-version", "tls9"], "invalid --tls-min-version 'tls9'"),
    (["--tls-alpn", "h2"], "--tls-alpn applies only to --tls --tls-mode terminated"),
    (["--tls", "--token-auth"], "--token-auth apply only to --http tunnels"),
    (["--http-version", "spdy"], "unknown --http-version 'spdy'"),
    (["--upstream-tls", "--http-version", "h2c"], "--upstream-tls and --http-version cannot be combined"),
    (["--mtls-cacert-file", "/nonexistent/ca.pem", "--mtls"], "cannot read --mtls-cacert-file"),
    (["--mtls-cacert-file", "/dev/null", "--mtls"], "holds no PEM certificate"),
    (["--mtls-cacert-file", "/dev/null"], "--mtls-cacert-file needs --mtls"),
    (["--port", "2000"], "--port applies only to --tcp"),
    (["--tcp", "--port", "99999"], "invalid --port '99999'"),
    (["--datagram"], "a published --datagram tunnel must be HTTP/3"),
    (["--no-publish", "--token-auth"], "--no-publish tunnels have no public edge for --token-auth"),
    (["--retry-interval", "soon"], "invalid --retry-interval 'soon'"),
    (["-o", "yaml"], "invalid --output 'yaml'"),
    (["--name", "bad name!"], "name must be"),
])
def test_usage_errors_exit_2_with_one_line(args: Sequence[str], fragment: str) -> None:
    result = run_cli("forward", "80", *args, "--engine", "127.0.0.1:9", "--token", "unused")
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0] and "(hint: " in lines[0], lines[0]


@pytest.mark.parametrize(("args", "fragment"), [
    (["--mtls"], "mtls_auth needs mtls_cacert_pem"),
    (["--datagram", "--http-version", "h3"], "published datagram tunnel"),
])
def test_engine_refusals_exit_1_with_one_line(engine_process: EngineProcess, args: Sequence[str],
                                              fragment: str) -> None:
    """Options only some engines serve go to the engine, and its refusal is one line (retrying cannot help)."""
    result = run_cli("forward", "9", *args, *agent_args(engine_process), "-o", "none")
    assert result.returncode == 1, result
    assert result.stdout == ""
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and fragment in errors[0], result.stderr
