"""What every engine component shares: settings, live state and the services that act on it.

Built once by `Engine`; passed explicitly so nothing reaches for globals.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from portway.engine.access.tokens import AccessVerifier
from portway.engine.accesspolicy import PolicyBook
from portway.engine.auth import Principal, TokenVerifier
from portway.engine.broker import StreamBroker
from portway.engine.certs import CertFiles
from portway.engine.config import EngineConfig
from portway.engine.edges.h2upstream import H2UpstreamPool
from portway.engine.edges.pool import UpstreamPool
from portway.engine.events import EventBus
from portway.engine.policy import IPAddress
from portway.engine.registry import Registry, Tunnel
from portway.pipe import Pipe
from portway.wire.messages import ClientDetails


class PortPublisher(Protocol):
    """Binds and releases public TCP ports for tcp tunnels (see edges/tcp.py)."""

    async def publish(self, tunnel: Tunnel, requested: int | None) -> int: ...

    def release(self, tunnel: Tunnel, *, reserve: bool = False) -> None: ...


class CountryLookup(Protocol):
    """The engine's GeoIP database (see geoip.GeoIPDatabase)."""

    def country(self, address: IPAddress) -> str | None: ...


class Session(Protocol):
    """What the engine needs from a live control channel (see session.AgentSession)."""

    client_id: str
    principal: Principal
    details: ClientDetails
    peer: str
    opened_at: float
    tunnels: dict[str, Tunnel]
    project_id: str
    workspace_id: str | None

    def close(self, reason: str) -> None: ...


class Watcher(Protocol):
    """A live signaling stream (edges/watchstream.py), closed when the engine stops or its token is
    withdrawn."""

    @property
    def principal(self) -> Principal: ...

    def close(self, reason: str) -> None: ...


class OpenStreams:
    """The connections of established streams, tracked until they close, so shutdown can let them
    drain and then close what is left. Each is remembered as the visitor's or the agent's side, so the
    bytes it received go to the right direction of `counters` when it closes."""

    def __init__(self, counters: Counters) -> None:
        self._counters = counters
        self._pipes: dict[Pipe, bool] = {}  # pipe -> is the visitor's side
        self._visitors = 0
        self._ends: dict[Pipe, Callable[[], None]] = {}  # visitor pipe -> what to run when it closes
        self._empty = asyncio.Event()
        self._empty.set()

    def __len__(self) -> int:
        return len(self._pipes)

    @property
    def active(self) -> int:
        """Streams whose visitor connection is still open (each stream has one visitor side)."""
        return self._visitors

    def add(self, visitor: Pipe, agent: Pipe, on_end: Callable[[], None] | None = None) -> None:
        """A spliced stream: the visitor's connection and the agent's; `on_end` runs when the visitor's
        closes (a stream summary's moment)."""
        if on_end is not None:
            self._ends[visitor] = on_end
        self.track(visitor, visitor=True)
        self.track(agent, visitor=False)

    def track(self, pipe: Pipe, *, visitor: bool) -> None:
        """One side on its own, for edges that are not 1:1 (an HTTP/2 visitor over pooled agent streams)."""
        if pipe in self._pipes:
            return
        self._pipes[pipe] = visitor
        self._visitors += visitor
        self._empty.clear()
        pipe.notify_close(self._discard)

    def forget(self, pipe: Pipe) -> None:
        """`pipe` handed its connection to another protocol (see Pipe.hand_over): stop waiting for it."""
        self._discard(pipe)

    def live_bytes(self) -> tuple[int, int]:
        """(from visitors, to visitors): bytes received so far on the connections still open."""
        from_visitors = to_visitors = 0
        for pipe, is_visitor in self._pipes.items():
            if is_visitor:
                from_visitors += pipe.bytes_in
            else:
                to_visitors += pipe.bytes_in
        return from_visitors, to_visitors

    def _discard(self, pipe: Pipe) -> None:
        is_visitor = self._pipes.pop(pipe, None)
        if is_visitor is None:
            return
        if is_visitor:
            self._visitors -= 1
            self._counters.bytes_from_visitors += pipe.bytes_in
            if self._ends:
                end = self._ends.pop(pipe, None)
                if end is not None:
                    end()
        else:
            self._counters.bytes_to_visitors += pipe.bytes_in
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
    upstreams: UpstreamPool = field(default_factory=lambda: UpstreamPool(90.0))
    h2_upstreams: H2UpstreamPool = field(default_factory=lambda: H2UpstreamPool(90.0))
    geoip: CountryLookup | None = None
    counters: Counters = field(default_factory=Counters)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    sessions: set[Session] = field(default_factory=set)
    events: EventBus = field(default_factory=EventBus)
    watchers: set[Watcher] = field(default_factory=set)
    policies: PolicyBook = field(default_factory=PolicyBook)  # project-wide access policies
    # Watches that asked for stream summaries: the edges build summaries only while this is non-zero, so
    # the data plane pays one integer check per request or connection when nobody is looking.
    summary_watchers: int = 0
    services: dict[str, object] = field(default_factory=dict)  # optional parts by name (e.g. "webhooks")
    streams: OpenStreams = field(init=False)
    access: AccessVerifier = field(init=False)  # every token check: ce/auth/pat/app (access/tokens.py)

    def __post_init__(self) -> None:
        self.streams = OpenStreams(self.counters)
        self.access = AccessVerifier(self.verifier)  # the engine swaps in one backed by the store

    def spawn(self, coro: Coroutine[object, object, None]) -> None:
        """Run `coro` as a task the engine owns (cancelled at shutdown, never garbage-collected early)."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    @property
    def host(self) -> str:
        return self.config.engine.host
