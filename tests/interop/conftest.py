"""Interop tests: nothing a test opened may outlive its event loop (see `settle`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.interop.settle import wait_transports_closed


@pytest.fixture(autouse=True)
async def _settle_connections() -> AsyncIterator[None]:
    yield
    await wait_transports_closed()
