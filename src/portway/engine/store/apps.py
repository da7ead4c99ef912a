"""Application credentials (§3.3): a client id and a P-521 key pair. The private key, hex of its PKCS#8
DER, is the client secret: returned once by `create_app_credential`, never stored. The engine keeps the
public key, which is what checking an ES512 application token needs (`lookup_app_credential`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from portway.engine.store.errors import NotFound
from portway.engine.store.grants import check_permissions, check_resources
from portway.engine.store.ids import check_name, new_id, now
from portway.engine.store.records import AppCredential, CreatedAppCredential, utc
from portway.engine.store.revocations import add_revocation
from portway.engine.store.schema import AppCredentialRow
from portway.engine.store.workspaces import project_row

if TYPE_CHECKING:
    from portway.engine.store.store import Store


def app_record(row: AppCredentialRow) -> AppCredential:
    return AppCredential(client_id=row.client_id, name=row.name, project_id=row.project_id,
                         public_key_pem=row.public_key_pem, permissions=row.permissions, resources=row.resources,
                         created_at=utc(row.created_at), revoked_at=utc(row.revoked_at) if row.revoked_at else None)


async def create_app_credential(store: Store, *, project: str, name: str, permissions: list[str] | None = None,
                                resources: dict[str, Any] | None = None) -> CreatedAppCredential:
    """New credentials in `project`; `permissions`/`resources` are the ceilings of every token they mint."""
    check_name(name, "credential")
    permissions, resources = check_permissions(permissions), check_resources(resources)
    key = ec.generate_private_key(ec.SECP521R1())
    secret = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption()).hex()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    async with store.transaction() as session:
        target = await project_row(session, project)
        row = AppCredentialRow(client_id=new_id("app"), public_key_pem=public, name=name, project_id=target.id,
                               permissions=permissions, resources=resources, created_at=now(), revoked_at=None)
        session.add(row)
    return CreatedAppCredential(credential=app_record(row), secret=secret)


async def list_app_credentials(store: Store, project: str | None = None) -> list[AppCredential]:
    async with store.transaction() as session:
        query = select(AppCredentialRow).order_by(AppCredentialRow.created_at)
        if project is not None:
            query = query.where(AppCredentialRow.project_id == (await project_row(session, project)).id)
        return [app_record(row) for row in await session.scalars(query)]


async def lookup_app_credential(store: Store, client_id: str) -> AppCredential | None:
    """The credential for a token's `clientId` (revoked ones too: the verifier decides)."""
    async with store.transaction() as session:
        row = await session.get(AppCredentialRow, client_id)
        return app_record(row) if row is not None else None


async def revoke_app_credential(store: Store, client_id: str, reason: str | None = None) -> AppCredential:
    """Revoke for good (idempotent); tokens already minted with it fail once the verifier checks here."""
    async with store.transaction() as session:
        row = await session.get(AppCredentialRow, client_id)
        if row is None:
            raise NotFound(f"no application credential {client_id!r}")
        revocation = await add_revocation(session, "app", row.client_id, row.project_id, reason)
        if row.revoked_at is None:
            row.revoked_at = revocation.revoked_at
        return app_record(row)
