"""Users: whom credentials speak for. A user is its token `subject` plus a `role` (`operator` may use the
admin API with its PATs, `member` may not) and an optional `disabled_at` (a disabled user's PATs, and every
token derived from them, are refused until it is enabled again). A reference is a user id or a subject.

PAT creation makes the user of a new subject on first sight (`ensure_user`: a member, or an operator when the
PAT asks for `admin`); operators manage users explicitly here."""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING, Literal

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from portway.engine.store.errors import Conflict, Invalid, NotFound
from portway.engine.store.ids import new_id, now
from portway.engine.store.records import User, utc
from portway.engine.store.schema import PatRow, UserRow

if TYPE_CHECKING:
    from portway.engine.store.store import Store

Role = Literal["operator", "member"]
ROLES: tuple[Role, ...] = ("operator", "member")
MAX_SUBJECT = 255


def check_subject(subject: str) -> str:
    """1 to 255 characters, none of them a control character (subjects end up in logs and tables)."""
    if not 1 <= len(subject) <= MAX_SUBJECT:
        raise Invalid(f"a subject has 1 to {MAX_SUBJECT} characters")
    if any(unicodedata.category(char) == "Cc" for char in subject):
        raise Invalid("a subject may not contain control characters")
    return subject


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise Invalid(f"role {role!r} is not one of {', '.join(ROLES)}")
    return role


def user_record(row: UserRow) -> User:
    return User(id=row.id, subject=row.subject, role=check_role(row.role), created_at=utc(row.created_at),
                disabled_at=utc(row.disabled_at) if row.disabled_at else None)


async def ensure_user(session: AsyncSession, subject: str, role: str = "member") -> UserRow:
    """The user row for a token subject, created (with `role`) on first sight: credentials point at their
    owner. A disabled user gets no new credentials."""
    check_subject(subject)
    row = await session.scalar(select(UserRow).where(UserRow.subject == subject))
    if row is None:
        row = UserRow(id=new_id("usr"), subject=subject, role=role, created_at=now(), disabled_at=None)
        session.add(row)
        await session.flush()
    elif row.disabled_at is not None:
        raise Conflict(f"user {subject!r} is disabled: enable it first")
    return row


async def user_row(session: AsyncSession, ref: str) -> UserRow:
    """A user by id, else by subject."""
    row = await session.get(UserRow, ref) or await session.scalar(select(UserRow).where(UserRow.subject == ref))
    if row is None:
        raise NotFound(f"no user {ref!r}")
    return row


async def create_user(store: Store, subject: str, role: str = "member") -> User:
    check_subject(subject)
    checked = check_role(role)
    try:
        async with store.transaction() as session:
            row = UserRow(id=new_id("usr"), subject=subject, role=checked, created_at=now(), disabled_at=None)
            session.add(row)
    except IntegrityError:
        raise Conflict(f"a user with subject {subject!r} exists") from None
    return user_record(row)


async def get_user(store: Store, ref: str) -> User:
    async with store.transaction() as session:
        return user_record(await user_row(session, ref))


async def list_users(store: Store) -> list[User]:
    async with store.transaction() as session:
        rows = await session.scalars(select(UserRow).order_by(UserRow.created_at, UserRow.subject))
        return [user_record(row) for row in rows]


async def update_user(store: Store, ref: str, *, role: str | None = None, disabled: bool | None = None) -> User:
    """Change the role and/or the disabled state in one transaction. Disabling an already disabled user
    keeps the first `disabled_at`."""
    checked = check_role(role) if role is not None else None
    async with store.transaction() as session:
        row = await user_row(session, ref)
        if checked is not None:
            row.role = checked
        if disabled is True and row.disabled_at is None:
            row.disabled_at = now()
        elif disabled is False:
            row.disabled_at = None
        return user_record(row)


async def set_role(store: Store, ref: str, role: str) -> User:
    return await update_user(store, ref, role=role)


async def disable_user(store: Store, ref: str) -> User:
    return await update_user(store, ref, disabled=True)


async def enable_user(store: Store, ref: str) -> User:
    return await update_user(store, ref, disabled=False)


async def delete_user(store: Store, ref: str) -> None:
    """Only a user without live (unrevoked) PATs: deleting must not be a silent revocation. Its revoked
    PATs stay in their projects, no longer pointing at anyone."""
    async with store.transaction() as session:
        row = await user_row(session, ref)
        live = await session.scalar(select(func.count()).select_from(PatRow).where(
            PatRow.user_id == row.id, PatRow.revoked_at.is_(None))) or 0
        if live:
            raise Conflict(f"user {row.subject!r} still has {live} live personal access token(s): revoke them first")
        await session.execute(update(PatRow).where(PatRow.user_id == row.id).values(user_id=None))
        await session.delete(row)
