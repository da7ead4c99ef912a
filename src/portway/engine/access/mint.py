"""Offline minting from application credentials (§3.3), and new credential pairs. Pure: no engine, no
network; `portway token create --client-id … --client-secret …` calls `mint_app_token` directly.

The client secret is the hex of the PKCS#8 DER encoding of a P-521 private key; the engine keeps only the
public key (`AppCredential.public_key_pem`) and verifies the ES512 signature with it (tokens.py).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from portway.engine.access.resources import Boundary
from portway.engine.access.tokens import APP_ALGORITHM, APP_CLOCK_SKEW_S, APP_MAX_LIFETIME_S

__all__ = ["DEFAULT_EXPIRES_IN_S", "AppCredential", "load_client_secret", "mint_app_token", "new_app_credential",
           "public_key_pem"]

DEFAULT_EXPIRES_IN_S = 60
_RUNTIME_SCOPES = {"tunnels": {"create": True, "connect": True, "list": True}}


@dataclass(frozen=True, slots=True)
class AppCredential:
    """A new credential pair: hand `client_id` and `client_secret` to the application, store the rest."""

    client_id: str
    client_secret: str = field(repr=False)
    public_key_pem: str


def new_app_credential(client_id: str | None = None) -> AppCredential:
    """A fresh P-521 key pair; `client_id` defaults to 24 random hex digits."""
    key = ec.generate_private_key(ec.SECP521R1())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return AppCredential(client_id=client_id or secrets.token_hex(12), client_secret=der.hex(),
                         public_key_pem=_pem(key.public_key()))


def load_client_secret(client_secret: str) -> ec.EllipticCurvePrivateKey:
    """The P-521 private key of a client secret; raises ValueError (without echoing the secret)."""
    try:
        key = serialization.load_der_private_key(bytes.fromhex(client_secret.strip()), password=None)
    except (ValueError, TypeError):
        raise ValueError("the client secret is not the hex of a PKCS#8 DER private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP521R1):
        raise ValueError("the client secret is not a P-521 (secp521r1) EC key")
    return key


def public_key_pem(client_secret: str) -> str:
    """The public key PEM the engine stores for `client_secret`."""
    return _pem(load_client_secret(client_secret).public_key())


def mint_app_token(
    client_id: str,
    client_secret: str,
    *,
    expires_in: int = DEFAULT_EXPIRES_IN_S,
    now: float | None = None,
    issued_at: int | None = None,
    permissions: Sequence[str] | None = None,
    resources: Mapping[str, object] | None = None,
    project_id: str | None = None,
    workspace_id: str | None = None,
    engine: str | None = None,
) -> str:
    """An ES512 app token: {clientId, type "app", iat, exp = iat + expires_in, permissions, metadata.engine,
    resources}.

    `resources` is the whole claim (`{"tunnels": node}`); without it, `project_id` or `workspace_id` builds the
    runtime default (that target with create, connect and list). One of the three is required, as for an
    explicit-engine client (§3.3). `issued_at` may differ from `now` by at most 300 s. Raises ValueError.
    """
    if not client_id:
        raise ValueError("client_id must not be empty")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or not 1 <= expires_in <= APP_MAX_LIFETIME_S:
        raise ValueError(f"expires_in must be an integer from 1 to {APP_MAX_LIFETIME_S} seconds")
    clock = int(time.time() if now is None else now)
    iat = clock if issued_at is None else issued_at
    if abs(iat - clock) > APP_CLOCK_SKEW_S:
        raise ValueError(f"issued_at must be within {APP_CLOCK_SKEW_S} s of now")
    key = load_client_secret(client_secret)
    claims: dict[str, object] = {
        "clientId": client_id, "type": "app", "iat": iat, "exp": iat + expires_in,
        "permissions": None if permissions is None else list(permissions),
        "resources": _resources(resources, project_id, workspace_id),
    }
    if engine is not None:
        claims["metadata"] = {"engine": engine}
    return jwt.encode(claims, key, algorithm=APP_ALGORITHM)


def _resources(resources: Mapping[str, object] | None, project_id: str | None,
               workspace_id: str | None) -> dict[str, object]:
    if resources is not None:
        if project_id is not None or workspace_id is not None:
            raise ValueError("give resources, or project_id / workspace_id, not both")
        if set(resources) != {"tunnels"}:
            raise ValueError('resources must be {"tunnels": {...}}')
        Boundary.parse(resources["tunnels"])  # never sign a tree the engine would read as "nothing"
        return dict(resources)
    if project_id is not None and workspace_id is not None:
        raise ValueError("project_id and workspace_id are mutually exclusive")
    if project_id is not None:
        return {"tunnels": {"projects": [project_id], "scopes": _RUNTIME_SCOPES}}
    if workspace_id is not None:
        return {"tunnels": {"workspaces": [workspace_id], "scopes": _RUNTIME_SCOPES}}
    raise ValueError("give project_id, workspace_id or resources")


def _pem(key: ec.EllipticCurvePublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
