"""What `portway forward` knows about its tunnel, for the live panel: state, address, streams, traffic and
recent HTTP requests. Plain data fed by `keep_tunnel`'s state callback and the agent's stream observer; the
panel (status.py) only reads it, so this holds no rendering and no I/O."""

from __future__ import annotations

import collections
import time

from portway.agent import ForwardedStream, HttpExchange, StreamObserver, Tunnel

RECENT_REQUESTS = 10


class ForwardStatus(StreamObserver):
    """Counters and the current state of one `portway forward`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = f"{target[0]}:{target[1]}"
        self.state = "starting"
        self.forwarding: str | None = None
        self.tunnel_id: str | None = None
        self.last_error: str | None = None
        self.online_since: float | None = None
        self.open: dict[str, ForwardedStream] = {}
        self.total_streams = 0
        self.total_requests = 0
        self.recent: collections.deque[HttpExchange] = collections.deque(maxlen=RECENT_REQUESTS)
        self._closed_in = 0
        self._closed_out = 0

    # ---- keep_tunnel's state callback ----

    def on_state(self, state: str, tunnel: Tunnel | None, error: BaseException | None) -> None:
        self.state = state
        if tunnel is not None:
            self.forwarding, self.tunnel_id = tunnel.forwarding_address, tunnel.id
        if error is not None:
            self.last_error = str(error)
        if state == "online":
            self.online_since, self.last_error = time.monotonic(), None
        elif state in {"reconnecting", "failed", "closed"}:
            self.online_since = None

    # ---- the agent's stream observer ----

    def stream_opened(self, stream: ForwardedStream) -> None:
        self.open[stream.id] = stream
        self.total_streams += 1

    def request_seen(self, stream: ForwardedStream, exchange: HttpExchange) -> None:
        self.total_requests += 1
        self.recent.append(exchange)  # its status fills in when the response comes

    def stream_closed(self, stream: ForwardedStream) -> None:
        self.open.pop(stream.id, None)
        self._closed_in += stream.bytes_in
        self._closed_out += stream.bytes_out

    # ---- read by the panel ----

    @property
    def uptime_s(self) -> float | None:
        return None if self.online_since is None else time.monotonic() - self.online_since

    @property
    def bytes_in(self) -> int:
        return self._closed_in + sum(s.bytes_in for s in self.open.values())

    @property
    def bytes_out(self) -> int:
        return self._closed_out + sum(s.bytes_out for s in self.open.values())
