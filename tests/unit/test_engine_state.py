"""Engine state directory: local CA, server certificate, HS256 secret; reuse, re-issue, real TLS."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from portway.engine.state import EngineState, default_state_dir, expected_server_names
from portway.errors import ConfigError

SECRET = "configured-secret-configured-secret-0123"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leaf(state: EngineState) -> x509.Certificate:
    return x509.load_pem_x509_certificates(state.cert_path.read_bytes())[0]


def sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(ext.get_values_for_type(x509.DNSName)), {
        str(ip) for ip in ext.get_values_for_type(x509.IPAddress)
    }


def handshake(state: EngineState, server_hostname: str) -> ssl.SSLObject:
    """A complete TLS handshake between two in-memory endpoints; returns the client side."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(state.cert_path, state.key_path)
    server_ctx.set_alpn_protocols(["rstrm/1"])
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(cafile=str(state.ca_path))
    client_ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    client_ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    client_ctx.set_alpn_protocols(["rstrm/1"])
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, obj in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    obj.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            break
    assert all(done.values())
    client.write(b"ping")
    s_in.write(c_out.read())
    assert server.read(4) == b"ping"
    return client


def test_default_state_dir() -> None:
    path = default_state_dir()
    assert path.name == "engine"
    assert "portway" in path.parts


def test_first_open_creates_files_with_private_permissions(tmp_path: Path) -> None:
    state_dir = tmp_path / "nested" / "state"
    state = EngineState.open(state_dir, engine_host="localhost", jwt_secret=None)
    assert state.generated == ("ca", "server_cert", "jwt_secret")
    assert mode(state_dir) == 0o700
    for name in ("ca.key", "server.key", "jwt.secret"):
        assert mode(state_dir / name) == 0o600, name
    for name in ("ca.pem", "server.pem"):
        assert (state_dir / name).is_file()
        assert mode(state_dir / name) & 0o022 == 0
    assert state.ca_path == state_dir / "ca.pem"
    assert state.cert_path == state_dir / "server.pem"
    assert state.key_path == state_dir / "server.key"
    assert not [p.name for p in state_dir.iterdir() if p.name.endswith(".tmp")]


def test_jwt_secret_generated_once(tmp_path: Path) -> None:
    state = EngineState.open(tmp_path, engine_host="localhost", jwt_secret=None)
    secret = state.jwt_secret
    assert len(secret) == 43  # 32 bytes, urlsafe base64 without padding
    assert set(secret) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert (tmp_path / "jwt.secret").read_text().strip() == secret
    assert secret not in repr(state)
    again = EngineState.open(tmp_path, engine_host="localhost", jwt_secret=None)
    assert again.jwt_secret == secret


def test_configured_secret_is_used_and_not_written(tmp_path: Path) -> None:
    state = EngineState.open(tmp_path, engine_host="localhost", jwt_secret=SECRET)
    assert state.jwt_secret == SECRET
    assert "jwt_secret" not in state.generated
    assert not (tmp_path / "jwt.secret").exists()
    assert SECRET not in repr(state)
    with pytest.raises(ConfigError, match="must not be empty"):
        EngineState.open(tmp_path, engine_host="localhost", jwt_secret="  ")


def test_second_open_reuses_everything(tmp_path: Path) -> None:
    first = EngineState.open(tmp_path, engine_host="localhost", jwt_secret=None)
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    second = EngineState.open(tmp_path, engine_host="localhost", jwt_secret=None)
    assert second.generated == ()
    assert second.ca_fingerprint == first.ca_fingerprint
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == files


def test_ca_certificate_profile(tmp_path: Path) -> None:
    state = EngineState.open(tmp_path, engine_host="localhost", jwt_secret=SECRET)
    ca = x509.load_pem_x509_certificate(state.ca_path.read_bytes())
    key = ca.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert isinstance(key.curve, ec.SECP256R1)
    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical
    assert basic.value.ca is True
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign
    assert usage.crl_sign
    ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert dt.timedelta(days=3649) < lifetime < dt.timedelta(days=3651)
    assert state.ca_fingerprint == ca.fingerprint(hashes.SHA256()).hex()


def test_server_certificate_profile(tmp_path: Path) -> None:
    state = EngineState.open(tmp_path, engine_host="localhost", jwt_secret=SECRET)
    chain = x509.load_pem_x509_certificates(state.cert_path.read_bytes())
    ca = x509.load_pem_x509_certificate(state.ca_path.read_bytes())
    assert len(chain) == 2
    assert chain[1] == ca
    cert = chain[0]
    cert.verify_directly_issued_by(ca)
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert isinstance(key.curve, ec.SECP256R1)
    dns, ips = sans(cert)
    assert dns == {"localhost", "*.t.localhost"}
    assert ips == {"127.0.0.1", "::1"}
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert not usage.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=396) < lifetime < dt.timedelta(days=398)


def test_server_sans_for_a_public_host(tmp_path: Path) -> None:
    state = EngineState.open(tmp_path, engine_host="Edge.Example.com", jwt_secret=SECRET)
    dns, ips = sans(leaf(state))
    # *.t.example.com covers the rstream CLI's stable hostnames r<8hex>-edge.t.example.com
    assert dns == {"edge.example.com", "*.t.edge.example.com", "*.t.example.com", "localhost"}
    assert ips == {"127.0.0.1", "::1"}


def test_server_sans_for_an_ip_host(tmp_path: Path) -> None:
    state = EngineState.open(tmp_path, engine_host="192.0.2.10", jwt_secret=SECRET)
    dns, ips = sans(leaf(state))
    assert dns == {"localhost"}
    assert ips == {"127.0.0.1", "::1", "192.0.2.10"}
    assert x509.IPAddress(ipaddress.ip_address("192.0.2.10")) in expected_server_names("192.0.2.10")


def test_host_change_reissues_server_cert_only(tmp_path: Path) -> None:
    first = EngineState.open(tmp_path, engine_host="localhost", jwt_secret=None)
    old_leaf = leaf(first)
    second = EngineState.open(tmp_path, engine_host="edge.example.com", jwt_secret=None)
    assert second.generated == ("server_cert",)
    assert second.ca_fingerprint == first.ca_fingerprint
    assert second.jwt_secret == first.jwt_secret
    new_leaf = leaf(second)
    assert new_leaf.serial_number != old_leaf.serial_number
    assert "*.t.edge.example.com" in sans(new_leaf)[0]
    assert mode(second.key_path) == 0o600


def test_expiring_server_cert_is_reissued(tmp_path: Path) -> None:
    first = EngineState.open(tmp_path, engine_host="localhost", jwt_secret=SECRET)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=370)  # 27 days before the leaf expires
    second = EngineState.open(tmp_path, engine_host="localhost", jwt_secret=SECRET, now=later)
    assert second.generated == ("server_cert",)
    assert second.ca_fingerprint == first.ca_fingerprint
    assert leaf(second).not_valid_after_utc > later + dt.timedelta(days=396)
    quiet = EngineState.open(tmp_path, engine_host="localhost", jwt_secret=SECRET, now=later)
    assert quiet.generated == ()


def test_damaged_server_files_are_reissued(tmp_path: Path) -> None:
    state = EngineState.open(tmp_path, engine_host="localhost", jwt_secret=SECRET)
    state.key_path.write_text("not a key")
    again = EngineState.open(tmp_path, engine_host="localhost", jwt_secret=SECRET)
    assert again.generated == ("server_cert",)
    handshake(again, "localhost")


def test_damaged_ca_is_an_error_not_silently_replaced(tmp_path: Path) -> None:
    state = EngineState.open(tmp_path, engine_host="localhost", jwt_secret=SECRET)
    state.ca_path.write_text("garbage")
    with pytest.raises(ConfigError, match="local CA"):
        EngineState.open(tmp_path, engine_host="localhost", jwt_secret=SECRET)
    assert state.ca_path.read_text() == "garbage"


def test_loose_key_permissions_are_tightened(tmp_path: Path) -> None:
    state = EngineState.open(tmp_path, engine_host="localhost", jwt_secret=None)
    for name in ("ca.key", "server.key", "jwt.secret"):
        (tmp_path / name).chmod(0o644)
    EngineState.open(tmp_path, engine_host="localhost", jwt_secret=None)
    for name in ("ca.key", "server.key", "jwt.secret"):
        assert mode(tmp_path / name) == 0o600, name
    assert state.jwt_secret == (tmp_path / "jwt.secret").read_text().strip()


def test_state_dir_that_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ConfigError, match="state directory"):
        EngineState.open(target, engine_host="localhost", jwt_secret=None)


@pytest.mark.parametrize("name", ["abc.t.localhost", "localhost", "127.0.0.1", "::1"])
def test_real_tls_handshake_verifies_against_the_ca(tmp_path: Path, name: str) -> None:
    state = EngineState.open(tmp_path, engine_host="localhost", jwt_secret=SECRET)
    client = handshake(state, name)
    assert client.version() == "TLSv1.3"
    assert client.selected_alpn_protocol() == "rstrm/1"


def test_tls_handshake_for_public_host_wildcard(tmp_path: Path) -> None:
    state = EngineState.open(tmp_path, engine_host="edge.example.com", jwt_secret=SECRET)
    handshake(state, "abc.t.edge.example.com")
    handshake(state, "edge.example.com")


def test_tls_handshake_rejects_other_names(tmp_path: Path) -> None:
    state = EngineState.open(tmp_path, engine_host="localhost", jwt_secret=SECRET)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(state, "abc.example.com")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(state, "a.b.t.localhost")  # the wildcard covers one label only
