"""When to retry a failed delivery: exponential backoff with full jitter, bounded by a horizon.

After the n-th failed attempt the next one waits a uniformly random time in [0, min(cap, base·2^(n-1))]
("full jitter": many endpoints failing together do not retry in lockstep). A delivery whose next attempt
would fall after its deadline (recorded at `horizon` after the event), or that used `max_attempts`, is
failed. Defaults: base 10 s, cap 1 h, horizon 24 h, at most 100 attempts. Pure: the random draw and the
clock are arguments."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    base_s: float = 10.0
    """Ceiling of the first retry's delay; doubles after each failure."""
    cap_s: float = 3600.0
    """Largest ceiling."""
    horizon_s: float = 86_400.0
    """A delivery is abandoned this long after its event was recorded (or its redelivery requested)."""
    max_attempts: int = 100
    """Attempts of one delivery, whichever of this and the horizon comes first."""

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError("the retry base must be positive and at most the cap")
        if self.horizon_s <= 0 or self.max_attempts < 1:
            raise ValueError("the horizon and max_attempts must be positive")

    def ceiling(self, failures: int) -> float:
        """The largest delay after `failures` failed attempts (≥ 1)."""
        # min() before the power would overflow a float for large counts; 2**64 is far past any cap.
        return min(self.cap_s, self.base_s * 2.0 ** min(failures - 1, 64))

    def next_attempt(self, *, failures: int, now: float, deadline: float, draw: float) -> float | None:
        """The time of the next attempt after `failures` failures (`draw` uniform in [0, 1)), or None
        when the delivery is to be failed."""
        if failures >= self.max_attempts:
            return None
        at = now + draw * self.ceiling(failures)
        return at if at <= deadline else None
