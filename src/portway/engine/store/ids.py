"""Identifiers and clocks shared by the repository modules."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

from portway.engine.store.errors import Invalid
from portway.engine.store.records import NAME_PATTERN

_NAME = re.compile(NAME_PATTERN)


def new_id(prefix: str) -> str:
    """`prefix_` + 24 random hex digits: unguessable, and the prefix tells what an id names in logs."""
    return f"{prefix}_{secrets.token_hex(12)}"


def now() -> datetime:
    return datetime.now(UTC)


def check_name(name: str, what: str) -> str:
    """Names appear in paths and CLI arguments: lower-case letters, digits, `_.-`, at most 63."""
    if not _NAME.match(name):
        raise Invalid(f"{what} name {name!r} must match {NAME_PATTERN}")
    return name
