"""engine/filters.py: compiled filters over records (Engine API params, watches, token resources)."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portway.engine.filters import FilterError, compile_filter

FIELDS = frozenset({"name", "protocol", "publish", "port", "labels"})
text = st.text(max_size=8)


@given(wanted=text, actual=text)
def test_a_plain_value_is_equality(wanted: str, actual: str) -> None:
    match = compile_filter({"name": wanted}, FIELDS)
    assert match({"name": actual}) is (wanted == actual)


@given(choices=st.lists(text, max_size=5), actual=text)
def test_oneof_is_membership(choices: list[str], actual: str) -> None:
    assert compile_filter({"name": {"oneof": choices}}, FIELDS)({"name": actual}) is (actual in choices)


@given(labels=st.dictionaries(text, text, max_size=4), key=text, value=st.none() | text)
def test_labels_null_means_any_value_of_a_present_key(labels: dict[str, str], key: str, value: str | None) -> None:
    match = compile_filter({"labels": {key: value}}, FIELDS)
    expected = key in labels and (value is None or labels[key] == value)
    assert match({"labels": labels}) is expected


def test_and_or_and_types() -> None:
    match = compile_filter({"OR": [{"protocol": "http", "publish": True}, {"AND": [{"port": 22}]}]}, FIELDS)
    assert match({"protocol": "http", "publish": True})
    assert not match({"protocol": "http", "publish": False})
    assert match({"port": 22})
    assert not match({"port": "22"})
    assert compile_filter({}, FIELDS)({"anything": 1})


def test_regex_only_where_allowed() -> None:
    with pytest.raises(FilterError, match="not accepted here"):
        compile_filter({"name": {"regex": "a.*"}}, FIELDS)
    match = compile_filter({"name": {"regex": "web-[0-9]+"}}, FIELDS, allow_regex=True)
    assert match({"name": "web-12"})
    assert not match({"name": "web-12x"})  # full match, not search
    assert not match({"name": None})


@pytest.mark.parametrize(("spec", "fragment"), [
    ([], "JSON object"),
    ({"colour": "red"}, "unknown filter field 'colour'"),
    ({"name": {"exact": 1}}, "needs a string"),
    ({"name": {"exact": "a", "oneof": []}}, "use a value, or one of"),
    ({"name": ["a"]}, "use a value, or one of"),
    ({"labels": "x"}, "labels"),
    ({"AND": {"name": "a"}}, "AND takes a list"),
    ({"name": {"regex": "("}}, "invalid regular expression"),
    ({"name": {"regex": "a" * 300}}, "too long"),
    ({"name": {"regex": r"(a)\1"}}, "invalid regular expression (RE2 syntax: invalid escape sequence"),
    ({"name": {"regex": "(?=a)a"}}, "invalid regular expression (RE2 syntax"),
    ({"name": {"regex": "(?<!a)b"}}, "invalid regular expression (RE2 syntax"),
    ({"name": {"regex": ".*a.{300}"}}, "too complex"),
    ({"name": {"oneof": ["a"] * 300}}, "needs a string"),
])
def test_bad_filters_name_the_problem(spec: object, fragment: str) -> None:
    with pytest.raises(FilterError, match=fragment.replace("(", r"\(").replace("[", r"\[")):
        compile_filter(spec, FIELDS, allow_regex=True)


def test_nesting_is_bounded() -> None:
    spec: dict[str, object] = {"name": "a"}
    for _ in range(20):
        spec = {"AND": [spec]}
    with pytest.raises(FilterError, match="nested too deeply"):
        compile_filter(spec, FIELDS)


def test_a_backtracking_bomb_runs_in_linear_time() -> None:
    """`(a|aa)*c` is exponential under `re` (0.5 s at 32 characters, doubling per few more); RE2 is linear.

    A correctness check, not a benchmark: the bound is a hundred times what RE2 needs even on a busy machine.
    """
    match = compile_filter({"name": {"regex": "(a|aa)*c"}, "labels": {"p": {"regex": "(.*a){20}x"}}}, FIELDS,
                           allow_regex=True)
    started = time.monotonic()
    assert not match({"name": "a" * 64, "labels": {"p": "a" * 8192}})
    assert not match({"name": "a" * 8192 + "b", "labels": {"p": "a" * 8192}})
    assert time.monotonic() - started < 1


_PIECES = st.sampled_from(["a", "b", "-", ".", "[ab]", "[^a]", "a*", "b+", "a?", "(a|b)", "(ab|-)*", "a{1,2}", "\\w"])


@given(pieces=st.lists(_PIECES, min_size=1, max_size=5), value=st.text("ab-_\n", max_size=8))
def test_regex_matching_agrees_with_re_on_common_syntax(pieces: list[str], value: str) -> None:
    """RE2 replaced `re`: on the syntax both share, a filter still answers `re.fullmatch` (ASCII text)."""
    pattern = "".join(pieces)
    match = compile_filter({"name": {"regex": pattern}}, FIELDS, allow_regex=True)
    assert match({"name": value}) is (re.fullmatch(pattern, value) is not None)
