"""The engine's state directory: a local CA, the server certificate it signs, and the HS256 secret.

Layout (directory mode 0700; keys and secrets 0600, certificates 0644):

    ca.pem       local CA certificate: give it to clients (`--engine-tls-ca-file ca.pem`)
    ca.key       CA private key
    server.pem   server certificate followed by the CA certificate
    server.key   server private key
    jwt.secret   HS256 token secret (only when no secret is configured)

Everything is generated on first use and reused afterwards. The server certificate is re-issued when its names
no longer match the configured host, when it expires within 30 days, or when it no longer belongs to the CA or
to its key. Files are replaced atomically (temporary file in the same directory, fsync, os.replace).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import platformdirs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from portway.errors import ConfigError
from portway.files import write_atomic

if sys.platform != "win32":
    import fcntl

__all__ = ["EngineState", "default_state_dir", "expected_server_names"]

CA_VALIDITY = dt.timedelta(days=3650)
SERVER_VALIDITY = dt.timedelta(days=397)
RENEW_BEFORE = dt.timedelta(days=30)
_BACKDATE = dt.timedelta(minutes=5)

_CA_CERT = "ca.pem"
_CA_KEY = "ca.key"
_SERVER_CERT = "server.pem"
_SERVER_KEY = "server.key"
_JWT_SECRET = "jwt.secret"  # noqa: S105 - a file name
_LOCK = ".lock"

_GeneralName = x509.DNSName | x509.IPAddress


def default_state_dir() -> Path:
    """`<user data dir>/portway/engine` for the current platform."""
    return Path(platformdirs.user_data_dir("portway")) / "engine"


def _normalise_host(engine_host: str) -> str:
    host = engine_host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise ConfigError("engine.host must not be empty")
    return host


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def expected_server_names(engine_host: str) -> frozenset[_GeneralName]:
    """The subjectAltNames the server certificate must carry for `engine_host`.

    DNS host and `*.t.<host>`, IP 127.0.0.1 and ::1, plus DNS localhost when the host is not localhost.
    A multi-label host `a.b.c` (or `a.b`) also gets `*.t.b.c` (`*.t.b`): rstream clients request stable
    hostnames of the shape `r<8 hex>-a.t.b.c` (see wire.hostnames), which the engine accepts.
    An IP-literal host becomes an IP name and gets no wildcard.
    """
    host = _normalise_host(engine_host)
    names: set[_GeneralName] = {
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    }
    literal = _ip(host)
    if literal is not None:
        names.add(x509.IPAddress(literal))
        names.add(x509.DNSName("localhost"))
    else:
        names.add(x509.DNSName(host))
        names.add(x509.DNSName(f"*.t.{host}"))
        _, dot, rest = host.partition(".")
        if dot and rest:  # every host wire.hostnames accepts stable names for, `edge.localhost` included
            names.add(x509.DNSName(f"*.t.{rest}"))
        if host != "localhost":
            names.add(x509.DNSName("localhost"))
    return frozenset(names)


# ------------------------------------------------------------------------------------------------------------
# File helpers


def _tighten(path: Path, mode: int) -> None:
    """Drop group/other permissions a key file should not have (POSIX only)."""
    if sys.platform == "win32":  # pragma: no cover
        return
    current = path.stat().st_mode & 0o777
    if current & ~mode:
        os.chmod(path, current & mode)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise concurrent `open()` calls on one directory (advisory lock, POSIX only)."""
    if sys.platform == "win32":  # pragma: no cover
        yield
        return
    fd = os.open(directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("not an EC private key")
    return key


def _same_public_key(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _san_set(cert: x509.Certificate) -> frozenset[_GeneralName]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return frozenset()
    names: set[_GeneralName] = set()
    for name in ext.value:
        if isinstance(name, x509.DNSName):
            names.add(x509.DNSName(name.value.lower()))
        elif isinstance(name, x509.IPAddress):
            names.add(name)
        else:
            return frozenset()
    return frozenset(names)


# ------------------------------------------------------------------------------------------------------------
# Issuance


def _new_ca(now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Portway"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Portway engine local CA {secrets.token_hex(4)}"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _new_server(
    host: str, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, now: dt.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    common_name = host if len(host) <= 64 else "Portway engine"
    not_after = min(now + SERVER_VALIDITY, ca_cert.not_valid_after_utc)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    names = sorted(expected_server_names(host), key=lambda n: (type(n).__name__, str(n.value)))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


# ------------------------------------------------------------------------------------------------------------


class EngineState:
    """Paths and secrets of an opened state directory. Build it with `EngineState.open`."""

    __slots__ = ("_ca_fingerprint", "_dir", "_generated", "_host", "_jwt_secret")

    def __init__(
        self,
        state_dir: Path,
        engine_host: str,
        jwt_secret: str,
        ca_fingerprint: str,
        generated: tuple[str, ...],
    ) -> None:
        self._dir = state_dir
        self._host = engine_host
        self._jwt_secret = jwt_secret
        self._ca_fingerprint = ca_fingerprint
        self._generated = generated

    def __repr__(self) -> str:
        return f"EngineState(dir={str(self._dir)!r}, host={self._host!r})"

    @property
    def state_dir(self) -> Path:
        return self._dir

    @property
    def engine_host(self) -> str:
        return self._host

    @property
    def ca_path(self) -> Path:
        """The local CA certificate (PEM) clients should trust."""
        return self._dir / _CA_CERT

    @property
    def cert_path(self) -> Path:
        """Server certificate chain (leaf, then CA), PEM."""
        return self._dir / _SERVER_CERT

    @property
    def key_path(self) -> Path:
        """Server private key, PEM (PKCS#8)."""
        return self._dir / _SERVER_KEY

    @property
    def jwt_secret_path(self) -> Path:
        return self._dir / _JWT_SECRET

    @property
    def jwt_secret(self) -> str:
        """The HS256 secret: the configured one, else the one stored in `jwt.secret`."""
        return self._jwt_secret

    @property
    def ca_fingerprint(self) -> str:
        """SHA-256 of the CA certificate (DER), lowercase hex."""
        return self._ca_fingerprint

    @property
    def generated(self) -> tuple[str, ...]:
        """What this `open()` created: any of "ca", "server_cert", "jwt_secret" (empty: all reused)."""
        return self._generated

    @classmethod
    def open(
        cls,
        state_dir: Path,
        *,
        engine_host: str,
        jwt_secret: str | None,
        now: dt.datetime | None = None,
    ) -> EngineState:
        """Create or reuse the state in `state_dir`. `now` (aware datetime) is for tests.

        Raises ConfigError when the directory cannot be used or the CA files are unreadable (they are never
        silently replaced: clients trust them).
        """
        host = _normalise_host(engine_host)
        if jwt_secret is not None and not jwt_secret.strip():
            raise ConfigError("auth.jwt.token_jwt_secret must not be empty")
        when = now if now is not None else dt.datetime.now(dt.UTC)
        directory = Path(state_dir)
        try:
            if not directory.exists():
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.chmod(directory, 0o700)  # whatever the umask
            if not directory.is_dir():
                raise ConfigError(f"state directory {directory} is not a directory")
            with _locked(directory):
                return cls._open_locked(directory, host, jwt_secret, when)
        except OSError as exc:
            raise ConfigError(f"state directory {directory} is not usable: {exc}") from None

    @classmethod
    def _open_locked(
        cls, directory: Path, host: str, jwt_secret: str | None, now: dt.datetime
    ) -> EngineState:
        generated: list[str] = []
        ca_cert, ca_key, fresh_ca = _ensure_ca(directory, now)
        if fresh_ca:
            generated.append("ca")
        if _ensure_server(directory, host, ca_cert, ca_key, now, force=fresh_ca):
            generated.append("server_cert")
        if jwt_secret is None:
            jwt_secret, fresh_secret = _ensure_secret(directory)
            if fresh_secret:
                generated.append("jwt_secret")
        fingerprint = ca_cert.fingerprint(hashes.SHA256()).hex()
        return cls(directory, host, jwt_secret, fingerprint, tuple(generated))


def _ensure_ca(
    directory: Path, now: dt.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, bool]:
    cert_path, key_path = directory / _CA_CERT, directory / _CA_KEY
    if cert_path.exists() and key_path.exists():
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = _load_key(key_path)
        except ValueError as exc:
            raise ConfigError(
                f"local CA in {directory} is unreadable ({exc}); "
                f"remove {_CA_CERT} and {_CA_KEY} to create a new one"
            ) from None
        if not _same_public_key(cert, key):
            raise ConfigError(f"{cert_path} does not match {key_path}; remove both to create a new local CA")
        _tighten(key_path, 0o600)
        if cert.not_valid_after_utc - RENEW_BEFORE > now:
            return cert, key, False
    # Key first: after a crash between the two writes, a first-time run finds no ca.pem and starts over.
    cert, key = _new_ca(now)
    write_atomic(key_path, _key_pem(key), 0o600)
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert, key, True


def _server_is_current(directory: Path, host: str, ca_cert: x509.Certificate, now: dt.datetime) -> bool:
    cert_path, key_path = directory / _SERVER_CERT, directory / _SERVER_KEY
    if not (cert_path.exists() and key_path.exists()):
        return False
    try:
        chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
        key = _load_key(key_path)
    except ValueError:
        return False
    leaf = chain[0]
    return (
        _same_public_key(leaf, key)
        and _signed_by(leaf, ca_cert)
        and _san_set(leaf) == expected_server_names(host)
        and leaf.not_valid_before_utc <= now
        and leaf.not_valid_after_utc - RENEW_BEFORE > now
    )


def _ensure_server(
    directory: Path,
    host: str,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    *,
    force: bool,
) -> bool:
    if not force and _server_is_current(directory, host, ca_cert, now):
        _tighten(directory / _SERVER_KEY, 0o600)
        return False
    cert, key = _new_server(host, ca_cert, ca_key, now)
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
    write_atomic(directory / _SERVER_KEY, _key_pem(key), 0o600)
    write_atomic(directory / _SERVER_CERT, chain, 0o644)
    return True


def _ensure_secret(directory: Path) -> tuple[str, bool]:
    path = directory / _JWT_SECRET
    if path.exists():
        try:
            stored = path.read_text(encoding="utf-8").strip()
        except UnicodeDecodeError:
            raise ConfigError(f"{path} is not valid UTF-8; remove it to generate a new secret") from None
        if stored:
            _tighten(path, 0o600)
            return stored, False
    secret = secrets.token_urlsafe(32)
    write_atomic(path, (secret + "\n").encode("ascii"), 0o600)
    return secret, True
