"""Control-channel liveness (protocol facts §2.9), sans-IO: time is always passed in.

1.4.5 clients announce `heartbeat_interval_ms`; the engine echoes it with a timeout in
[interval, 900 000] ms, then acknowledges each numbered heartbeat. Legacy clients send empty
heartbeats, which are not answered. Any received frame proves the peer alive.
"""

from __future__ import annotations

from dataclasses import dataclass

from portway.wire.codes import MAX_HEARTBEAT_TIMEOUT_MS
from portway.wire.errors import ProtocolViolation


def negotiate(requested_interval_ms: int | None, *, timeout_ms: int) -> tuple[int, int] | None:
    """Return the (interval, timeout) to answer, or None for a legacy client that asked for nothing.

    The interval is echoed unchanged (clients abort otherwise); the timeout is `timeout_ms` clamped
    into the range a client accepts.
    """
    if not requested_interval_ms:
        return None
    interval = min(requested_interval_ms, MAX_HEARTBEAT_TIMEOUT_MS)
    timeout = max(interval, min(timeout_ms, MAX_HEARTBEAT_TIMEOUT_MS))
    return interval, timeout


def check_answer(requested_interval_ms: int | None, answered: tuple[int, int] | None) -> float:
    """Agent side: validate the engine's liveness answer; return the timeout in seconds (0 = none).

    §2.9: the engine must echo the requested interval and give interval ≤ timeout ≤ 900 000 ms, and must
    not answer liveness to a client that asked for none. Raises `ProtocolViolation` otherwise.
    """
    if answered is None:
        return 0.0
    interval_ms, timeout_ms = answered
    if (requested_interval_ms is None or interval_ms != requested_interval_ms
            or not requested_interval_ms <= timeout_ms <= MAX_HEARTBEAT_TIMEOUT_MS):
        raise ProtocolViolation("engine returned an invalid liveness policy")
    return timeout_ms / 1000


@dataclass(slots=True)
class LivenessMonitor:
    """Engine-side view of one control channel's liveness.

    Call `received(now)` for every frame, `heartbeat(sequence, ack)` for heartbeats (it returns the
    acknowledgement to send, if any), and compare `deadline` with the clock.
    """

    timeout_s: float
    last_seen: float
    last_sequence: int = 0

    @property
    def deadline(self) -> float:
        return self.last_seen + self.timeout_s

    def received(self, now: float) -> None:
        self.last_seen = now

    def expired(self, now: float) -> bool:
        return now >= self.deadline

    def heartbeat(self, sequence: int, acknowledgement: int) -> int | None:
        """Validate an agent heartbeat; return the sequence to acknowledge, or None (legacy/empty).

        Raises `ProtocolViolation` for a sequence that does not increase.
        """
        if sequence == 0:
            return None
        if sequence <= self.last_sequence:
            raise ProtocolViolation(f"heartbeat sequence {sequence} does not increase")
        self.last_sequence = sequence
        return sequence


@dataclass(slots=True)
class AckTracker:
    """Agent-side rules for the engine's acknowledgements (§2.9)."""

    negotiated: bool
    sent: int = 0
    acknowledged: int = 0

    def next_sequence(self) -> int:
        """Sequence number for the next heartbeat, or 0 to send a legacy empty heartbeat."""
        if not self.negotiated:
            return 0
        self.sent += 1
        return self.sent

    def acknowledgement(self, sequence: int, acknowledgement: int) -> None:
        """Check an engine heartbeat; raises `ProtocolViolation` when it breaks the rules."""
        if not self.negotiated:
            if sequence or acknowledgement:
                raise ProtocolViolation("engine sent heartbeat fields without negotiating liveness")
            return
        if sequence != 0 or not self.acknowledged < acknowledgement <= self.sent:
            raise ProtocolViolation(f"invalid heartbeat acknowledgement {acknowledgement}")
        self.acknowledged = acknowledgement
