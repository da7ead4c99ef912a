"""How the CLI logs: rstream's `-l/--log-level` and `-f/--log-format` on stderr, with secrets masked.

Formats: `text` (one line: time, level, logger, message, then extra fields as key=value), `text-pretty`
(rich when installed, else coloured text), `json` (one object per line: time, level, logger, message and
the extra fields), `json-pretty` (the same object indented), `auto` (text-pretty on a terminal, else text).

Every record passes `RedactSecrets` first: a token that reaches a message anyway (a visitor's
`?rstream.token=` in an access line, an error quoting a header) is masked before it is written.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from typing import IO, Any

LEVELS: dict[str, int | None] = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
                                 "warning": logging.WARNING, "error": logging.ERROR, "none": None}
FORMATS = ("auto", "json", "json-pretty", "text", "text-pretty")

_RECORD_KEYS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_SECRETS = [
    (re.compile(r"eyJ[\w-]{5,}\.eyJ[\w-]{5,}\.[\w-]+"), "[redacted-jwt]"),  # any JWT, wherever it appears
    (re.compile(r"(?i)(rstream\.token=|bearer\s+|token=)[^\s&\"',;]{8,}"), r"\1[redacted]"),  # not prose
]


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def extras(record: logging.LogRecord) -> dict[str, Any]:
    """The `extra=` fields of a record (everything that is not a standard LogRecord attribute)."""
    return {key: value for key, value in record.__dict__.items() if key not in _RECORD_KEYS and not key.startswith("_")}


class RedactSecrets(logging.Filter):
    """Masks tokens in the message and in string extra fields; the record is rewritten in place."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        for key, value in extras(record).items():
            if isinstance(value, str):
                setattr(record, key, redact(value))
        return True


class TextFormatter(logging.Formatter):
    def __init__(self, colour: bool = False) -> None:
        super().__init__("%(asctime)s %(levelname)-5s %(name)s: %(message)s")
        self.colour = colour

    _COLOURS = {"DEBUG": "2", "INFO": "36", "WARNING": "33", "ERROR": "31", "CRITICAL": "1;31"}

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{key}={value}" for key, value in extras(record).items())
        line = f"{line} {fields}" if fields else line
        if self.colour:
            return f"\x1b[{self._COLOURS.get(record.levelname, '0')}m{line}\x1b[0m"
        return line


class JsonFormatter(logging.Formatter):
    def __init__(self, indent: int | None = None) -> None:
        super().__init__()
        self.indent = indent

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        event |= {key: value for key, value in extras(record).items() if key not in event}
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return json.dumps(event, default=str, indent=self.indent)


def _pretty_handler(stream: IO[str]) -> logging.Handler:
    try:
        from rich.console import Console  # noqa: PLC0415 - optional: pretty output only
        from rich.logging import RichHandler  # noqa: PLC0415
    except ImportError:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(TextFormatter(colour=True))
        return handler
    return RichHandler(console=Console(file=stream), show_path=False, rich_tracebacks=False, markup=False)


def make_handler(fmt: str, stream: IO[str]) -> logging.Handler:
    if fmt == "auto":
        fmt = "text-pretty" if stream.isatty() else "text"
    if fmt == "text-pretty":
        handler = _pretty_handler(stream)
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter(indent=2 if fmt == "json-pretty" else None) if fmt.startswith("json")
                             else TextFormatter())
    handler.addFilter(RedactSecrets())
    return handler


def setup_logging(level: str, fmt: str = "auto", stream: IO[str] | None = None) -> None:
    """Replace the root handlers: `level` from LEVELS (`none` silences everything), `fmt` from FORMATS."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    threshold = LEVELS[level]
    if threshold is None:
        root.addHandler(logging.NullHandler())
        root.setLevel(logging.CRITICAL + 1)
        return
    root.addHandler(make_handler(fmt, stream or sys.stderr))
    root.setLevel(threshold)


def set_level(level: str) -> None:
    """Change the threshold after setup (e.g. to the engine's `engine.log_level`)."""
    threshold = LEVELS[level]
    logging.getLogger().setLevel(logging.CRITICAL + 1 if threshold is None else threshold)
