"""The control-plane store on real SQLite and PostgreSQL: migrations from an empty database, repository
round trips, hash-only PATs, secret-free application credentials, revocation and policy versions."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import inspect, text
from sqlalchemy.engine import URL

from portway.engine.auth import TokenVerifier
from portway.engine.store import (
    Conflict,
    Invalid,
    NotFound,
    PolicyDocument,
    Store,
    create_app_credential,
    create_pat,
    create_project,
    create_workspace,
    delete_project,
    delete_workspace,
    finishing,
    get_access_policy,
    get_pat,
    get_project,
    get_workspace,
    is_revoked,
    list_app_credentials,
    list_pats,
    list_projects,
    list_revocations,
    list_workspaces,
    lookup_app_credential,
    lookup_pat_by_hash,
    migrate,
    policy_history,
    record_revocation,
    revoke_app_credential,
    revoke_pat,
    set_access_policy,
    store_url,
    token_sha256,
    touch_pat,
)
from portway.engine.store.schema import Base
from portway.errors import ConfigError

SECRET = "s" * 40
SIGNER = TokenVerifier(SECRET, enabled=True)
TABLES = {"workspaces", "projects", "users", "personal_access_tokens", "app_credentials", "revocations",
          "access_policies", "webhook_endpoints", "webhook_secrets", "webhook_events", "webhook_deliveries",
          "webhook_attempts", "alembic_version"}
# The tests of the store itself run on both backends, from an empty database (the migrations are under test).
on_both = pytest.mark.store(empty=True)


@on_both
async def test_migrates_an_empty_database_to_head_and_seeds_defaults(database: URL) -> None:
    opened = await Store.open(database)
    try:
        async with opened.engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
            revision = await connection.run_sync(migrate.current)
        assert tables == TABLES
        assert revision == migrate.head()
        assert [w.name for w in await list_workspaces(opened)] == ["default"]
        assert [p.name for p in await list_projects(opened)] == ["default"]
    finally:
        await opened.close()
    again = await Store.open(database)  # a second start migrates nothing and seeds nothing twice
    try:
        assert len(await list_projects(again)) == 1
    finally:
        await again.close()


@on_both
async def test_migrations_build_exactly_the_schema_of_schema_py(store: Store) -> None:
    """Alembic's autogenerate comparison of the migrated database with `schema.py` finds nothing to do:
    a column added to one and not the other (or with another type or nullability) fails here."""
    async with store.engine.connect() as connection:
        differences = await connection.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata))
    assert differences == []


@on_both
async def test_workspace_and_project_round_trips(store: Store) -> None:
    acme = await create_workspace(store, "acme")
    assert await get_workspace(store, "acme") == acme == await get_workspace(store, acme.id)
    web = await create_project(store, "web", "acme")
    assert web.workspace_id == acme.id
    same_name = await create_project(store, "web")  # in "default": names are per workspace
    assert {p.id for p in await list_projects(store, "acme")} == {web.id}
    with pytest.raises(Invalid, match="several workspaces"):
        await get_project(store, "web")
    assert await get_project(store, "acme/web") == web
    assert await get_project(store, same_name.id) == same_name
    with pytest.raises(Conflict):
        await create_project(store, "web", "acme")
    with pytest.raises(Conflict):
        await create_workspace(store, "acme")
    with pytest.raises(Invalid):
        await create_workspace(store, "Not A Name")
    with pytest.raises(Conflict, match="still has 1 project"):
        await delete_workspace(store, "acme")
    with pytest.raises(Conflict, match="default"):
        await delete_project(store, "default/default")
    with pytest.raises(Conflict, match="default"):
        await delete_workspace(store, "default")
    await delete_project(store, web.id)
    await delete_workspace(store, "acme")
    with pytest.raises(NotFound):
        await get_workspace(store, "acme")
    with pytest.raises(NotFound):
        await create_project(store, "x", "nowhere")


@on_both
async def test_pat_is_stored_as_a_hash_and_found_by_it(store: Store) -> None:
    created = await create_pat(store, signer=SIGNER, engine="edge.example", project="default", name="ci",
                               subject="alice", permissions=["tunnels.tunnels.create-delete", "admin"],
                               resources={"tunnels": {"projects": ["p"]}}, ttl_s=3600)
    claims = jwt.decode(created.token, SECRET, algorithms=["HS256"])
    assert claims["type"] == "pat" and claims["sub"] == "alice"
    assert len(claims["token_endpoint"]) == 8 and int(claims["token_endpoint"], 16) >= 0
    assert claims["token_endpoint"] == created.pat.token_endpoint
    assert claims["permissions"] == ["admin", "tunnels.tunnels.create-delete"]
    assert claims["metadata"] == {"engine": "edge.example"}
    assert claims["project_id"] == created.pat.project_id
    assert claims["exp"] - claims["iat"] == 3600
    assert SIGNER.verify(created.token).subject == "alice"
    assert created.pat.token_sha256 == token_sha256(created.token)
    found = await lookup_pat_by_hash(store, token_sha256(created.token))
    assert found == created.pat
    assert await lookup_pat_by_hash(store, token_sha256(created.token + "x")) is None
    await touch_pat(store, created.pat.id)
    assert (await get_pat(store, created.pat.id)).last_used_at is not None
    assert [p.id for p in await list_pats(store, "default")] == [created.pat.id]
    async with store.engine.connect() as connection:
        columns = (await connection.execute(text("SELECT * FROM personal_access_tokens"))).one()
    assert created.token not in json.dumps([str(value) for value in columns])
    with pytest.raises(Invalid):
        await create_pat(store, signer=SIGNER, engine="e", project="default", name="x", subject="a",
                         permissions=["Bad Permission"])
    with pytest.raises(Invalid):
        await create_pat(store, signer=SIGNER, engine="e", project="default", name="x", subject="a",
                         resources={"clients": {}})
    with pytest.raises(Invalid, match=r"resources\.tunnels"):  # a typo'd tree: refused, not a PAT granting nothing
        await create_pat(store, signer=SIGNER, engine="e", project="default", name="x", subject="a",
                         resources={"tunnels": {"scopes": {"tunnels": {"lists": True}}}})
    with pytest.raises(NotFound):
        await create_pat(store, signer=SIGNER, engine="e", project="nope", name="x", subject="a")


def _database_bytes(directory: Path) -> bytes:
    return b"".join(path.read_bytes() for path in directory.iterdir() if path.name.startswith("control.sqlite3"))


async def test_no_secret_ever_reaches_the_sqlite_file(tmp_path: Path) -> None:
    """Scan the database file's bytes (and its journal) for the token and the application secret."""
    opened = await Store.open(store_url(None, tmp_path))
    try:
        pat = await create_pat(store=opened, signer=SIGNER, engine="e", project="default", name="ci",
                               subject="alice")
        app = await create_app_credential(opened, project="default", name="backend")
    finally:
        await opened.close()
    stored = _database_bytes(tmp_path)
    assert token_sha256(pat.token).encode() in stored  # the hash is there: the scan does see the rows
    assert app.credential.client_id.encode() in stored
    signature = pat.token.rsplit(".", 1)[1]
    for secret in (pat.token.encode(), signature.encode(), app.secret.encode(), bytes.fromhex(app.secret),
                   app.secret[:64].encode()):
        assert secret not in stored


@on_both
async def test_app_credentials_keep_only_the_public_key(store: Store) -> None:
    created = await create_app_credential(store, project="default", name="backend",
                                          permissions=["tunnels.streams.create-delete"])
    key = serialization.load_der_private_key(bytes.fromhex(created.secret), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp521r1"
    found = await lookup_app_credential(store, created.credential.client_id)
    assert found == created.credential
    assert "PRIVATE" not in found.public_key_pem
    public = serialization.load_pem_public_key(found.public_key_pem.encode())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(key.sign(b"minted", ec.ECDSA(hashes.SHA512())), b"minted", ec.ECDSA(hashes.SHA512()))
    assert await lookup_app_credential(store, "app_missing") is None
    assert [a.client_id for a in await list_app_credentials(store)] == [found.client_id]
    async with store.engine.connect() as connection:
        row = (await connection.execute(text("SELECT * FROM app_credentials"))).one()
    assert created.secret not in " ".join(str(value) for value in row)


@on_both
async def test_revocation(store: Store) -> None:
    web = await create_project(store, "web")
    pat = await create_pat(store, signer=SIGNER, engine="e", project="web", name="ci", subject="alice")
    app = await create_app_credential(store, project="web", name="backend")
    with pytest.raises(Conflict, match="2 live credential"):
        await delete_project(store, "web")
    revoked = await revoke_pat(store, pat.pat.id, "leaked")
    assert revoked.revoked_at is not None
    again = await revoke_pat(store, pat.pat.id, "other reason")  # idempotent: the first revocation stands
    assert again.revoked_at == revoked.revoked_at
    found = await lookup_pat_by_hash(store, token_sha256(pat.token))
    assert found is not None and found.revoked_at == revoked.revoked_at
    assert (await revoke_app_credential(store, app.credential.client_id)).revoked_at is not None
    await record_revocation(store, "token", "jti-123", reason="one token")
    assert await is_revoked(store, "pat", pat.pat.id)
    assert await is_revoked(store, "app", app.credential.client_id)
    assert await is_revoked(store, "token", "jti-123")
    assert not await is_revoked(store, "token", "jti-456")
    log = await list_revocations(store, web.id)
    assert [(r.kind, r.ref, r.reason) for r in log] == [("pat", pat.pat.id, "leaked"),
                                                        ("app", app.credential.client_id, None)]
    with pytest.raises(NotFound):
        await revoke_pat(store, "pat_missing")
    await delete_project(store, "web")  # only revoked credentials left: they go with it
    assert await lookup_pat_by_hash(store, token_sha256(pat.token)) is None
    assert len(await list_revocations(store)) == 3  # the log outlives the project


@on_both
async def test_policy_versions(store: Store) -> None:
    initial = await get_access_policy(store, "default")
    assert initial.version == 0 and initial.policy == PolicyDocument()
    first = await set_access_policy(store, "default", PolicyDocument(allow_public=False,
                                                                     allowed_protocols=["http", "tls"]),
                                    expected_version=0, created_by="alice")
    assert first.version == 1 and first.created_by == "alice"
    second = await set_access_policy(store, "default", PolicyDocument(
        required_labels={"env": "prod", "team": None}, allowed_source_cidrs=["10.1.2.3/8"],
        allowed_countries=["fr", "DE"], min_tls_version="tls1.3"))
    assert second.version == 2
    assert second.policy.allowed_source_cidrs == ["10.0.0.0/8"] and second.policy.allowed_countries == ["FR", "DE"]
    assert await get_access_policy(store, "default") == second
    with pytest.raises(Conflict, match="version 2, not 1"):
        await set_access_policy(store, "default", PolicyDocument(), expected_version=1)
    assert [p.version for p in await policy_history(store, "default")] == [1, 2]
    assert (await policy_history(store, "default"))[0].policy.allow_public is False
    with pytest.raises(ValueError, match="alpha-2"):
        PolicyDocument(allowed_countries=["France"])
    with pytest.raises(ValueError):
        PolicyDocument(allowed_source_cidrs=["not-a-network"])


@on_both
async def test_concurrent_policy_writers_cannot_both_win(store: Store) -> None:
    results = await asyncio.gather(*(set_access_policy(store, "default", PolicyDocument(allow_public=bool(i % 2)),
                                                       expected_version=0) for i in range(4)),
                                   return_exceptions=True)
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1, results
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException)), results
    assert (await get_access_policy(store, "default")).version == 1


def test_store_url() -> None:
    assert store_url(None, Path("/var/lib/portway")).render_as_string() == \
        "sqlite+aiosqlite:////var/lib/portway/control.sqlite3"
    assert store_url("postgresql://u:p@db/portway", Path()).drivername == "postgresql+asyncpg"
    assert store_url("postgresql+asyncpg://u@db/x", Path()).drivername == "postgresql+asyncpg"
    with pytest.raises(ConfigError, match="not supported"):
        store_url("mysql://u@db/x", Path())
    with pytest.raises(ConfigError, match="not a database URL"):
        store_url("::nonsense", Path())



@on_both
async def test_a_cancelled_transaction_is_finished_not_abandoned(store: Store,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """A task cancelled anywhere in a transaction (its body, the commit, giving the connection back) still
    ends it: nothing is half-written, no connection is dropped unclosed (SQLAlchemy's pool would log an
    ERROR), and the store keeps working. Engine shutdown and a visitor hanging up both cancel such tasks."""

    async def write(name: str) -> None:
        async with store.transaction() as session:
            for ref in (name, name + "-pair"):
                await session.execute(text("INSERT INTO revocations (kind, ref, revoked_at) "
                                           "VALUES ('token', :ref, :at)"), {"ref": ref, "at": datetime.now(UTC)})

    loop = asyncio.get_running_loop()
    started = loop.time()
    await write("timing")
    duration = loop.time() - started
    attempts = 60
    for i in range(attempts):  # cancellations spread over the whole transaction, from before it to after it
        task = asyncio.create_task(write(f"w{i}"))
        await asyncio.sleep(duration * 1.5 * i / attempts)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    async with store.transaction() as session:
        ids = set((await session.execute(text("SELECT ref FROM revocations"))).scalars())
    for i in range(attempts):  # all or nothing
        assert (f"w{i}" in ids) == (f"w{i}-pair" in ids), i
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    if store.engine.dialect.name == "postgresql":
        assert store.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


@pytest.mark.store(only="postgresql")
async def test_a_statement_outliving_the_wait_is_left_to_finish_then_its_session_closed(
        store: Store, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cancelled task waits `FINISH_TIMEOUT_S` for its statement, then goes; the statement keeps its
    connection until it ends, and only then is the session rolled back and closed (never by two tasks)."""
    monkeypatch.setattr(finishing, "FINISH_TIMEOUT_S", 0.2)

    async def slow() -> None:
        async with store.transaction() as session:
            await session.execute(text("SELECT pg_sleep(1)"))

    loop = asyncio.get_running_loop()
    task = asyncio.create_task(slow())
    await asyncio.sleep(0.2)
    cancelled_at = loop.time()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert loop.time() - cancelled_at < 0.8  # it did not wait for the whole statement
    assert store.engine.pool.checkedout() == 1  # type: ignore[attr-defined]  # the statement still holds it
    deadline = loop.time() + 10
    while store.engine.pool.checkedout() and loop.time() < deadline:  # type: ignore[attr-defined]
        await asyncio.sleep(0.05)
    assert store.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    async with store.transaction() as session:
        assert (await session.execute(text("SELECT 1"))).scalar() == 1
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.store(only="postgresql")
async def test_a_block_going_on_after_a_timeout_cannot_use_its_abandoned_session(
        store: Store, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(finishing, "FINISH_TIMEOUT_S", 0.2)

    async def going_on() -> None:
        async with store.transaction() as session:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    await session.execute(text("SELECT pg_sleep(1)"))
            await session.execute(text("SELECT 1"))  # the pg_sleep still runs on this session's connection

    with pytest.raises(finishing.SessionAbandoned):
        await going_on()
    await finishing.settle()  # what Store.close does first
    assert store.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
