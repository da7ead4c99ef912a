"""Reconnection as a policy: which errors are worth retrying, and how long to wait.

`keep_tunnel()` runs one tunnel forever: connect, create (with the hostname the engine gave last
time, so the public address stays the same), forward, and on loss back off with jitter and retry.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from portway.agent.client import Client
from portway.agent.observe import StreamObserver
from portway.agent.tunnel import Tunnel
from portway.errors import AuthError, ConfigError, EngineRejected, PortwayError
from portway.wire.codes import ErrorCode
from portway.wire.messages import TunnelProperties

log = logging.getLogger("portway.agent.reconnect")

_FATAL_CODES = {ErrorCode.UNAUTHORIZED, ErrorCode.INVALID_REQUEST, ErrorCode.FEATURE_NOT_AVAILABLE,
                ErrorCode.PROTOCOL_VERSION_INCOMPATIBLE, ErrorCode.PROTOCOL_VERSION_INVALID}


def is_fatal(error: BaseException) -> bool:
    """Errors that retrying cannot fix: refused credentials, invalid requests, bad configuration."""
    if isinstance(error, EngineRejected):
        return error.code in _FATAL_CODES
    return isinstance(error, AuthError | ConfigError)


@dataclass(slots=True)
class Backoff:
    """Exponential backoff with downward jitter, capped; `reset()` after a success."""

    initial_s: float = 0.5
    maximum_s: float = 30.0
    factor: float = 2.0
    _current: float = 0.0

    def next_delay(self) -> float:
        self._current = self.initial_s if not self._current else min(self._current * self.factor, self.maximum_s)
        return self._current * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self._current = 0.0


StateCallback = Callable[[str, Tunnel | None, BaseException | None], None]


async def keep_tunnel(client: Client, spec: TunnelProperties, target: tuple[str, int], *,
                      on_state: StateCallback, retry: bool = True, backoff: Backoff | None = None,
                      observer: StreamObserver | None = None) -> None:
    """Keep a tunnel forwarding to `target` alive. Returns only when `retry` is False and the first
    connection ends; raises the error when it is fatal (or retries are off).

    `on_state` hears connecting → connected (control channel open) → online (tunnel created), then
    reconnecting, or failed/closed at the end; `observer` hears about every relayed stream."""
    policy = backoff or Backoff()
    while True:
        on_state("connecting", None, None)
        try:
            control = await client.connect()
            on_state("connected", None, None)
            try:
                tunnel = await control.create_tunnel(spec)
                if tunnel.properties.hostname and spec.publish is not False and spec.protocol != "tcp":
                    spec = spec.replace(hostname=tunnel.properties.hostname)  # keep the address on reconnect
                if spec.protocol == "tcp" and tunnel.properties.port:
                    spec = spec.replace(port=tunnel.properties.port)
                policy.reset()
                on_state("online", tunnel, None)
                forward = asyncio.ensure_future(tunnel.forward_to(*target, observer=observer))
                try:
                    await control.wait_closed()
                finally:
                    forward.cancel()
                error: BaseException | None = None
            finally:
                await control.close()
        except PortwayError as failure:
            error = failure
            if is_fatal(failure) or not retry:
                on_state("failed", None, failure)
                raise
        if not retry:
            on_state("closed", None, error)
            return
        delay = policy.next_delay()
        on_state("reconnecting", None, error)
        log.info("reconnecting in %.1fs%s", delay, f" after: {error}" if error else "")
        await asyncio.sleep(delay)
