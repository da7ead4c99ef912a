"""PostgreSQL databases for the tests marked `store` (tests/conftest.py runs them once per backend).

PORTWAY_TEST_POSTGRES_URL names a server (CI starts one: scripts/postgres.sh). Each test's postgresql run gets a
fresh database: a copy of a template migrated once per session (`CREATE DATABASE ... TEMPLATE` is a file copy; a
migration per test would be an Alembic run per test), or an empty one for the tests of the migrations themselves.
While it exists, `active_url()` names it and `engine_yaml()` points every engine of the test at it (`store.url`).
Helpers are synchronous (they run their own event loop in a worker thread), so module-scoped fixtures and
synchronous tests can use them whatever event loop pytest-asyncio has running."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from portway.engine.store import Store, store_url

POSTGRES_URL = os.environ.get("PORTWAY_TEST_POSTGRES_URL") or None
REQUIRE_POSTGRES = os.environ.get("PORTWAY_TEST_REQUIRE_POSTGRES") == "1"
NO_POSTGRES = "PORTWAY_TEST_POSTGRES_URL is not set (CI sets it; locally: eval \"$(scripts/postgres.sh)\")"
REQUIRED = ("PORTWAY_TEST_REQUIRE_POSTGRES=1 but PORTWAY_TEST_POSTGRES_URL is not set: the PostgreSQL runs of the "
            "store tests may not be skipped")

T = TypeVar("T")
_active: URL | None = None  # the database the engines of the running test use
_template: str | None = None  # the migrated template database, made by the first test that needs it


def active_url() -> str | None:
    """`store.url` for the engines the running test starts (None: SQLite in their state directory)."""
    return None if _active is None else _active.render_as_string(hide_password=False)


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _server() -> URL:
    assert POSTGRES_URL is not None
    return store_url(POSTGRES_URL, Path())


async def _admin(*statements: str) -> None:
    """Run statements outside a transaction (CREATE/DROP DATABASE) on the server's maintenance database."""
    admin = create_async_engine(_server(), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await admin.dispose()


async def _make_template() -> str:
    name = f"portway_template_{secrets.token_hex(6)}"
    await _admin(f'CREATE DATABASE "{name}"')
    store = await Store.open(_server().set(database=name))  # migrated to head, default workspace and project
    await store.close()  # no connection may remain: a template in use cannot be copied
    return name


def create_database(*, empty: bool = False) -> URL:
    """A new database: migrated and seeded like a fresh engine's (a copy of the session's template), or empty."""
    global _template
    if not empty and _template is None:
        _template = _run(_make_template())
    name = f"portway_test_{secrets.token_hex(6)}"
    _run(_admin(f'CREATE DATABASE "{name}"' + ("" if empty else f' TEMPLATE "{_template}"')))
    return _server().set(database=name)


def drop_database(database: URL) -> None:
    """Drop it, closing what still holds it open (an engine killed mid-test, a pool not yet disposed)."""
    _run(_admin(f'DROP DATABASE IF EXISTS "{database.database}" WITH (FORCE)'))


@contextlib.contextmanager
def database(*, empty: bool = False) -> Iterator[URL]:
    """A fresh database that engines started inside the block use (`active_url()`); dropped afterwards."""
    global _active
    url = create_database(empty=empty)
    previous, _active = _active, url
    try:
        yield url
    finally:
        _active = previous
        drop_database(url)


def drop_template() -> None:
    """At the end of the session."""
    global _template
    if _template is not None:
        name, _template = _template, None
        drop_database(_server().set(database=name))
