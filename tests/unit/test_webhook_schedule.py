"""engine/webhooks/schedule.py: exponential backoff with full jitter, a cap, a horizon and an attempt limit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portway.engine.webhooks.schedule import RetrySchedule

draws = st.floats(min_value=0, max_value=1, exclude_max=True)
failures = st.integers(min_value=1, max_value=10_000)
schedules = st.builds(
    lambda base, factor, horizon, attempts: RetrySchedule(base_s=base, cap_s=base * factor, horizon_s=horizon,
                                                          max_attempts=attempts),
    st.floats(min_value=0.001, max_value=100), st.floats(min_value=1, max_value=1000),
    st.floats(min_value=1, max_value=1e6), st.integers(min_value=1, max_value=1000))


@given(schedule=schedules, n=failures, draw=draws, now=st.floats(min_value=0, max_value=2e9))
def test_the_delay_is_within_zero_and_the_ceiling(schedule: RetrySchedule, n: int, draw: float, now: float) -> None:
    at = schedule.next_attempt(failures=n, now=now, deadline=float("inf"), draw=draw)
    if n >= schedule.max_attempts:
        assert at is None
        return
    assert at is not None
    assert now <= at <= now + schedule.ceiling(n) <= now + schedule.cap_s


@given(schedule=schedules, n=failures)
def test_ceilings_double_until_the_cap(schedule: RetrySchedule, n: int) -> None:
    assert schedule.ceiling(1) == min(schedule.base_s, schedule.cap_s)
    assert schedule.ceiling(n) <= schedule.ceiling(n + 1) <= schedule.cap_s
    if schedule.ceiling(n + 1) < schedule.cap_s:
        assert schedule.ceiling(n + 1) == pytest.approx(2 * schedule.ceiling(n))


@given(schedule=schedules, n=failures, draw=draws, now=st.floats(min_value=0, max_value=1e6),
       left=st.floats(min_value=0, max_value=1e5))
def test_nothing_is_scheduled_past_the_deadline(schedule: RetrySchedule, n: int, draw: float, now: float,
                                                left: float) -> None:
    deadline = now + left
    at = schedule.next_attempt(failures=n, now=now, deadline=deadline, draw=draw)
    assert at is None or at <= deadline


def test_the_default_schedule() -> None:
    schedule = RetrySchedule()
    assert [schedule.ceiling(n) for n in range(1, 11)] == [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600]
    assert schedule.horizon_s == 86_400
    assert schedule.next_attempt(failures=3, now=100, deadline=1000, draw=0.5) == 120
    assert schedule.next_attempt(failures=100, now=100, deadline=1e9, draw=0) is None


@pytest.mark.parametrize("kwargs", [{"base_s": 0}, {"base_s": 10, "cap_s": 5}, {"horizon_s": 0},
                                    {"max_attempts": 0}])
def test_nonsense_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        RetrySchedule(**kwargs)  # type: ignore[arg-type]
