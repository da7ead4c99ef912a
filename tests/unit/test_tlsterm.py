"""Per-tunnel contexts of terminated tls tunnels, what the engine admits, and the static-certificate watcher."""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme

from portway.engine.capabilities import check_supported
from portway.engine.certs import CertFiles, CertWatcher
from portway.engine.edges.tlsterm import IANA_CIPHERS, TLS13_SUITES, tunnel_context
from portway.wire.codes import ErrorCode
from portway.wire.errors import InvalidTunnelProperties
from portway.wire.messages import TunnelProperties
from portway.wire.properties import normalize


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def files(tmp_path: Path, ca: trustme.CA) -> CertFiles:
    cert = ca.issue_cert("localhost")
    files = CertFiles(tmp_path / "cert.pem", tmp_path / "key.pem", None)
    cert.cert_chain_pems[0].write_to_path(str(files.cert))
    cert.private_key_pem.write_to_path(str(files.key))
    return files


def terminated(**values: Any) -> TunnelProperties:
    return TunnelProperties(protocol="tls", tls_mode="terminated", publish=True, **values)


def refused(files: CertFiles, **values: Any) -> InvalidTunnelProperties:
    with pytest.raises(InvalidTunnelProperties) as caught:
        tunnel_context(terminated(**values), files)
    return caught.value


# ---- tunnel_context ------------------------------------------------------------------------------


def test_defaults(files: CertFiles) -> None:
    ctx = tunnel_context(terminated(), files)
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode is ssl.CERT_NONE


def test_min_version(files: CertFiles) -> None:
    assert tunnel_context(terminated(tls_min_version="tls1.3"), files).minimum_version is ssl.TLSVersion.TLSv1_3


def test_iana_and_openssl_cipher_names(files: CertFiles) -> None:
    ctx = tunnel_context(terminated(tls_ciphers=("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                                                 "ECDHE-RSA-AES256-GCM-SHA384")), files)
    tls12 = {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 == {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384"}
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_2


def test_every_iana_name_is_known_to_openssl(files: CertFiles) -> None:
    tunnel_context(terminated(tls_ciphers=tuple(IANA_CIPHERS)), files)


def test_only_tls13_suites_means_tls13(files: CertFiles) -> None:
    ctx = tunnel_context(terminated(tls_ciphers=tuple(sorted(TLS13_SUITES))[:1]), files)
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_3


@pytest.mark.parametrize("name", ["NO-SUCH-CIPHER", "TLS_AES_128_CCM_SHA256", "!aNULL"])
def test_unknown_cipher_is_named(files: CertFiles, name: str) -> None:
    error = refused(files, tls_ciphers=("ECDHE-ECDSA-AES128-GCM-SHA256", name))
    assert error.code is ErrorCode.INVALID_REQUEST
    assert repr(name) in str(error)
    assert "TLS 1.3 suites are fixed" in str(error)


@pytest.mark.parametrize("alpn", ["", "x" * 256, "h\x002", "é"])
def test_bad_alpn(files: CertFiles, alpn: str) -> None:
    error = refused(files, tls_alpns=("h2", alpn))
    assert error.code is ErrorCode.INVALID_REQUEST
    assert "tls_alpns" in str(error)


def test_mtls_requires_certificates(files: CertFiles, ca: trustme.CA) -> None:
    ctx = tunnel_context(terminated(mtls_auth=True, mtls_cacert_pem=ca.cert_pem.bytes().decode()), files)
    assert ctx.verify_mode is ssl.CERT_REQUIRED
    assert ctx.cert_store_stats()["x509_ca"] == 1


@pytest.mark.parametrize(
    ("pem", "fragment"),
    [("not a pem", "is not a PEM certificate"), ("KEY", "is not a PEM certificate"),
     ("LEAF", "holds no CA certificate")],
)
def test_bad_mtls_pem(files: CertFiles, ca: trustme.CA, pem: str, fragment: str) -> None:
    leaf = ca.issue_cert("visitor")
    pem = {"KEY": leaf.private_key_pem.bytes().decode(),
           "LEAF": leaf.cert_chain_pems[0].bytes().decode()}.get(pem, pem)
    error = refused(files, mtls_auth=True, mtls_cacert_pem=pem)
    assert error.code is ErrorCode.INVALID_REQUEST
    assert fragment in str(error)
    assert "PRIVATE" not in str(error)


@pytest.mark.parametrize("pem", [None, ""])
def test_mtls_without_a_ca_is_not_available(files: CertFiles, pem: str | None) -> None:
    error = refused(files, mtls_auth=True, mtls_cacert_pem=pem)
    assert error.code is ErrorCode.FEATURE_NOT_AVAILABLE
    assert "needs mtls_cacert_pem" in str(error)


@pytest.mark.parametrize("mtls_auth", [None, False])
def test_ca_without_mtls_auth(files: CertFiles, ca: trustme.CA, mtls_auth: bool | None) -> None:
    error = refused(files, mtls_auth=mtls_auth, mtls_cacert_pem=ca.cert_pem.bytes().decode())
    assert "needs mtls_auth" in str(error)


def test_unloadable_engine_certificate_is_not_an_option_error(files: CertFiles) -> None:
    files.key.write_text("broken")
    with pytest.raises(ssl.SSLError):
        tunnel_context(terminated(), files)


# ---- capabilities --------------------------------------------------------------------------------


def unsupported(**values: Any) -> str:
    with pytest.raises(InvalidTunnelProperties) as caught:
        check_supported(normalize(TunnelProperties(**values)))
    assert caught.value.code is ErrorCode.FEATURE_NOT_AVAILABLE
    return str(caught.value)


def test_terminated_tls_options_are_served() -> None:
    check_supported(normalize(terminated(tls_min_version="tls1.3", tls_ciphers=("c",), tls_alpns=("h2",),
                                         mtls_auth=True, mtls_cacert_pem="pem")))


def test_edge_tls_options_are_served_on_published_http() -> None:
    check_supported(normalize(TunnelProperties(protocol="http", tls_min_version="tls1.3", tls_ciphers=("c",),
                                               mtls_auth=True, mtls_cacert_pem="pem")))


def test_tls_alpns_stay_refused_on_http() -> None:
    assert unsupported(protocol="http", tls_alpns=("h2",)) == (
        "tls_alpns outside a published terminated tls tunnel is not available on this engine")


def test_upstream_tls_stays_refused_on_terminated() -> None:
    assert "upstream_tls" in unsupported(protocol="tls", tls_mode="terminated", upstream_tls=True)


# ---- CertWatcher ---------------------------------------------------------------------------------


class Reloads:
    def __init__(self) -> None:
        self.calls = 0
        self.fail: Exception | None = None

    def __call__(self) -> None:
        self.calls += 1
        if self.fail is not None:
            raise self.fail


def touch(path: Path, data: bytes) -> None:
    aside = path.with_suffix(".new")
    aside.write_bytes(data)
    os.replace(aside, path)


def test_watcher_reloads_once_per_change(files: CertFiles) -> None:
    reloads = Reloads()
    watcher = CertWatcher(files, reloads)
    assert not watcher.check()
    touch(files.cert, files.cert.read_bytes())  # same bytes, new inode: a renewal tool's rename
    assert watcher.check()
    assert not watcher.check()
    assert reloads.calls == 1


def test_watcher_logs_a_broken_version_once_and_recovers(files: CertFiles, caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    caplog.set_level(logging.INFO, "portway.engine.certs")
    reloads = Reloads()
    watcher = CertWatcher(files, reloads)
    reloads.fail = ssl.SSLError("bad key")
    files.key.unlink()
    assert not watcher.check()
    assert not watcher.check()  # not retried until the files change again
    assert reloads.calls == 1
    failures = [r for r in caplog.records if "cannot be loaded" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].levelno == logging.WARNING
    reloads.fail = None
    touch(files.key, b"fixed")
    assert watcher.check()
    assert reloads.calls == 2
    assert sum("reloaded the certificate" in r.getMessage() for r in caplog.records) == 1
