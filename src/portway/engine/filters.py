"""Filters over tunnel and client records (§3.2, §4.1 of the rstream facts), compiled once, then matched
many times. Pure: the Engine API's `params.filters`, watches and token `resources` use the same code.

A filter is an object of field → condition, or `{"AND": [filter…]}` / `{"OR": [filter…]}`. A condition is
a plain value (equality), or for strings `{"exact": s}`, `{"oneof": [s…]}` or `{"regex": r}` (full
match). `labels` maps key → condition, where null means "any value, but the key is present". Regular
expressions are only accepted where the caller allows them (signed token claims, not query strings: a
crafted pattern can make matching slow).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Record = Mapping[str, Any]
Predicate = Callable[[Record], bool]

MAX_DEPTH = 8
MAX_REGEX_LENGTH = 256
MAX_ONEOF = 256


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
        try:
            pattern = re.compile(argument)
        except re.error as error:
            raise FilterError(f"filter {name!r}: invalid regular expression ({error.msg})") from None
        return lambda value: isinstance(value, str) and pattern.fullmatch(value) is not None
    raise FilterError(f"filter {name!r}: {kind!r} needs a string (exact, regex) or a list of strings (oneof)")


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
