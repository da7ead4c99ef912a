"""Real databases for the store tests: a SQLite file always, and a fresh PostgreSQL database per test when
PORTWAY_TEST_POSTGRES_URL names a server (CI starts one: scripts/postgres.sh)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from portway.engine.store import Store, store_url

POSTGRES_URL = os.environ.get("PORTWAY_TEST_POSTGRES_URL")
NO_POSTGRES = "PORTWAY_TEST_POSTGRES_URL is not set (CI sets it; locally: eval \"$(scripts/postgres.sh)\")"


async def postgres_database() -> tuple[URL, URL]:
    """(server URL, URL of a new empty database on it)."""
    assert POSTGRES_URL is not None
    server = store_url(POSTGRES_URL, Path())
    name = f"portway_test_{secrets.token_hex(6)}"
    admin = create_async_engine(server, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    return server, server.set(database=name)


async def drop_database(server: URL, database: URL) -> None:
    admin = create_async_engine(server, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{database.database}" WITH (FORCE)'))
    await admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[URL]:
    """The URL of an empty database of each kind."""
    if request.param == "sqlite":
        yield store_url(None, tmp_path)
        return
    if POSTGRES_URL is None:
        pytest.skip(NO_POSTGRES)
    server, database = await postgres_database()
    try:
        yield database
    finally:
        await drop_database(server, database)


@pytest.fixture
async def store(database: URL) -> AsyncIterator[Store]:
    opened = await Store.open(database)
    try:
        yield opened
    finally:
        await opened.close()
