"""Fixtures of the integration tests: a control-plane store of the test's backend, for tests marked `store`
(tests/conftest.py runs them on SQLite and on PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL, make_url

from portway.engine.store import Store, store_url


@pytest.fixture
def database(store_database: str | None, tmp_path: Path) -> URL:
    """The URL of the test's database: PostgreSQL on the `[postgresql]` run (migrated, or empty with
    `@pytest.mark.store(empty=True)`), else a SQLite file in the test's directory."""
    return make_url(store_database) if store_database else store_url(None, tmp_path)


@pytest.fixture
async def store(database: URL) -> AsyncIterator[Store]:
    """The store opened on `database` (migrated to head), closed after the test."""
    opened = await Store.open(database)
    try:
        yield opened
    finally:
        await opened.close()
