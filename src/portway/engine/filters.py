"""Filters over tunnel and client records (§3.2, §4.1 of the rstream facts), compiled once, then matched
many times. Pure: the Engine API's `params.filters`, watches and token `resources` use the same code.

A filter is an object of field → condition, or `{"AND": [filter…]}` / `{"OR": [filter…]}`. A condition is
a plain value (equality), or for strings `{"exact": s}`, `{"oneof": [s…]}` or `{"regex": r}` (full
match). `labels` maps key → condition, where null means "any value, but the key is present".

Regular expressions are only accepted where the caller allows them (signed token claims, not query strings).
They are RE2 syntax, as in rstream (Go's regexp), and run on RE2: an app-credential holder signs its own
claims, so the pattern is attacker-controlled, and a backtracking engine would let `(a|aa)*c` stall the event
loop. RE2 matches in time linear in the text; patterns it cannot compile (backreferences, lookaround) are
refused like any invalid pattern, and so are patterns whose compiled program is too large, which bounds the
per-character cost too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import re2

Record = Mapping[str, Any]
Predicate = Callable[[Record], bool]

MAX_DEPTH = 8
MAX_REGEX_LENGTH = 256
MAX_ONEOF = 256
MAX_REGEX_PROGRAM = 2000
"""RE2 instructions. Admits `\\pL` (~1,200); bounds the worst case, where RE2's DFA gives up and it falls back
to its NFA (`.*a.{240}`), to ~0.1 s on an 8 KiB request path."""

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the refusal is reported by FilterError, not printed to stderr by the C++ library
_RE2_OPTIONS.never_capture = True  # only yes/no is needed; without groups RE2 answers from its DFA, much faster


class FilterError(ValueError):
    """A filter that cannot be compiled; the message names the offending field."""


def compile_filter(spec: object, fields: frozenset[str], *, allow_regex: bool = False) -> Predicate:
    """A predicate over records for `spec`; `fields` are the names a filter may use (others are refused)."""
    return _compile(spec, fields, allow_regex, 0)


def _compile(spec: object, fields: frozenset[str], allow_regex: bool, depth: int) -> Predicate:
    if depth > MAX_DEPTH:
        raise FilterError("filters are nested too deeply")
    if not isinstance(spec, Mapping):
        raise FilterError("a filter must be a JSON object")
    parts: list[Predicate] = []
    for key, condition in spec.items():
        if key in ("AND", "OR"):
            if not isinstance(condition, list):
                raise FilterError(f"{key} takes a list of filters")
            subs = [_compile(item, fields, allow_regex, depth + 1) for item in condition]
            parts.append(_all(subs) if key == "AND" else _any(subs))
        elif key not in fields:
            raise FilterError(f"unknown filter field {key!r}")
        elif key == "labels":
            parts.append(_labels(condition, allow_regex))
        else:
            parts.append(_field(key, _condition(key, condition, allow_regex)))
    return _all(parts)


def _all(parts: list[Predicate]) -> Predicate:
    return lambda record: all(part(record) for part in parts)


def _any(parts: list[Predicate]) -> Predicate:
    return lambda record: any(part(record) for part in parts)


def _field(name: str, test: Callable[[object], bool]) -> Predicate:
    return lambda record: test(record.get(name))


def _condition(name: str, condition: object, allow_regex: bool) -> Callable[[object], bool]:
    if condition is None or isinstance(condition, str | bool | int | float):
        return lambda value: value == condition
    if not isinstance(condition, Mapping) or len(condition) != 1:
        raise FilterError(f"filter {name!r}: use a value, or one of {{exact}}, {{oneof}}, {{regex}}")
    (kind, argument), = condition.items()
    if kind == "exact" and isinstance(argument, str):
        return lambda value: value == argument
    if kind == "oneof" and isinstance(argument, list) and len(argument) <= MAX_ONEOF \
            and all(isinstance(item, str) for item in argument):
        choices = frozenset(argument)
        return lambda value: isinstance(value, str) and value in choices
    if kind == "regex" and isinstance(argument, str):
        if not allow_regex:
            raise FilterError(f"filter {name!r}: regular expressions are not accepted here")
        if len(argument) > MAX_REGEX_LENGTH:
            raise FilterError(f"filter {name!r}: the regular expression is too long")
        pattern = _compile_regex(name, argument)
        return lambda value: isinstance(value, str) and pattern.fullmatch(value) is not None
    raise FilterError(f"filter {name!r}: {kind!r} needs a string (exact, regex) or a list of strings (oneof)")


def _compile_regex(name: str, argument: str) -> Any:
    """An RE2 pattern (untyped: google-re2 ships no stubs), or FilterError with RE2's reason."""
    try:
        pattern = re2.compile(argument, _RE2_OPTIONS)
    except re2.error as error:
        detail = error.args[0] if error.args else "?"
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise FilterError(f"filter {name!r}: invalid regular expression (RE2 syntax: {detail})") from None
    if pattern.programsize > MAX_REGEX_PROGRAM:
        raise FilterError(f"filter {name!r}: the regular expression is too complex")
    return pattern


def _labels(condition: object, allow_regex: bool) -> Predicate:
    if not isinstance(condition, Mapping):
        raise FilterError("filter 'labels': use an object of label → value (null = any value)")
    tests: list[tuple[str, Callable[[object], bool] | None]] = [
        (str(key), None if value is None else _condition(f"labels.{key}", value, allow_regex))
        for key, value in condition.items()]

    def match(record: Record) -> bool:
        labels = record.get("labels") or {}
        return all(key in labels and (test is None or test(labels[key])) for key, test in tests)
    return match
