"""The CLI's log formats and secret masking, on real handlers writing to a string buffer."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from portway.cli.logformat import LEVELS, redact, setup_logging
from portway.engine.auth import mint_token

TOKEN = mint_token("s" * 32, subject="unit", ttl_s=60)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def logged(level: str, fmt: str) -> str:
    out = io.StringIO()
    setup_logging(level, fmt, out)
    log = logging.getLogger("portway.test")
    log.debug("debug line")
    log.info("tunnel %s open", "t1", extra={"tunnel_id": "t1", "peer": f"Bearer {TOKEN}"})
    log.warning("visitor asked /x?rstream.token=%s&y=1", TOKEN)
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    return out.getvalue()


@pytest.mark.usefixtures("restore_logging")
def test_json_is_one_object_per_line_with_extras() -> None:
    lines = logged("debug", "json").splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["level"] for e in events] == ["debug", "info", "warning", "error"]
    info = events[1]
    assert info["logger"] == "portway.test" and info["message"] == "tunnel t1 open" and info["tunnel_id"] == "t1"
    assert info["time"].endswith("+00:00")
    assert "ValueError: boom" in events[3]["exception"]


@pytest.mark.usefixtures("restore_logging")
def test_json_pretty_is_indented_json() -> None:
    text = logged("info", "json-pretty")
    first = json.JSONDecoder().raw_decode(text)[0]
    assert first["message"] == "tunnel t1 open" and "\n  " in text


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("fmt", ["text", "auto", "json", "json-pretty", "text-pretty"])
def test_no_format_writes_a_token(fmt: str) -> None:
    text = logged("debug", fmt)
    assert TOKEN not in text and TOKEN.split(".")[2] not in text
    assert "redacted" in text


@pytest.mark.usefixtures("restore_logging")
def test_text_levels_and_none() -> None:
    text = logged("warn", "text")  # auto on a non-terminal is text too
    assert "debug line" not in text and "tunnel t1 open" not in text and "WARNING portway.test: visitor" in text
    assert logged("info", "auto").splitlines()[0].endswith("tunnel t1 open tunnel_id=t1 peer=Bearer [redacted]")
    assert logged("none", "json") == ""
    assert set(LEVELS) == {"debug", "info", "warn", "warning", "error", "none"}


def test_redact_keeps_ordinary_text() -> None:
    assert redact("tunnel abc open on port 443") == "tunnel abc open on port 443"
    assert redact(f"token={TOKEN}&x=1") == "token=[redacted]&x=1"
