"""The sans-IO first-line sniffer behind the forward panel's recent requests (portway.agent.httphead)."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from portway.agent.httphead import (
    MAX_LINE_BYTES,
    FirstLine,
    RequestLine,
    StatusLine,
    parse_request_line,
    parse_status_line,
)

methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "PROPFIND"])
targets = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=200).map(
    lambda t: "/" + t)
versions = st.sampled_from(["HTTP/1.0", "HTTP/1.1"])
statuses = st.integers(100, 599)
reasons = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


def feed_in_chunks(data: bytes, cuts: list[int], limit: int = MAX_LINE_BYTES) -> tuple[FirstLine, int]:
    """Feed `data` split at `cuts`; returns the sniffer and how many chunks it asked for."""
    sniffer = FirstLine(limit)
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    fed = 0
    for start, end in itertools.pairwise(points):
        fed += 1
        if sniffer.feed(data[start:end]):
            break
    return sniffer, fed


@given(methods, targets, versions, st.binary(max_size=300), st.lists(st.integers(0, 10_000), max_size=6))
def test_request_line_found_across_any_chunking(method: str, target: str, version: str, rest: bytes,
                                                cuts: list[int]) -> None:
    data = f"{method} {target} {version}\r\n".encode() + rest
    sniffer, _ = feed_in_chunks(data, cuts)
    assert sniffer.done
    assert sniffer.line is not None
    assert parse_request_line(sniffer.line) == RequestLine(method, target, version)


@given(versions, statuses, reasons, st.binary(max_size=300), st.lists(st.integers(0, 10_000), max_size=6))
def test_status_line_found_across_any_chunking(version: str, status: int, reason: str, rest: bytes,
                                               cuts: list[int]) -> None:
    data = f"{version} {status} {reason}\r\n".encode() + rest
    sniffer, _ = feed_in_chunks(data, cuts)
    assert sniffer.line is not None
    assert parse_status_line(sniffer.line) == StatusLine(version, status, reason)


@given(st.binary(max_size=3 * 1024), st.lists(st.integers(0, 10_000), max_size=8), st.integers(16, 2048))
def test_arbitrary_bytes_never_raise_and_stay_bounded(data: bytes, cuts: list[int], limit: int) -> None:
    sniffer, _ = feed_in_chunks(data, cuts, limit)
    if sniffer.line is not None:
        assert len(sniffer.line) < limit
        parse_request_line(sniffer.line)
        parse_status_line(sniffer.line)
    assert len(sniffer._head) <= limit  # the bound is the point of the class


def test_gives_up_at_the_limit_without_a_line() -> None:
    sniffer = FirstLine(limit=64)
    assert not sniffer.feed(b"GET /" + b"a" * 40)
    assert sniffer.feed(b"a" * 40)
    assert sniffer.line is None


@given(st.binary(min_size=1, max_size=64).filter(lambda b: b[0] < 0x20 and b[0] not in (0x0D, 0x0A)))
def test_binary_starts_are_dropped_at_once(data: bytes) -> None:
    """A TLS record (0x16 …) or other binary protocol: the sniffer stops after the first chunk."""
    sniffer = FirstLine()
    assert sniffer.feed(data)
    assert sniffer.line is None


def test_http2_preface_and_malformed_lines_are_not_requests() -> None:
    assert parse_request_line(b"PRI * HTTP/2.0") is None
    assert parse_request_line(b"GET / HTTP/2") is None
    assert parse_request_line(b"GET  / HTTP/1.1") is None
    assert parse_request_line(b"GET / HTTP/1.1 extra") is None
    assert parse_status_line(b"HTTP/1.1 20 OK") is None
    assert parse_status_line(b"HTTP/1.1 200") == StatusLine("HTTP/1.1", 200, "")
    assert parse_status_line(b"SSH-2.0-OpenSSH") is None


def test_done_sniffer_ignores_more_input() -> None:
    sniffer = FirstLine()
    assert sniffer.feed(b"GET / HTTP/1.1\r\n")
    assert sniffer.feed(b"POST /other HTTP/1.1\r\n")
    assert sniffer.line == b"GET / HTTP/1.1"
