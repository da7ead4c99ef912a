"""Stream brokering (protocol facts §2.6): ask an agent for a data connection and wait for it.

`open_stream()` sends `ProxyConnReq{tunnel_id, stream_id, secret}` on the owning agent's control
channel and waits until the agent dials back with a `ProxyReq` carrying that stream id and secret.
Secrets are single-use, compared in constant time, and expire with the request
(`timeouts.stream_request_seconds`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
from dataclasses import dataclass

from portway.engine.registry import Tunnel
from portway.pipe import Pipe
from portway.wire.codes import ErrorCode

log = logging.getLogger("portway.engine.broker")


class StreamFailed(Exception):
    """No data connection was obtained. `code` says why, for error pages and StreamRsp errors."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(eq=False, slots=True)
class _Pending:
    tunnel: Tunnel
    secret: str
    future: asyncio.Future[Pipe]


def new_stream_id() -> str:
    """24 lowercase hex digits: QUIC datagram channel ids are derived from it (§2.8)."""
    return secrets.token_hex(12)


class StreamBroker:
    """Matches agents' data connections to the streams the engine asked for."""

    def __init__(self, *, timeout_s: float, max_pending: int) -> None:
        self._timeout_s = timeout_s
        self._max_pending = max_pending
        self._pending: dict[str, _Pending] = {}
        self.streams_opened = 0  # every stream of every edge and dial passes here: counted once
        self.streams_failed = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def open_stream(self, tunnel: Tunnel, source_ip: str | None, stream_id: str | None = None) -> Pipe:
        """Return the agent's data connection for a new stream of `tunnel`, not yet spliced.

        Raises `StreamFailed`: CAPACITY_EXHAUSTED when too many streams are pending,
        SERVICE_UNAVAILABLE when the agent refused or did not answer in time.
        """
        if len(self._pending) >= self._max_pending:
            self.streams_failed += 1
            raise StreamFailed(ErrorCode.CAPACITY_EXHAUSTED, "too many streams are being set up")
        stream_id = stream_id or new_stream_id()
        secret = secrets.token_urlsafe(24)
        future: asyncio.Future[Pipe] = asyncio.get_running_loop().create_future()
        self._pending[stream_id] = _Pending(tunnel, secret, future)
        try:
            tunnel.owner.request_stream(tunnel.id, stream_id, secret, source_ip)
            tunnel.streams_opened += 1
            pipe = await asyncio.wait_for(future, self._timeout_s)
        except TimeoutError:
            self.streams_failed += 1
            raise StreamFailed(ErrorCode.SERVICE_UNAVAILABLE, "the agent did not open the stream in time") from None
        except StreamFailed:
            self.streams_failed += 1
            raise
        finally:
            self._pending.pop(stream_id, None)
            if not future.done():
                future.cancel()
        self.streams_opened += 1
        return pipe

    def claim(self, stream_id: str, secret: str | None) -> _Pending | None:
        """Take the pending stream a `ProxyReq` names, if its secret matches; each secret works once."""
        pending = self._pending.get(stream_id)
        if pending is None or secret is None or pending.future.done():
            return None
        if not hmac.compare_digest(pending.secret.encode(), secret.encode()):
            return None
        del self._pending[stream_id]
        return pending

    def deliver(self, pending: _Pending, pipe: Pipe) -> bool:
        """Hand the data connection to the waiting edge; False if it gave up meanwhile."""
        if pending.future.done():
            return False
        pending.future.set_result(pipe)
        return True

    def refuse(self, stream_id: str, client_id: str, code: int, reason: str) -> None:
        """An agent answered `ProxyConnRsp` with an error for a stream it owns."""
        pending = self._pending.get(stream_id)
        if pending is None or pending.tunnel.owner.client_id != client_id or pending.future.done():
            return
        del self._pending[stream_id]
        # The agent's text may describe its private network: log it here, never pass it to visitors.
        log.info("agent refused stream %s of tunnel %s: code %s: %.200s", stream_id, pending.tunnel.id, code, reason)
        pending.future.set_exception(StreamFailed(ErrorCode.SERVICE_UNAVAILABLE, "the agent could not open the stream"))

    def fail_tunnel(self, tunnel: Tunnel) -> None:
        """The tunnel went away: fail every stream still waiting for it."""
        for stream_id, pending in list(self._pending.items()):
            if pending.tunnel is tunnel and not pending.future.done():
                del self._pending[stream_id]
                pending.future.set_exception(StreamFailed(ErrorCode.TUNNEL_NOT_FOUND, "the tunnel closed"))
