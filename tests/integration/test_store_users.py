"""Users in the control-plane store, on real SQLite and PostgreSQL: creation and lookup by id or subject,
roles, disabling, deletion refused while PATs are live, validation, and the 0001 → 0002 migration of a
database that already holds users."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from portway.engine.auth import TokenVerifier
from portway.engine.store import (
    Conflict,
    Invalid,
    NotFound,
    Store,
    create_pat,
    create_user,
    delete_user,
    disable_user,
    enable_user,
    get_pat,
    get_user,
    list_users,
    migrate,
    revoke_pat,
    set_role,
    update_user,
)

pytestmark = pytest.mark.store

SIGNER = TokenVerifier("s" * 40, enabled=True)


async def test_create_get_list(store: Store) -> None:
    alice = await create_user(store, "alice@example.com", "operator")
    bob = await create_user(store, "bob")
    assert alice.id.startswith("usr_") and alice.role == "operator" and alice.disabled_at is None
    assert bob.role == "member"
    assert await get_user(store, alice.id) == alice == await get_user(store, "alice@example.com")
    assert [u.subject for u in await list_users(store)] == ["alice@example.com", "bob"]
    with pytest.raises(Conflict, match="exists"):
        await create_user(store, "bob", "operator")
    with pytest.raises(NotFound, match="carol"):
        await get_user(store, "carol")
    assert len(await list_users(store)) == 2  # the refused creation left nothing behind


@pytest.mark.parametrize(("subject", "role", "fragment"), [
    ("", "member", "1 to 255"),
    ("x" * 256, "member", "1 to 255"),
    ("bad\nsubject", "member", "control"),
    ("bell\x07", "member", "control"),
    ("del\x7f", "member", "control"),
    ("alice", "admin", "role"),
    ("alice", "Operator", "role"),
])
async def test_invalid_subjects_and_roles(store: Store, subject: str, role: str, fragment: str) -> None:
    with pytest.raises(Invalid, match=fragment):
        await create_user(store, subject, role)
    assert await list_users(store) == []


async def test_unicode_and_longest_subjects_are_fine(store: Store) -> None:
    assert (await create_user(store, "zoë 🚀 <ops>")).subject == "zoë 🚀 <ops>"
    assert len((await create_user(store, "y" * 255)).subject) == 255


async def test_role_and_disabled_state(store: Store) -> None:
    bob = await create_user(store, "bob")
    assert (await set_role(store, "bob", "operator")).role == "operator"
    assert (await set_role(store, bob.id, "member")).role == "member"
    disabled = await disable_user(store, "bob")
    assert disabled.disabled_at is not None
    again = await disable_user(store, bob.id)  # idempotent: the first time stands
    assert again.disabled_at == disabled.disabled_at
    assert (await get_user(store, "bob")).disabled_at == disabled.disabled_at
    assert (await enable_user(store, "bob")).disabled_at is None
    assert (await enable_user(store, "bob")).disabled_at is None
    both = await update_user(store, "bob", role="operator", disabled=True)
    assert both.role == "operator" and both.disabled_at is not None
    with pytest.raises(Invalid, match="role"):
        await set_role(store, "bob", "root")
    assert (await get_user(store, "bob")).role == "operator"  # the refused change changed nothing
    for change in (set_role(store, "nobody", "member"), disable_user(store, "nobody"), enable_user(store, "nobody")):
        with pytest.raises(NotFound, match="nobody"):
            await change


async def test_pats_make_members_and_disabled_users_get_none(store: Store) -> None:
    created = await create_pat(store, signer=SIGNER, engine="e", project="default", name="ci", subject="dave")
    dave = await get_user(store, "dave")
    assert created.pat.user_id == dave.id and dave.role == "member"
    await disable_user(store, "dave")
    with pytest.raises(Conflict, match="disabled"):
        await create_pat(store, signer=SIGNER, engine="e", project="default", name="ci2", subject="dave")
    with pytest.raises(Invalid, match="control"):
        await create_pat(store, signer=SIGNER, engine="e", project="default", name="ci3", subject="a\tb")


async def test_an_admin_pat_needs_an_operator(store: Store) -> None:
    """An admin PAT makes a new subject an operator (the operator asking grants exactly that) and is refused
    for a member: its `admin` would be dead letter, since the stored role decides (admin_routes.is_operator)."""
    created = await create_pat(store, signer=SIGNER, engine="e", project="default", name="ops", subject="olga",
                               permissions=["admin"])
    assert (await get_user(store, "olga")).role == "operator" and created.pat.permissions == ["admin"]
    await create_user(store, "mallory")
    with pytest.raises(Conflict, match=r"mallory.*member.*operator"):
        await create_pat(store, signer=SIGNER, engine="e", project="default", name="ops", subject="mallory",
                         permissions=["tunnels.resources.read-only", "admin"])
    assert (await get_user(store, "mallory")).role == "member"  # nothing changed
    await set_role(store, "mallory", "operator")
    await create_pat(store, signer=SIGNER, engine="e", project="default", name="ops", subject="mallory",
                     permissions=["admin"])
    await create_pat(store, signer=SIGNER, engine="e", project="default", name="all", subject="dan")
    assert (await get_user(store, "dan")).role == "member"  # every permission of a member: not an operator's


async def test_delete_only_without_live_pats(store: Store) -> None:
    first = await create_pat(store, signer=SIGNER, engine="e", project="default", name="a", subject="erin")
    second = await create_pat(store, signer=SIGNER, engine="e", project="default", name="b", subject="erin")
    erin = await get_user(store, "erin")
    with pytest.raises(Conflict, match=r"2 live personal access token.*revoke them first"):
        await delete_user(store, "erin")
    await revoke_pat(store, first.pat.id)
    with pytest.raises(Conflict, match="1 live"):
        await delete_user(store, erin.id)
    await revoke_pat(store, second.pat.id)
    other = await create_pat(store, signer=SIGNER, engine="e", project="default", name="c", subject="frank")
    await delete_user(store, "erin")
    with pytest.raises(NotFound):
        await get_user(store, "erin")
    assert (await get_pat(store, first.pat.id)).user_id is None  # revoked PATs stay, owned by nobody
    assert (await get_pat(store, other.pat.id)).user_id == (await get_user(store, "frank")).id
    with pytest.raises(NotFound, match="erin"):
        await delete_user(store, "erin")


@pytest.mark.store(empty=True)
async def test_migrating_0001_to_0002_keeps_users(database: URL) -> None:
    """A database made by the previous release (revision 0001) with a user in it reaches head on open."""
    engine = create_async_engine(database)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(lambda sync: command.upgrade(migrate._config(sync), "0001"))
            await connection.execute(text(
                "INSERT INTO users (id, subject, role, created_at) VALUES ('usr_old', 'old', 'operator', "
                "'2025-01-01 00:00:00+00:00')"))
    finally:
        await engine.dispose()
    opened = await Store.open(database)
    try:
        old = await get_user(opened, "old")
        assert (old.id, old.role, old.disabled_at) == ("usr_old", "operator", None)
        assert (await disable_user(opened, "old")).disabled_at is not None
    finally:
        await opened.close()
