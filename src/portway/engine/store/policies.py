"""Project access policies, versioned: every `set_access_policy` adds a version (history is kept, the
highest is in force), and `expected_version` makes a read-modify-write safe against a concurrent writer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portway.engine.accesspolicy import PolicyDocument
from portway.engine.store.errors import Conflict
from portway.engine.store.ids import now
from portway.engine.store.records import AccessPolicy, utc
from portway.engine.store.schema import AccessPolicyRow
from portway.engine.store.workspaces import project_row

if TYPE_CHECKING:
    from portway.engine.store.store import Store


def policy_record(row: AccessPolicyRow) -> AccessPolicy:
    return AccessPolicy(project_id=row.project_id, version=row.version,
                        policy=PolicyDocument.model_validate(row.document), created_at=utc(row.created_at),
                        created_by=row.created_by)


async def get_access_policy(store: Store, project: str) -> AccessPolicy:
    """The policy in force (version 0, the permissive default, when none was ever set)."""
    async with store.transaction() as session:
        target = await project_row(session, project)
        row = await session.scalar(select(AccessPolicyRow).where(AccessPolicyRow.project_id == target.id)
                                   .order_by(AccessPolicyRow.version.desc()).limit(1))
        if row is None:
            return AccessPolicy(project_id=target.id, version=0, policy=PolicyDocument(), created_at=None,
                                created_by=None)
        return policy_record(row)


async def set_access_policy(store: Store, project: str, policy: PolicyDocument, *,
                            expected_version: int | None = None, created_by: str | None = None) -> AccessPolicy:
    """Store `policy` as the next version. With `expected_version`, refuse (Conflict) unless that is the
    version in force, so two operators editing at once cannot silently overwrite each other."""
    try:
        async with store.transaction() as session:
            target = await project_row(session, project)
            current = await session.scalar(select(AccessPolicyRow.version)
                                           .where(AccessPolicyRow.project_id == target.id)
                                           .order_by(AccessPolicyRow.version.desc()).limit(1)) or 0
            if expected_version is not None and expected_version != current:
                raise Conflict(f"the policy is at version {current}, not {expected_version}: read it again")
            row = AccessPolicyRow(project_id=target.id, version=current + 1,
                                  document=policy.model_dump(mode="json"), created_at=now(), created_by=created_by)
            session.add(row)
    except IntegrityError:  # another writer took the same version number meanwhile
        raise Conflict("the policy changed meanwhile: read it again") from None
    return policy_record(row)


async def policy_history(store: Store, project: str) -> list[AccessPolicy]:
    """Every stored version, oldest first."""
    async with store.transaction() as session:
        target = await project_row(session, project)
        rows = await session.scalars(select(AccessPolicyRow).where(AccessPolicyRow.project_id == target.id)
                                     .order_by(AccessPolicyRow.version))
        return [policy_record(row) for row in rows]
