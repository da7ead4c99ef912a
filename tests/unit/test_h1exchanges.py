"""Exchanges of one HTTP/1.1 connection (engine/edges/h1exchanges.py): what may go upstream when, what a
response head means, and the access-log line."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from portway.engine.edges.h1exchanges import (
    BODY,
    CONNECT,
    ENDED,
    HEAD,
    PLAIN,
    SWITCH,
    UNEXPECTED,
    UPGRADE,
    Exchange,
    Exchanges,
    access_line,
    kind_of,
)


def ex(kind: int = PLAIN, name: bytes = b"/") -> Exchange:
    return Exchange(b"GET", name, 0.0, kind)


def test_kinds() -> None:
    assert kind_of(b"GET", False) == PLAIN
    assert kind_of(b"HEAD", False) == HEAD
    assert kind_of(b"CONNECT", True) == CONNECT
    assert kind_of(b"GET", True) == UPGRADE


def test_plain_requests_pipeline_freely() -> None:
    queue = Exchanges()
    assert not queue.open(ex())
    assert not queue.open(ex())
    assert len(queue) == 2


def test_a_head_waits_for_earlier_responses_and_holds_later_requests() -> None:
    queue = Exchanges()
    first, head, after = ex(), ex(HEAD), ex()
    assert not queue.open(first)
    assert queue.open(head)  # held: a response is owed before it
    head.held = [b"HEAD / ..."] if head.held is not None else None
    assert queue.open(after)  # held: behind a held request
    after.held = [b"GET /after ..."]
    assert queue.answer(200) == BODY
    assert queue.popleft() is first
    assert queue.releasable() == (b"HEAD / ...", True)  # the HEAD goes alone; the GET still waits
    assert queue.answer(200) == ENDED
    assert queue.popleft() is head
    assert queue.releasable() == (b"GET /after ...", False)


def test_a_head_first_goes_at_once_and_holds_what_follows() -> None:
    queue = Exchanges()
    assert not queue.open(ex(HEAD))
    assert queue.open(ex())


@given(st.lists(st.sampled_from([PLAIN, HEAD, CONNECT, UPGRADE]), min_size=1, max_size=12))
def test_a_response_that_must_be_alone_is_alone(kinds: list[int]) -> None:
    """Whatever is pipelined, a HEAD/CONNECT/Upgrade is on the stream only when nothing else is owed
    before it, and nothing after it is sent until its response head arrived."""
    queue = Exchanges()
    sent: list[Exchange] = []  # on the stream, response not ended
    exchanges = [ex(kind) for kind in kinds]
    for item in exchanges:
        if not queue.open(item):
            sent.append(item)
    while len(queue):
        assert sent and sent[0] is queue[0]
        if any(item.kind for item in sent):
            assert len(sent) == 1
        queue.answer(200 if sent[0].kind != UPGRADE else 101)
        sent.pop(0)
        queue.popleft()
        _, waiting = queue.releasable()
        sent.extend(item for item in queue if item not in sent and item.held is None)
        assert waiting == any(item.held is not None for item in queue)
    assert not sent


def test_answers() -> None:
    queue = Exchanges()
    assert queue.answer(200) == UNEXPECTED  # nobody asked
    for kind, status, verdict, close_after in [
            (UPGRADE, 101, SWITCH, False), (PLAIN, 101, UNEXPECTED, False), (CONNECT, 200, SWITCH, False),
            (CONNECT, 403, BODY, True), (UPGRADE, 404, BODY, True), (UPGRADE, 200, BODY, True),
            (HEAD, 200, ENDED, False), (HEAD, 404, ENDED, False), (PLAIN, 204, BODY, False)]:
        item = ex(kind)
        queue.open(item)
        assert queue.answer(status) == verdict, (kind, status)
        assert item.status == status
        assert item.close_after == close_after
        queue.popleft()


def test_access_line() -> None:
    line = access_line("t1", "127.0.0.1", b"GET", b"/a?b=1", status=200, request_bytes=80, response_bytes=120,
                       duration_s=0.01234)
    assert line == ("tunnel=t1 src=127.0.0.1 method=GET path=/a?b=1 status=200 req_bytes=80 resp_bytes=120 "
                    "duration_ms=12.3")
    assert access_line("-", None, b"", b"", status=400, request_bytes=3, response_bytes=10, duration_s=0,
                       error="bad").endswith(' path=- status=400 req_bytes=3 resp_bytes=10 duration_ms=0.0 error="bad"')


# What llhttp accepts in a request target: visible ASCII.
targets = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=60)


@given(targets, st.sampled_from([b"GET", b"POST", b"M-SEARCH"]), st.integers(0, 599))
def test_access_line_splits_into_its_fields(target: str, method: bytes, status: int) -> None:
    line = access_line("t", "::1", method, target.encode(), status=status, request_bytes=1, response_bytes=2,
                       duration_s=1.0)
    fields = dict(part.split("=", 1) for part in line.split(" "))
    assert fields["path"] == target
    assert fields["method"] == method.decode()
    assert fields["status"] == str(status)
    assert list(fields) == ["tunnel", "src", "method", "path", "status", "req_bytes", "resp_bytes", "duration_ms"]
