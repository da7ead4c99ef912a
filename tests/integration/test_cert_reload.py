"""certs.static hot reload: a certificate replaced on disk is served to new connections (agents, HTTPS
visitors, terminated tls tunnels) without a restart; a broken replacement is logged once and ignored."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from portway.agent import Client, ControlChannel, TLSOptions
from portway.engine.certs import CHECK_INTERVAL_S
from tests.conftest import UNIT_S, EngineHandle, log_count, running_engine
from tests.integration.helpers import close_streams

NAMES = ("localhost", "*.t.localhost", "127.0.0.1")


@dataclass
class StaticEngine:
    engine: EngineHandle
    ca: trustme.CA
    ca_file: Path
    cert_file: Path
    key_file: Path
    control: ControlChannel
    tunnel_hostname: str

    def install(self, cert: trustme.LeafCert) -> None:
        install(cert, self.cert_file, self.key_file)

    async def served(self, server_hostname: str, alpn: str | None = None) -> bytes:
        """The DER certificate the engine presents to a new connection for `server_hostname`."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        if alpn is not None:
            ctx.set_alpn_protocols([alpn])
        _, writer = await asyncio.wait_for(asyncio.open_connection(
            "127.0.0.1", self.engine.port, ssl=ctx, server_hostname=server_hostname), 5 * UNIT_S)
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        # Only the handshake matters: reset the connection (after a plain FIN the HTTPS edge keeps a
        # half-closed connection that never sent a request until its idle timeout).
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        assert isinstance(der, bytes)
        return der

    async def everywhere(self) -> set[bytes]:
        """The certificates on the HTTPS edge, the agent port and the terminated tunnel."""
        return {await self.served("localhost"), await self.served("localhost", alpn="rstrm/1"),
                await self.served(self.tunnel_hostname)}

    async def wait_until_served(self, cert: trustme.LeafCert) -> None:
        expected = {der(cert)}
        for _ in range(int(5 / 0.1)):
            if await self.everywhere() == expected:
                return
            await asyncio.sleep(0.1 * UNIT_S)
        raise AssertionError("the new certificate was not served within 5 s")


def install(cert: trustme.LeafCert, cert_file: Path, key_file: Path) -> None:
    """Replace the files the way renewal tools do: write aside, rename into place."""
    write_atomically(cert_file, b"".join(pem.bytes() for pem in cert.cert_chain_pems))
    write_atomically(key_file, cert.private_key_pem.bytes())


def write_atomically(path: Path, data: bytes) -> None:
    aside = path.with_suffix(".new")
    aside.write_bytes(data)
    os.replace(aside, path)


def der(cert: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())


@pytest.fixture
async def static(tmp_path: Path) -> AsyncIterator[StaticEngine]:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    yaml = f"certs:\n  static:\n    enabled: true\n    cert_file: {cert_file}\n    key_file: {key_file}\n"
    install(ca.issue_cert(*NAMES), cert_file, key_file)
    async with running_engine(tmp_path, yaml) as engine:
        control = await Client(engine.address, engine.token(), tls=TLSOptions(ca_file=str(ca_file))).connect()
        try:
            tunnel = await control.create_tunnel(protocol="tls", tls_mode="terminated")
            assert tunnel.properties.hostname is not None
            closing = asyncio.ensure_future(close_streams(tunnel))
            yield StaticEngine(engine, ca, ca_file, cert_file, key_file, control, tunnel.properties.hostname)
        finally:
            await control.close()
            await closing


async def test_a_replaced_certificate_is_served_to_new_connections(static: StaticEngine,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "portway.engine.certs")
    old = await static.everywhere()
    assert len(old) == 1
    renewed = static.ca.issue_cert(*NAMES)
    static.install(renewed)
    await static.wait_until_served(renewed)
    assert log_count(caplog, "portway.engine.certs", "reloaded the certificate") == 1
    # The control channel opened with the old certificate lives on, and new tunnels get the new one.
    tunnel = await static.control.create_tunnel(protocol="tls", tls_mode="terminated")
    assert tunnel.properties.hostname is not None
    closing = asyncio.ensure_future(close_streams(tunnel))
    assert await static.served(tunnel.properties.hostname) == der(renewed)
    await tunnel.close()
    await asyncio.wait_for(closing, 5 * UNIT_S)


@pytest.mark.parametrize("breakage", ["garbage certificate", "key of another certificate", "missing key"])
async def test_a_broken_replacement_keeps_the_old_certificate(static: StaticEngine, breakage: str,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    old = await static.everywhere()
    other = static.ca.issue_cert(*NAMES)
    if breakage == "garbage certificate":
        write_atomically(static.cert_file, b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    elif breakage == "key of another certificate":
        write_atomically(static.key_file, other.private_key_pem.bytes())
    else:
        static.key_file.unlink()
    await asyncio.sleep(3.5 * CHECK_INTERVAL_S)  # three checks at least
    assert await static.everywhere() == old
    assert log_count(caplog, "portway.engine.certs", "cannot be loaded") == 1
    assert "PRIVATE KEY" not in caplog.text
    # Fixing the files is noticed, and the fixed certificate served.
    static.install(other)
    await static.wait_until_served(other)
