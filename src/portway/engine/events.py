"""The engine's lifecycle events (§4.2): one in-process bus that signaling watches and the webhook
recorder subscribe to. Publishing is synchronous and ordered — every subscriber has seen an event before
`publish` returns, and the engine answers the agent whose action caused it only `after_recorded` (webhook
deliveries stored) — and each event has a sequence number, so a snapshot taken in the same tick as a
subscription is exactly consistent with it.
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("portway.engine.events")

CLIENT_EVENTS = ("client.created", "client.updated", "client.deleted")
TUNNEL_EVENTS = ("tunnel.created", "tunnel.updated", "tunnel.deleted")
LIFECYCLE_EVENTS = CLIENT_EVENTS + TUNNEL_EVENTS
SUMMARY_EVENT = "stream.summary"

Subscriber = Callable[["EngineEvent"], None]


def event_id(seq: int, now: float | None = None) -> str:
    """`evt_` + hex milliseconds (12) + sequence (8) + random (4): unique across restarts, and in
    publication order as text."""
    millis = int((time.time() if now is None else now) * 1000)
    return f"evt_{millis:012x}{seq & 0xFFFFFFFF:08x}{secrets.token_hex(2)}"


@dataclass(frozen=True, slots=True)
class EngineEvent:
    """One event in rstream's envelope; `object` is the client, tunnel or stream summary as JSON data."""

    seq: int
    type: str
    object: dict[str, Any]
    user_id: str | None = None
    project_id: str | None = None
    workspace_id: str | None = None
    id: str = ""
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat().replace("+00:00", "Z"))

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", event_id(self.seq))

    def envelope(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "created_at": self.created_at, "user_id": self.user_id,
                "workspace_id": self.workspace_id, "project_id": self.project_id, "cluster_id": None,
                "object": self.object}

    def to_json(self) -> str:
        return json.dumps(self.envelope(), separators=(",", ":"))


class EventBus:
    """Fan-out of events to subscribers, in order. A subscriber that raises is logged and dropped, never
    allowed to break the engine action that published the event."""

    def __init__(self) -> None:
        self._subscribers: dict[int, Subscriber] = {}
        self._keys = itertools.count()
        self.seq = 0  # of the last event published
        self._barrier: Callable[[Callable[[], None]], None] | None = None

    def __len__(self) -> int:
        return len(self._subscribers)

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Receive every event published from now on; call the returned function to stop."""
        key = next(self._keys)
        self._subscribers[key] = callback
        return lambda: self._subscribers.pop(key, None) and None

    def hold_answers(self, barrier: Callable[[Callable[[], None]], None] | None) -> None:
        """Install the webhook recorder's `after_recorded` (None: remove it); see `after_recorded`."""
        self._barrier = barrier

    def after_recorded(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the events published so far are durably recorded (at once when nothing
        records them). The engine sends an agent its answer this way, so an acknowledged action has its
        webhook deliveries stored."""
        if self._barrier is None:
            callback()
        else:
            self._barrier(callback)

    def publish(self, kind: str, obj: dict[str, Any], *, user_id: str | None = None,
                project_id: str | None = None, workspace_id: str | None = None) -> EngineEvent:
        self.seq += 1
        event = EngineEvent(self.seq, kind, obj, user_id=user_id, project_id=project_id, workspace_id=workspace_id)
        for key, callback in list(self._subscribers.items()):
            try:
                callback(event)
            except Exception:
                log.exception("event subscriber failed; dropping it")
                self._subscribers.pop(key, None)
        return event
