"""`Store`: the control plane's database handle. SQLite in the engine's state directory unless
`store.url` names PostgreSQL; migrated to the shipped head and seeded with the `default` workspace and
project when opened, so a fresh engine has somewhere to put credentials."""

from __future__ import annotations

import os
import sqlite3
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from sqlalchemy import Connection, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from portway.engine.store import migrate
from portway.engine.store.finishing import FinishingSession, settle, transaction
from portway.engine.store.workspaces import ensure_defaults
from portway.errors import ConfigError

SQLITE_FILE = "control.sqlite3"
_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}


def store_url(url: str | None, state_dir: Path) -> URL:
    """The async SQLAlchemy URL for `store.url` (None: SQLite in `state_dir`); plain `postgresql://` and
    `sqlite://` URLs get their async driver."""
    if url is None:
        return URL.create("sqlite+aiosqlite", database=str(state_dir / SQLITE_FILE))
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError("store.url is not a database URL (postgresql://user@host/db)") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(f"store.url: {backend} is not supported (use postgresql:// or sqlite://)")
    if "+" not in parsed.drivername:
        parsed = parsed.set(drivername=_DRIVERS[parsed.drivername])
    return parsed


def _sqlite_connect(dbapi_connection: object, _record: object) -> None:
    """Foreign keys on (SQLite leaves them off); a busy timeout so concurrent writers wait, not fail; full syncs
    (a commit is on disk when it returns); and transactions begun by us, not the driver (below). WAL is a
    property of the file, set once when the store opens (`Store.open`), not on each of these connections."""
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()
    dbapi_connection.isolation_level = None  # type: ignore[attr-defined]


def _sqlite_begin(connection: Connection) -> None:
    """Every transaction takes the write lock at once (BEGIN IMMEDIATE). A deferred one that reads, then
    writes after another connection committed fails with SQLITE_BUSY instead of waiting; the webhook
    leases (read due deliveries, then take them) would hit that whenever the recorder wrote meanwhile."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _private_file(path: Path) -> None:
    """Create the SQLite file readable by the engine's user only: it holds webhook signing secrets and the
    hashes of credentials (SQLite gives its -wal and -shm files the same mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    os.chmod(path, 0o600)


class Store:
    """An open store. Repository functions (workspaces.py, credentials.py, policies.py) take it first."""

    def __init__(self, engine: AsyncEngine, anchor: sqlite3.Connection | None = None) -> None:
        self.engine = engine
        self._anchor = anchor
        self._sessions = async_sessionmaker(engine, expire_on_commit=False, class_=FinishingSession)

    @classmethod
    async def open(cls, url: URL | str) -> Store:
        """Connect, migrate to head and seed the default workspace and project."""
        # SQLite: one connection per transaction, closed after it (NullPool): a pooled aiosqlite connection can
        # outlive the loop of the engine or test that opened it, or be dropped unclosed when a task is cancelled
        # mid-transaction. But closing the *last* connection of a WAL database checkpoints it (~20 ms a
        # transaction, measured), so the store holds one plain sqlite3 connection open while it is open.
        parsed = make_url(url)
        anchor: sqlite3.Connection | None = None
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                _private_file(Path(parsed.database))
                anchor = sqlite3.connect(parsed.database, check_same_thread=False)
                anchor.execute("PRAGMA journal_mode=WAL")  # persistent: every later connection is in WAL too
            engine = create_async_engine(url, poolclass=NullPool)
        else:
            engine = create_async_engine(url, pool_pre_ping=True)
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_connect)
            event.listen(engine.sync_engine, "begin", _sqlite_begin)
        store = cls(engine, anchor)
        try:
            await migrate.upgrade(engine)
            await ensure_defaults(store)
        except BaseException:
            await store.close()
            raise
        return store

    def transaction(self) -> AbstractAsyncContextManager[FinishingSession]:
        """A session whose changes commit when the block ends (rolled back on an exception). A cancelled task
        still ends its transaction before the cancellation goes on (finishing.py)."""
        return transaction(self._sessions)

    async def close(self) -> None:
        await settle()  # a statement a cancelled task left running ends, and its session closes, first
        await self.engine.dispose()
        if self._anchor is not None:
            self._anchor.close()  # the last connection: SQLite checkpoints the WAL into the file now
            self._anchor = None
