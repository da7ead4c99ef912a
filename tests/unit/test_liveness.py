"""Control-channel liveness (protocol facts §2.9): negotiation, the engine monitor, the agent's ack rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portway.wire import liveness
from portway.wire.codes import MAX_HEARTBEAT_TIMEOUT_MS, ErrorCode
from portway.wire.errors import ProtocolViolation
from portway.wire.liveness import AckTracker, LivenessMonitor, negotiate

FAST = settings(max_examples=50, deadline=None, database=None, derandomize=True)

# ---- negotiate -----------------------------------------------------------------------------------


@pytest.mark.parametrize("requested", [None, 0])
def test_legacy_client_gets_no_liveness(requested: int | None) -> None:
    assert negotiate(requested, timeout_ms=30_000) is None


def test_typical_negotiation() -> None:
    assert negotiate(5_000, timeout_ms=30_000) == (5_000, 30_000)


def test_timeout_below_interval_is_raised_to_interval() -> None:
    assert negotiate(5_000, timeout_ms=1_000) == (5_000, 5_000)
    assert negotiate(5_000, timeout_ms=0) == (5_000, 5_000)


def test_timeout_above_maximum_is_clamped() -> None:
    assert negotiate(5_000, timeout_ms=MAX_HEARTBEAT_TIMEOUT_MS + 1) == (5_000, MAX_HEARTBEAT_TIMEOUT_MS)
    assert negotiate(5_000, timeout_ms=10**12) == (5_000, MAX_HEARTBEAT_TIMEOUT_MS)


def test_bounds_are_inclusive() -> None:
    assert negotiate(1, timeout_ms=1) == (1, 1)
    assert negotiate(MAX_HEARTBEAT_TIMEOUT_MS, timeout_ms=MAX_HEARTBEAT_TIMEOUT_MS) == (
        MAX_HEARTBEAT_TIMEOUT_MS,
        MAX_HEARTBEAT_TIMEOUT_MS,
    )
    assert negotiate(5_000, timeout_ms=MAX_HEARTBEAT_TIMEOUT_MS) == (5_000, MAX_HEARTBEAT_TIMEOUT_MS)


@FAST
@given(interval=st.integers(1, MAX_HEARTBEAT_TIMEOUT_MS), timeout=st.integers(0, 2**32))
def test_negotiate_echoes_interval_and_clamps_timeout(interval: int, timeout: int) -> None:
    """What a 1.4.5 client accepts: the same interval, and interval <= timeout <= 900000."""
    result = negotiate(interval, timeout_ms=timeout)
    assert result is not None
    echoed, answered = result
    assert echoed == interval
    assert interval <= answered <= MAX_HEARTBEAT_TIMEOUT_MS
    if interval <= timeout <= MAX_HEARTBEAT_TIMEOUT_MS:
        assert answered == timeout


@FAST
@given(interval=st.integers(1, 2**32 - 1), timeout=st.integers(0, 2**32))
def test_negotiated_timeout_never_exceeds_maximum(interval: int, timeout: int) -> None:
    result = negotiate(interval, timeout_ms=timeout)
    assert result is not None
    assert result[0] <= result[1] <= MAX_HEARTBEAT_TIMEOUT_MS


# ---- LivenessMonitor -----------------------------------------------------------------------------


def test_monitor_deadline_and_expiry() -> None:
    monitor = LivenessMonitor(timeout_s=30.0, last_seen=100.0)
    assert monitor.deadline == 130.0
    assert not monitor.expired(100.0)
    assert not monitor.expired(129.999)
    assert monitor.expired(130.0)
    assert monitor.expired(1_000.0)


def test_any_frame_rearms_the_monitor() -> None:
    monitor = LivenessMonitor(timeout_s=30.0, last_seen=100.0)
    monitor.received(125.0)
    assert monitor.deadline == 155.0
    assert not monitor.expired(150.0)
    assert monitor.expired(155.0)


def test_legacy_empty_heartbeat_is_not_acknowledged() -> None:
    monitor = LivenessMonitor(timeout_s=30.0, last_seen=0.0)
    assert monitor.heartbeat(0, 0) is None
    assert monitor.heartbeat(0, 0) is None
    assert monitor.last_sequence == 0


def test_numbered_heartbeats_are_acknowledged() -> None:
    monitor = LivenessMonitor(timeout_s=30.0, last_seen=0.0)
    assert monitor.heartbeat(1, 0) == 1
    assert monitor.heartbeat(2, 0) == 2
    assert monitor.heartbeat(10, 0) == 10  # gaps are allowed: only increase is required
    assert monitor.last_sequence == 10


@pytest.mark.parametrize("repeat", [3, 2, 1])
def test_non_increasing_sequence_is_a_violation(repeat: int) -> None:
    monitor = LivenessMonitor(timeout_s=30.0, last_seen=0.0)
    assert monitor.heartbeat(3, 0) == 3
    with pytest.raises(ProtocolViolation) as caught:
        monitor.heartbeat(repeat, 0)
    assert caught.value.code is ErrorCode.INVALID_REQUEST
    assert str(repeat) in str(caught.value)
    assert monitor.last_sequence == 3


def test_empty_heartbeat_after_numbered_ones_is_ignored() -> None:
    monitor = LivenessMonitor(timeout_s=30.0, last_seen=0.0)
    monitor.heartbeat(4, 0)
    assert monitor.heartbeat(0, 0) is None
    assert monitor.heartbeat(5, 0) == 5


@FAST
@given(sequences=st.lists(st.integers(0, 50), max_size=20))
def test_monitor_accepts_exactly_increasing_sequences(sequences: list[int]) -> None:
    monitor = LivenessMonitor(timeout_s=1.0, last_seen=0.0)
    highest = 0
    for sequence in sequences:
        if sequence == 0:
            assert monitor.heartbeat(sequence, 0) is None
        elif sequence > highest:
            assert monitor.heartbeat(sequence, 0) == sequence
            highest = sequence
        else:
            with pytest.raises(ProtocolViolation):
                monitor.heartbeat(sequence, 0)
        assert monitor.last_sequence == highest


# ---- AckTracker ----------------------------------------------------------------------------------


def test_not_negotiated_sends_legacy_heartbeats() -> None:
    tracker = AckTracker(negotiated=False)
    assert [tracker.next_sequence() for _ in range(3)] == [0, 0, 0]
    tracker.acknowledgement(0, 0)


@pytest.mark.parametrize(("sequence", "ack"), [(1, 0), (0, 1), (5, 5)])
def test_not_negotiated_rejects_heartbeat_fields(sequence: int, ack: int) -> None:
    with pytest.raises(ProtocolViolation):
        AckTracker(negotiated=False).acknowledgement(sequence, ack)


def test_negotiated_sequences_count_from_one() -> None:
    tracker = AckTracker(negotiated=True)
    assert [tracker.next_sequence() for _ in range(3)] == [1, 2, 3]
    assert tracker.sent == 3


def test_acknowledgements_must_increase_and_not_pass_sent() -> None:
    tracker = AckTracker(negotiated=True)
    tracker.next_sequence()
    tracker.next_sequence()
    tracker.acknowledgement(0, 1)
    with pytest.raises(ProtocolViolation):
        tracker.acknowledgement(0, 1)  # repeated
    with pytest.raises(ProtocolViolation):
        tracker.acknowledgement(0, 3)  # never sent
    tracker.acknowledgement(0, 2)
    assert tracker.acknowledged == 2


def test_acknowledgements_may_skip() -> None:
    tracker = AckTracker(negotiated=True)
    for _ in range(5):
        tracker.next_sequence()
    tracker.acknowledgement(0, 4)
    with pytest.raises(ProtocolViolation):
        tracker.acknowledgement(0, 3)
    tracker.acknowledgement(0, 5)


@pytest.mark.parametrize(("sequence", "ack"), [(0, 0), (1, 1), (7, 0)])
def test_negotiated_rejects_bad_engine_heartbeats(sequence: int, ack: int) -> None:
    tracker = AckTracker(negotiated=True)
    tracker.next_sequence()
    with pytest.raises(ProtocolViolation):
        tracker.acknowledgement(sequence, ack)
    assert tracker.acknowledged == 0


def test_ack_before_any_heartbeat_is_a_violation() -> None:
    with pytest.raises(ProtocolViolation):
        AckTracker(negotiated=True).acknowledgement(0, 1)


@FAST
@given(
    events=st.lists(st.one_of(st.just(None), st.tuples(st.integers(0, 2), st.integers(0, 12))), max_size=15)
)
def test_tracker_matches_the_rule(events: list[tuple[int, int] | None]) -> None:
    """Model check: sent/acknowledged follow §2.9 for any interleaving of sends and engine heartbeats."""
    tracker = AckTracker(negotiated=True)
    sent = acknowledged = 0
    for event in events:
        if event is None:
            sent += 1
            assert tracker.next_sequence() == sent
            continue
        sequence, ack = event
        if sequence == 0 and acknowledged < ack <= sent:
            tracker.acknowledgement(sequence, ack)
            acknowledged = ack
        else:
            with pytest.raises(ProtocolViolation):
                tracker.acknowledgement(sequence, ack)
        assert (tracker.sent, tracker.acknowledged) == (sent, acknowledged)


def test_engine_and_agent_agree() -> None:
    """The monitor's answers satisfy the tracker, heartbeat after heartbeat."""
    interval, timeout = negotiate(5_000, timeout_ms=15_000) or (0, 0)
    monitor = LivenessMonitor(timeout_s=timeout / 1000, last_seen=0.0)
    tracker = AckTracker(negotiated=True)
    for tick in range(1, 6):
        sequence = tracker.next_sequence()
        now = tick * interval / 1000
        monitor.received(now)
        ack = monitor.heartbeat(sequence, 0)
        assert ack is not None
        tracker.acknowledgement(0, ack)
        assert not monitor.expired(now + timeout / 1000 - 0.001)
    assert tracker.acknowledged == 5


@pytest.mark.parametrize(("requested", "answered", "timeout_s"), [
    (5000, None, 0.0),
    (None, None, 0.0),
    (5000, (5000, 30_000), 30.0),
    (5000, (5000, 5000), 5.0),
    (5000, (5000, 900_000), 900.0),
])
def test_agent_accepts_a_valid_liveness_answer(requested: int | None, answered: tuple[int, int] | None,
                                               timeout_s: float) -> None:
    assert liveness.check_answer(requested, answered) == timeout_s


@pytest.mark.parametrize(("requested", "answered"), [
    (None, (5000, 30_000)),     # liveness the agent never asked for
    (5000, (4000, 30_000)),     # interval not echoed
    (5000, (5000, 4999)),       # timeout below the interval
    (5000, (5000, 900_001)),    # timeout above the cap
])
def test_agent_refuses_an_invalid_liveness_answer(requested: int | None, answered: tuple[int, int]) -> None:
    with pytest.raises(ProtocolViolation, match="liveness"):
        liveness.check_answer(requested, answered)
