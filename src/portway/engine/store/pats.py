"""Personal access tokens: HS256 JWTs of type `pat` signed with the engine secret (§3.1). The token is
returned once by `create_pat`; the store keeps its SHA-256, which is all `lookup_pat_by_hash` needs to
find the row again when the token is presented."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sqlalchemy import select, update

from portway.engine.access.operators import ADMIN_PERMISSION, OPERATOR
from portway.engine.store.errors import Conflict, Invalid, NotFound
from portway.engine.store.grants import check_permissions, check_resources
from portway.engine.store.ids import check_name, new_id, now
from portway.engine.store.records import CreatedPat, Pat, utc
from portway.engine.store.revocations import add_revocation
from portway.engine.store.schema import PatRow
from portway.engine.store.users import ensure_user
from portway.engine.store.workspaces import project_row

if TYPE_CHECKING:
    from portway.engine.store.store import Store

MAX_PAT_TTL_S = 5 * 366 * 24 * 3600
DEFAULT_PAT_TTL_S = 90 * 24 * 3600


@runtime_checkable
class Signer(Protocol):
    """Signs tokens with the engine secret (the engine's `TokenVerifier.issue` is one)."""

    def issue(self, *, subject: str, ttl_s: int, now: float | None = None,
              extra: Mapping[str, object] | None = None) -> str: ...


def token_sha256(token: str) -> str:
    """The form a PAT is stored and looked up in."""
    return hashlib.sha256(token.encode()).hexdigest()


def pat_record(row: PatRow) -> Pat:
    return Pat(id=row.id, name=row.name, project_id=row.project_id, user_id=row.user_id,
               token_sha256=row.token_sha256, token_endpoint=row.token_endpoint, permissions=row.permissions,
               resources=row.resources, created_at=utc(row.created_at), expires_at=utc(row.expires_at),
               last_used_at=utc(row.last_used_at) if row.last_used_at else None,
               revoked_at=utc(row.revoked_at) if row.revoked_at else None)


async def create_pat(store: Store, *, signer: Signer, engine: str, project: str, name: str, subject: str,
                     permissions: list[str] | None = None, resources: dict[str, Any] | None = None,
                     ttl_s: int = DEFAULT_PAT_TTL_S) -> CreatedPat:
    """Mint and record a PAT for `subject` in `project` (id or name); the token is in the answer only.

    A PAT with the `admin` permission is an operator token only while its user is an operator, so one is
    refused for a member (409: promote the user first) and a subject seen for the first time becomes an
    operator: the operator asking for it grants exactly that."""
    check_name(name, "token")
    permissions, resources = check_permissions(permissions), check_resources(resources)
    if not 1 <= ttl_s <= MAX_PAT_TTL_S:
        raise Invalid(f"a PAT lives from 1 second to {MAX_PAT_TTL_S} seconds")
    created = now()
    async with store.transaction() as session:
        target = await project_row(session, project)
        wants_admin = permissions is not None and ADMIN_PERMISSION in permissions
        owner = await ensure_user(session, subject, OPERATOR if wants_admin else "member")
        if wants_admin and owner.role != OPERATOR:
            raise Conflict(f"user {subject!r} is a member: make it an operator before giving it an admin PAT")
        pat_id, endpoint = new_id("pat"), secrets.token_hex(4)
        claims: dict[str, object] = {"type": "pat", "token_endpoint": endpoint, "metadata": {"engine": engine},
                                     "workspace_id": target.workspace_id, "project_id": target.id,
                                     "sourceCredentialId": pat_id}
        if permissions is not None:
            claims["permissions"] = permissions
        if resources is not None:
            claims["resources"] = resources
        token = signer.issue(subject=subject, ttl_s=ttl_s, now=created.timestamp(), extra=claims)
        row = PatRow(id=pat_id, token_sha256=token_sha256(token), token_endpoint=endpoint, name=name,
                     project_id=target.id, user_id=owner.id, permissions=permissions, resources=resources,
                     created_at=created, expires_at=created.replace(microsecond=0) + timedelta(seconds=ttl_s),
                     last_used_at=None, revoked_at=None)
        session.add(row)
    return CreatedPat(pat=pat_record(row), token=token)


async def list_pats(store: Store, project: str | None = None) -> list[Pat]:
    async with store.transaction() as session:
        query = select(PatRow).order_by(PatRow.created_at)
        if project is not None:
            query = query.where(PatRow.project_id == (await project_row(session, project)).id)
        return [pat_record(row) for row in await session.scalars(query)]


async def get_pat(store: Store, pat_id: str) -> Pat:
    async with store.transaction() as session:
        row = await session.get(PatRow, pat_id)
        if row is None:
            raise NotFound(f"no personal access token {pat_id!r}")
        return pat_record(row)


async def revoke_pat(store: Store, pat_id: str, reason: str | None = None) -> Pat:
    """Revoke for good (idempotent: a second call keeps the first time and reason)."""
    async with store.transaction() as session:
        row = await session.get(PatRow, pat_id)
        if row is None:
            raise NotFound(f"no personal access token {pat_id!r}")
        revocation = await add_revocation(session, "pat", row.id, row.project_id, reason)
        if row.revoked_at is None:
            row.revoked_at = revocation.revoked_at
        return pat_record(row)


async def lookup_pat_by_hash(store: Store, sha256_hex: str) -> Pat | None:
    """The PAT whose token hashes to `sha256_hex` (revoked and expired ones too: the verifier decides)."""
    async with store.transaction() as session:
        row = await session.scalar(select(PatRow).where(PatRow.token_sha256 == sha256_hex.lower()))
        return pat_record(row) if row is not None else None


async def touch_pat(store: Store, pat_id: str, when: datetime | None = None) -> None:
    """Record a use of the PAT (`last_used_at`)."""
    async with store.transaction() as session:
        await session.execute(update(PatRow).where(PatRow.id == pat_id).values(last_used_at=when or now()))
