"""The revocation log: every credential or token withdrawn, with when and why. Revoking a PAT or an
application credential writes here too, so one table answers "was this ever revoked?" for the verifier,
including single tokens (`kind="token"`, by `jti`) that have no row of their own."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from portway.engine.store.ids import now
from portway.engine.store.records import Revocation, utc
from portway.engine.store.schema import RevocationRow

if TYPE_CHECKING:
    from portway.engine.store.store import Store

Kind = Literal["pat", "app", "token"]


def revocation_record(row: RevocationRow) -> Revocation:
    return Revocation(kind=row.kind, ref=row.ref, project_id=row.project_id,  # type: ignore[arg-type]
                      reason=row.reason, revoked_at=utc(row.revoked_at))


async def add_revocation(session: AsyncSession, kind: Kind, ref: str, project_id: str | None,
                         reason: str | None) -> RevocationRow:
    """Within a caller's transaction; the first revocation of `ref` is kept (idempotent)."""
    row = await session.scalar(select(RevocationRow).where(RevocationRow.kind == kind, RevocationRow.ref == ref))
    if row is None:
        row = RevocationRow(kind=kind, ref=ref, project_id=project_id, reason=reason, revoked_at=now())
        session.add(row)
        await session.flush()
    return row


async def record_revocation(store: Store, kind: Kind, ref: str, *, project_id: str | None = None,
                            reason: str | None = None) -> Revocation:
    """Withdraw one token by `jti` (kind "token"), or note a revocation made elsewhere."""
    async with store.transaction() as session:
        return revocation_record(await add_revocation(session, kind, ref, project_id, reason))


async def is_revoked(store: Store, kind: Kind, ref: str) -> bool:
    async with store.transaction() as session:
        found = await session.scalar(select(RevocationRow.id).where(RevocationRow.kind == kind,
                                                                    RevocationRow.ref == ref))
        return found is not None


async def list_revocations(store: Store, project_id: str | None = None) -> list[Revocation]:
    async with store.transaction() as session:
        query = select(RevocationRow).order_by(RevocationRow.id)
        if project_id is not None:
            query = query.where(RevocationRow.project_id == project_id)
        return [revocation_record(row) for row in await session.scalars(query)]
