"""What every engine component shares: settings, live state and the services that act on it.

Built once by `Engine`; passed explicitly so nothing reaches for globals.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from portway.engine.auth import TokenVerifier
from portway.engine.broker import StreamBroker
from portway.engine.certs import CertFiles
from portway.engine.config import EngineConfig
from portway.engine.registry import Registry, Tunnel
from portway.pipe import Pipe


class PortPublisher(Protocol):
    """Binds and releases public TCP ports for tcp tunnels (see edges/tcp.py)."""

    async def publish(self, tunnel: Tunnel, requested: int | None) -> int: ...

    def release(self, tunnel: Tunnel) -> None: ...


class Session(Protocol):
    """What the engine needs from a live control channel (see session.AgentSession)."""

    client_id: str

    def close(self, reason: str) -> None: ...


class OpenStreams:
    """The connections of established streams, tracked until they close, so shutdown can let them
    drain and then close what is left."""

    def __init__(self) -> None:
        self._pipes: set[Pipe] = set()
        self._empty = asyncio.Event()
        self._empty.set()

    def __len__(self) -> int:
        return len(self._pipes)

    def add(self, *pipes: Pipe) -> None:
        for pipe in pipes:
            self._pipes.add(pipe)
            self._empty.clear()
            pipe.notify_close(self._discard)

    def _discard(self, pipe: Pipe) -> None:
        self._pipes.discard(pipe)
        if not self._pipes:
            self._empty.set()

    async def wait_closed(self, timeout: float) -> bool:
        """Wait until every tracked connection is gone, at most `timeout` seconds; True if they are."""
        try:
            await asyncio.wait_for(self._empty.wait(), max(timeout, 0.0))
        except TimeoutError:
            return False
        return True

    def close(self, *, abort: bool = False) -> None:
        for pipe in list(self._pipes):
            if abort:
                pipe.abort()
            else:
                pipe.close()


@dataclass(slots=True)
class Counters:
    """Plain event counters, written on the hot paths and read by the metrics endpoint at scrape time
    (so counting costs an integer add, and nothing is computed unless someone scrapes)."""

    control_channels: int = 0
    rejected_connections: int = 0
    # Visitors refused by a tunnel's edge policy, by (tunnel protocol, reason): reason is one of
    # "token_auth", "trusted_ips", "geoip", "mtls_auth".
    policy_denials: dict[tuple[str, str], int] = field(default_factory=dict)
    # HTTP responses sent to visitors, by status code (the upstream's or the edge's own error pages).
    http_responses: dict[int, int] = field(default_factory=dict)
    # Bytes of stream connections that have closed, by direction; open ones are summed at scrape time.
    bytes_from_visitors: int = 0
    bytes_to_visitors: int = 0

    def count(self, table: dict[Any, int], key: Any) -> None:
        table[key] = table.get(key, 0) + 1


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
    cert_files: CertFiles  # the engine certificate, for the contexts of terminated tls tunnels
    version: str
    counters: Counters = field(default_factory=Counters)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    sessions: set[Session] = field(default_factory=set)
    streams: OpenStreams = field(default_factory=OpenStreams)

    def spawn(self, coro: Coroutine[object, object, None]) -> None:
        """Run `coro` as a task the engine owns (cancelled at shutdown, never garbage-collected early)."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    @property
    def host(self) -> str:
        return self.config.engine.host
