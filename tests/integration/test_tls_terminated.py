"""TLS tunnels with tls_mode=terminated: the engine ends TLS with its certificate and the tunnel's options
(minimum version, ciphers, ALPN, client certificates); the agent reads and writes plaintext."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import trustme

from portway.agent import ControlChannel, Tunnel
from portway.errors import EngineRejected
from portway.wire.codes import ErrorCode
from tests.conftest import UNIT_S, EngineHandle, close_writer, log_count, read_until_closed
from tests.integration.helpers import close_streams


@dataclass
class Terminated:
    engine: EngineHandle
    control: ControlChannel
    tunnel: Tunnel

    @property
    def hostname(self) -> str:
        assert self.tunnel.properties.hostname is not None
        return self.tunnel.properties.hostname

    def visitor_tls(self, *, maximum_version: ssl.TLSVersion | None = None, alpn: list[str] | None = None,
                    ciphers: str | None = None, cert: trustme.LeafCert | None = None) -> ssl.SSLContext:
        """A visitor context trusting the engine's CA, tuned by the arguments."""
        ctx = self.engine.visitor_tls()
        if maximum_version is not None:
            ctx.maximum_version = maximum_version
        if alpn is not None:
            ctx.set_alpn_protocols(alpn)
        if ciphers is not None:
            ctx.set_ciphers(ciphers)
        if cert is not None:
            cert.configure_cert(ctx)
        return ctx

    async def connect(self, ctx: ssl.SSLContext) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(asyncio.open_connection(
            "127.0.0.1", self.engine.port, ssl=ctx, server_hostname=self.hostname), 5 * UNIT_S)

    async def round_trip(self, ctx: ssl.SSLContext) -> ssl.SSLObject:
        """A line to the agent and its answer back; returns the visitor's TLS session for inspection."""
        reader, writer = await self.connect(ctx)
        try:
            writer.write(b"ping\n")
            stream = await asyncio.wait_for(self.tunnel.accept(), 5 * UNIT_S)
            assert await asyncio.wait_for(stream.readexactly(5), 5 * UNIT_S) == b"ping\n"  # plaintext
            stream.write(b"pong\n")
            await stream.drain()
            assert await asyncio.wait_for(reader.readexactly(5), 5 * UNIT_S) == b"pong\n"
            await stream.close()
            assert await read_until_closed(reader) == b""
            tls: ssl.SSLObject = writer.get_extra_info("ssl_object")
            return tls
        finally:
            await close_writer(writer)

    async def refused(self, ctx: ssl.SSLContext) -> None:
        """The engine ends the connection during or right after the handshake; no data gets through."""
        try:
            reader, writer = await self.connect(ctx)
        except (ssl.SSLError, ConnectionError):
            return
        try:
            writer.write(b"let me in\n")
            assert await read_until_closed(reader) == b""
        finally:
            await close_writer(writer)


@contextlib.asynccontextmanager
async def published(engine: EngineHandle, **props: Any) -> AsyncIterator[Terminated]:
    control = await engine.client().connect()
    try:
        tunnel = await control.create_tunnel(protocol="tls", tls_mode="terminated", **props)
        yield Terminated(engine, control, tunnel)
    finally:
        await control.close()


@pytest.fixture(scope="module")
def visitor_ca() -> trustme.CA:
    """The CA a tunnel trusts for visitor (client) certificates."""
    return trustme.CA()


def denials(engine: EngineHandle) -> int:
    assert engine.engine is not None and engine.engine.ctx is not None
    return engine.engine.ctx.counters.policy_denials.get(("tls", "mtls_auth"), 0)


async def test_terminated_round_trip_agent_sees_plaintext(any_engine: EngineHandle) -> None:
    async with published(any_engine) as t:
        props = t.tunnel.properties
        assert (props.protocol, props.tls_mode) == ("tls", "terminated")
        assert t.tunnel.forwarding_address == f"tls://{t.hostname}:{any_engine.port}"
        tls = await t.round_trip(t.visitor_tls())  # verified against the engine's CA and the tunnel's hostname
        assert tls.version() == "TLSv1.3"
        assert tls.selected_alpn_protocol() is None


async def test_forward_to_a_local_service(engine: EngineHandle) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    async with published(engine) as t:
        forwarding = asyncio.ensure_future(t.tunnel.forward_to("127.0.0.1", server.sockets[0].getsockname()[1]))
        try:
            reader, writer = await t.connect(t.visitor_tls())
            writer.write(b"plain upstream\n")
            assert await asyncio.wait_for(reader.readline(), 5 * UNIT_S) == b"plain upstream\n"
            await close_writer(writer)
        finally:
            forwarding.cancel()
            server.close()


async def test_alpn_follows_the_tunnels_preference(engine: EngineHandle) -> None:
    async with published(engine, tls_alpns=("h2", "http/1.1")) as t:
        tls = await t.round_trip(t.visitor_tls(alpn=["http/1.1", "h2"]))
        assert tls.selected_alpn_protocol() == "h2"
        tls = await t.round_trip(t.visitor_tls(alpn=["http/1.1", "acme"]))
        assert tls.selected_alpn_protocol() == "http/1.1"
        tls = await t.round_trip(t.visitor_tls(alpn=["acme"]))  # no overlap: OpenSSL goes on without ALPN
        assert tls.selected_alpn_protocol() is None


async def test_tls_min_version_13_refuses_a_tls12_client(engine: EngineHandle, caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    caplog.set_level(logging.INFO, "portway.engine.tlsterm")
    async with published(engine, tls_min_version="tls1.3") as t:
        with pytest.raises(ssl.SSLError):
            await t.connect(t.visitor_tls(maximum_version=ssl.TLSVersion.TLSv1_2))
        assert (await t.round_trip(t.visitor_tls())).version() == "TLSv1.3"
    assert log_count(caplog, "portway.engine.tlsterm", "TLS handshake with 127.0.0.1 failed") == 1


async def test_tls12_is_served_by_default(engine: EngineHandle) -> None:
    async with published(engine) as t:
        assert (await t.round_trip(t.visitor_tls(maximum_version=ssl.TLSVersion.TLSv1_2))).version() == "TLSv1.2"


async def test_tls_ciphers_restrict_tls12(engine: EngineHandle) -> None:
    """The engine's certificate is ECDSA; the tunnel allows one suite, named the IANA/Go way."""
    async with published(engine, tls_ciphers=("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",)) as t:
        tls12 = ssl.TLSVersion.TLSv1_2
        with pytest.raises(ssl.SSLError):
            await t.connect(t.visitor_tls(maximum_version=tls12, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256"))
        tls = await t.round_trip(t.visitor_tls(
            maximum_version=tls12, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"))
        cipher = tls.cipher()
        assert cipher is not None and cipher[0] == "ECDHE-ECDSA-AES256-GCM-SHA384"
        assert (await t.round_trip(t.visitor_tls())).version() == "TLSv1.3"  # TLS 1.3 suites are not restricted


async def test_mtls_admits_only_certificates_from_the_tunnels_ca(
        engine: EngineHandle, visitor_ca: trustme.CA, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "portway.engine.tlsterm")
    pem = visitor_ca.cert_pem.bytes().decode()
    async with published(engine, mtls_auth=True, mtls_cacert_pem=pem) as t:
        await t.refused(t.visitor_tls())  # no certificate
        await t.refused(t.visitor_tls(cert=trustme.CA().issue_cert("visitor@example.com")))  # another CA
        await t.refused(t.visitor_tls(maximum_version=ssl.TLSVersion.TLSv1_2))  # no certificate, TLS 1.2
        tls = await t.round_trip(t.visitor_tls(cert=visitor_ca.issue_cert("visitor@example.com")))
        assert tls.version() == "TLSv1.3"
    assert denials(engine) == 3
    assert log_count(caplog, "portway.engine.tlsterm", "no valid client certificate") == 3


@pytest.mark.parametrize(
    ("props", "code", "fragment"),
    [
        ({"mtls_auth": True, "mtls_cacert_pem": "not a pem"}, ErrorCode.INVALID_REQUEST, "mtls_cacert_pem"),
        ({"mtls_auth": True}, ErrorCode.FEATURE_NOT_AVAILABLE, "mtls_cacert_pem"),
        ({"mtls_cacert_pem": "CA"}, ErrorCode.INVALID_REQUEST, "needs mtls_auth"),
        ({"tls_ciphers": ("ECDHE-ECDSA-AES128-GCM-SHA256", "NO-SUCH-CIPHER")}, ErrorCode.INVALID_REQUEST,
         "'NO-SUCH-CIPHER'"),
        ({"tls_alpns": ("",)}, ErrorCode.INVALID_REQUEST, "tls_alpns"),
        ({"tls_min_version": "tls1.1"}, ErrorCode.INVALID_REQUEST, "tls_min_version"),
        ({"tls_mode": "passthrough", "mtls_auth": True, "mtls_cacert_pem": "CA"}, ErrorCode.INVALID_REQUEST,
         "passthrough cannot enforce"),
        ({"tls_mode": None, "tls_ciphers": ("ECDHE-ECDSA-AES128-GCM-SHA256",)}, ErrorCode.INVALID_REQUEST,
         "use tls_mode=terminated"),
        ({"publish": False}, ErrorCode.INVALID_REQUEST, "private tunnels"),
        ({"protocol": "http", "tls_mode": None, "tls_alpns": ("h2",)},
         ErrorCode.FEATURE_NOT_AVAILABLE, "tls_alpns outside a published terminated tls tunnel"),
    ],
)
async def test_bad_options_refuse_the_tunnel_at_creation(engine: EngineHandle, visitor_ca: trustme.CA,
                                                         props: dict[str, Any], code: ErrorCode, fragment: str
                                                         ) -> None:
    if props.get("mtls_cacert_pem") == "CA":
        props = {**props, "mtls_cacert_pem": visitor_ca.cert_pem.bytes().decode()}
    control = await engine.client().connect()
    try:
        with pytest.raises(EngineRejected) as refused:
            await control.create_tunnel(**{"protocol": "tls", "tls_mode": "terminated", **props})
        assert refused.value.code == code
        assert fragment in refused.value.detail
        ok = await control.create_tunnel(protocol="tls", tls_mode="terminated")  # the channel lives on
        assert ok.properties.tls_mode == "terminated"
    finally:
        await control.close()


async def s_client(engine: EngineHandle, hostname: str, *args: str) -> tuple[int, str]:
    """`openssl s_client` against the engine: an independent TLS implementation's view."""
    process = await asyncio.create_subprocess_exec(
        "openssl", "s_client", "-connect", f"127.0.0.1:{engine.port}", "-servername", hostname,
        "-CAfile", str(engine.ca_file), "-verify_return_error", *args,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(process.communicate(), 10 * UNIT_S)
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


async def test_openssl_s_client_sees_the_tunnels_options(engine: EngineHandle) -> None:
    async with published(engine, tls_alpns=("h2",), tls_min_version="tls1.3") as t:
        closing = asyncio.ensure_future(close_streams(t.tunnel))
        code, out = await s_client(engine, t.hostname, "-alpn", "http/1.1,h2")
        assert code == 0, out
        assert "ALPN protocol: h2" in out
        assert "Verify return code: 0 (ok)" in out
        assert "TLSv1.3" in out
        code, out = await s_client(engine, t.hostname, "-tls1_2")
        assert code != 0, out
        await t.tunnel.close()
        await asyncio.wait_for(closing, 5 * UNIT_S)
