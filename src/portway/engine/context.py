"""What every engine component shares: settings, live state and the services that act on it.

Built once by `Engine`; passed explicitly so nothing reaches for globals.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Protocol

from portway.engine.auth import TokenVerifier
from portway.engine.broker import StreamBroker
from portway.engine.config import EngineConfig
from portway.engine.registry import Registry, Tunnel


class PortPublisher(Protocol):
    """Binds and releases public TCP ports for tcp tunnels (see edges/tcp.py)."""

    async def publish(self, tunnel: Tunnel, requested: int | None) -> int: ...

    def release(self, tunnel: Tunnel) -> None: ...


class Session(Protocol):
    """What the engine needs from a live control channel (see session.AgentSession)."""

    client_id: str

    def close(self, reason: str) -> None: ...


@dataclass(slots=True)
class Counters:
    """Plain counters for logs, tests and the later metrics endpoint."""

    control_channels: int = 0
    streams_opened: int = 0
    streams_failed: int = 0
    rejected_connections: int = 0


@dataclass(slots=True)
class EngineContext:
    config: EngineConfig
    verifier: TokenVerifier
    registry: Registry
    broker: StreamBroker
    ports: PortPublisher
    public_port: int
    agent_tls: ssl.SSLContext
    edge_tls: ssl.SSLContext
    version: str
    counters: Counters = field(default_factory=Counters)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    sessions: set[Session] = field(default_factory=set)

    def spawn(self, coro: Coroutine[object, object, None]) -> None:
        """Run `coro` as a task the engine owns (cancelled at shutdown, never garbage-collected early)."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    @property
    def host(self) -> str:
        return self.config.engine.host
