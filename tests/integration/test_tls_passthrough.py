"""TLS passthrough tunnels: the engine routes on the ClientHello's SNI and never terminates TLS, so the
visitor negotiates with the upstream's own certificate."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import trustme

from portway.agent import ControlChannel, Tunnel
from tests.conftest import UNIT_S, EngineHandle, close_writer


@dataclass
class TlsUpstream:
    """A local TLS echo server with a certificate from its own throwaway CA."""

    ca: trustme.CA
    port: int
    handshakes: int = 0

    def visitor_context(self) -> ssl.SSLContext:
        """Trusts the upstream's CA only: a handshake with the engine's certificate would fail."""
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx


@dataclass
class Passthrough:
    engine: EngineHandle
    control: ControlChannel
    tunnel: Tunnel
    upstream: TlsUpstream

    @property
    def hostname(self) -> str:
        assert self.tunnel.properties.hostname is not None
        return self.tunnel.properties.hostname


async def _echo(upstream: TlsUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    upstream.handshakes += 1
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def passthrough(any_engine: EngineHandle) -> AsyncIterator[Passthrough]:
    engine = any_engine
    control = await engine.client().connect()
    tunnel = await control.create_tunnel(protocol="tls")
    hostname = tunnel.properties.hostname
    assert hostname is not None
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(hostname).configure_cert(server_ctx)
    upstream = TlsUpstream(ca, 0)
    server = await asyncio.start_server(lambda r, w: _echo(upstream, r, w), "127.0.0.1", 0, ssl=server_ctx)
    upstream.port = server.sockets[0].getsockname()[1]
    forwarding = asyncio.ensure_future(tunnel.forward_to("127.0.0.1", upstream.port))
    try:
        yield Passthrough(engine, control, tunnel, upstream)
    finally:
        forwarding.cancel()
        server.close()
        await control.close()


async def test_tls_tunnel_defaults_to_passthrough(passthrough: Passthrough) -> None:
    props = passthrough.tunnel.properties
    assert props.protocol == "tls"
    assert props.tls_mode == "passthrough"
    assert passthrough.hostname.endswith(".t.localhost")
    assert props.port == passthrough.engine.port
    assert passthrough.tunnel.forwarding_address == f"tls://{passthrough.hostname}:{passthrough.engine.port}"


async def test_visitor_verifies_the_upstream_certificate(passthrough: Passthrough) -> None:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(
        "127.0.0.1", passthrough.engine.port, ssl=passthrough.upstream.visitor_context(),
        server_hostname=passthrough.hostname), 5 * UNIT_S)
    try:
        cert = writer.get_extra_info("peercert")
        assert ("DNS", passthrough.hostname) in cert["subjectAltName"]
        writer.write(b"through the tunnel")
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(18), 5 * UNIT_S) == b"through the tunnel"
    finally:
        await close_writer(writer)
    assert passthrough.upstream.handshakes == 1


async def test_engine_certificate_is_not_used_for_a_passthrough_hostname(passthrough: Passthrough) -> None:
    """A visitor trusting only the engine's CA must fail: the certificate comes from the upstream."""
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.wait_for(asyncio.open_connection(
            "127.0.0.1", passthrough.engine.port, ssl=passthrough.engine.visitor_tls(),
            server_hostname=passthrough.hostname), 5 * UNIT_S)


async def _sock_recv(sock: socket.socket) -> bytes:
    return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 65536), 5 * UNIT_S)


async def test_client_hello_split_across_segments_is_routed(passthrough: Passthrough) -> None:
    loop = asyncio.get_running_loop()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    ctx = passthrough.upstream.visitor_context()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=passthrough.hostname)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    assert len(hello) > 100

    sock = socket.socket()
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", passthrough.engine.port)), 5 * UNIT_S)
        await loop.sock_sendall(sock, hello[:50])
        await asyncio.sleep(0.05)
        await loop.sock_sendall(sock, hello[50:])

        async def pump() -> None:
            """Finish the handshake over the raw socket."""
            while True:
                data = await _sock_recv(sock)
                assert data, "closed during the handshake"
                incoming.write(data)
                try:
                    tls.do_handshake()
                except ssl.SSLWantReadError:
                    if pending := outgoing.read():
                        await loop.sock_sendall(sock, pending)
                    continue
                if pending := outgoing.read():
                    await loop.sock_sendall(sock, pending)
                return

        await pump()
        cert = tls.getpeercert()
        assert cert is not None
        assert ("DNS", passthrough.hostname) in cert["subjectAltName"]
        tls.write(b"split hello")
        await loop.sock_sendall(sock, outgoing.read())
        echoed = b""
        while len(echoed) < 11:
            incoming.write(await _sock_recv(sock))
            try:
                echoed += tls.read(65536)
            except ssl.SSLWantReadError:
                continue
        assert echoed == b"split hello"
    finally:
        sock.close()
    assert passthrough.upstream.handshakes == 1
