"""`Engine`: binds the listeners, owns every task, and shuts down in phases.

Shutdown order: stop accepting, close control channels (agents see the channel end and reconnect
elsewhere), let established streams drain for `timeouts.shutdown_grace_seconds`, cancel the rest, stop the webhook
dispatcher (after the sessions, so their last events are recorded; delivered by the next run if need be),
close idle plain-HTTP connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from portway import __version__
from portway.engine.access.tokens import AccessVerifier
from portway.engine.auth import TokenVerifier
from portway.engine.broker import StreamBroker
from portway.engine.certs import CertFiles, CertWatcher, load_chain
from portway.engine.config import EngineConfig
from portway.engine.context import EngineContext
from portway.engine.credentials import CredentialCache
from portway.engine.edges import tlsterm
from portway.engine.edges.h2upstream import H2UpstreamPool
from portway.engine.edges.plainhttp import PlainHttpListener
from portway.engine.edges.pool import UpstreamPool
from portway.engine.edges.tcp import TcpEdge
from portway.engine.geoip import GeoIPDatabase
from portway.engine.listener import Listener
from portway.engine.metrics import engine_registry
from portway.engine.metricsserver import MetricsServer
from portway.engine.registry import Registry
from portway.engine.state import EngineState
from portway.engine.webhooks import RetrySchedule
from portway.engine.withdrawal import close_withdrawn
from portway.errors import ConfigError
from portway.wire.codes import ALPN

if TYPE_CHECKING:
    from portway.engine.store import Store
    from portway.engine.store.changes import ChangeFeed
    from portway.engine.webhooks.service import WebhookService

log = logging.getLogger("portway.engine")

# Shutdown: how long stream connections closed after the grace period get to finish their close.
_CLOSE_WAIT_S = 1.0


def _tls_contexts(files: CertFiles) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(agent context, visitor context). Agents must use TLS 1.3 with ALPN rstrm/1 (§2.1)."""
    agent = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    agent.minimum_version = ssl.TLSVersion.TLSv1_3
    load_chain(agent, files)
    agent.set_alpn_protocols([ALPN])
    edge = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    edge.minimum_version = ssl.TLSVersion.TLSv1_2
    load_chain(edge, files)
    edge.set_alpn_protocols(["h2", "http/1.1"])
    for ctx in (agent, edge):
        ctx.options |= ssl.OP_NO_COMPRESSION
    return agent, edge


def _refuse_unserved(cfg: EngineConfig) -> None:
    unserved = {
        "tls.enabled=false": not cfg.tls.enabled,
    }
    for key, set_ in unserved.items():
        if set_:
            raise ConfigError(f"{key} is not available in this version of the engine")


async def _drain_streams(ctx: EngineContext, deadline: float) -> None:
    """Let established streams finish until `deadline`, then close the rest and wait (bounded) until
    their connections are gone."""
    if await ctx.streams.wait_closed(deadline - asyncio.get_running_loop().time()):
        return
    log.info("closing %d stream connections still open after the grace period", len(ctx.streams))
    ctx.streams.close()
    if not await ctx.streams.wait_closed(_CLOSE_WAIT_S):
        ctx.streams.close(abort=True)


async def _open_webhooks(cfg: EngineConfig, store: Store, state_dir: Path, default_project: str) -> WebhookService:
    """The webhook service over the store's `webhook_*` tables, after importing an earlier version's outbox
    (webhooks/legacy.py). Imported here for the reason `_open_store` gives."""
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

    from portway.engine.webhooks.legacy import LEGACY_FILE, import_legacy_outbox  # noqa: PLC0415
    from portway.engine.webhooks.service import WebhookService, WebhookSettings  # noqa: PLC0415
    from portway.engine.webhooks.store import StoreError  # noqa: PLC0415

    section = cfg.webhooks
    schedule = RetrySchedule(base_s=section.retry_base_seconds, cap_s=section.retry_cap_seconds,
                             horizon_s=section.retry_horizon_seconds, max_attempts=section.max_attempts)
    settings = WebhookSettings(schedule=schedule, timeout_s=section.timeout_seconds, concurrency=section.concurrency,
                               lease_s=section.lease_seconds, rotation_grace_s=section.rotation_grace_seconds,
                               retention_s=section.retention_seconds, refresh_s=cfg.store.refresh_seconds)
    try:
        await import_legacy_outbox(state_dir, store, default_project)
    except (sqlite3.Error, SQLAlchemyError, OSError, KeyError, ValueError) as error:
        log.error("webhooks: cannot import %s from an earlier Portway (%s); it is left in place and tried again "
                  "at the next start", state_dir / LEGACY_FILE, error)
    try:
        return await WebhookService.open(store, settings, version=__version__)
    except StoreError as error:
        raise ConfigError(f"webhooks: cannot read the webhook endpoints: {error}") from None


async def _open_store(cfg: EngineConfig, state: EngineState) -> Store:
    """The control-plane store, migrated; an unreachable or unusable database is a configuration error.

    Imported here, not at the top: SQLAlchemy and Alembic take ~0.4 s to import, which every `portway`
    command would pay, while only a starting engine needs them (and the admin routes they serve)."""
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

    from portway.engine.api import admin_routes, webhook_routes  # noqa: F401, PLC0415 - register their routes
    from portway.engine.store import Store, store_url  # noqa: PLC0415

    url = store_url(cfg.store.url, state.state_dir)
    try:
        return await Store.open(url)
    except (OSError, SQLAlchemyError) as error:
        where = "store.url" if cfg.store.url else f"the store in {state.state_dir}"
        raise ConfigError(f"{where}: cannot open the control-plane database: {error}") from None


class Engine:
    """A running engine. Use `async with Engine.start(config, state_dir=...) as engine:` or `run()`."""

    def __init__(self, config: EngineConfig, state: EngineState) -> None:
        self.config = config
        self.state = state
        self.ctx: EngineContext | None = None
        self._listener: Listener | None = None
        self._http: PlainHttpListener | None = None
        self._tcp = TcpEdge()
        self.metrics: MetricsServer | None = None
        self._stopped = asyncio.Event()
        self._cert_timer: asyncio.TimerHandle | None = None
        self._webhooks: WebhookService | None = None
        self.store: Store | None = None
        self._credentials: CredentialCache | None = None
        self._changes: ChangeFeed | None = None

    @property
    def port(self) -> int:
        assert self._listener is not None
        return self._listener.port

    @property
    def http_port(self) -> int | None:
        """The plain-HTTP listener's port, None when `http.enabled` is off."""
        return self._http.port if self._http is not None else None

    @property
    def cert_files(self) -> CertFiles:
        static = self.config.certs.static
        if static.enabled and static.cert_file and static.key_file:
            return CertFiles(Path(static.cert_file), Path(static.key_file), None)
        return CertFiles(self.state.cert_path, self.state.key_path, self.state.ca_path)

    async def start(self) -> None:
        """Bind and begin accepting. Raises OSError if the listen address is taken, ConfigError for
        settings this engine does not serve yet (refused, never silently ignored) or a metrics address
        that cannot be bound."""
        cfg = self.config
        _refuse_unserved(cfg)
        # Stamped before loading, so a change during start-up is not missed.
        watcher = CertWatcher(self.cert_files, self._reload_certs) if cfg.certs.static.enabled else None
        agent_tls, edge_tls = _tls_contexts(self.cert_files)
        secret = cfg.auth.jwt.token_jwt_secret or self.state.jwt_secret
        verifier = TokenVerifier(secret, enabled=cfg.auth.jwt.enabled)
        store = await _open_store(cfg, self.state)  # first: nothing is bound yet if the database is unreachable
        host, port = cfg.tls.address
        broker = StreamBroker(timeout_s=cfg.timeouts.stream_request_seconds,
                              max_pending=cfg.limits.max_pending_streams)
        # The listener needs the context and the context needs the public port: bind first.
        geoip = GeoIPDatabase(Path(cfg.geoip.database_file)) if cfg.geoip.database_file else None
        ctx = EngineContext(config=cfg, verifier=verifier, registry=Registry(), broker=broker, ports=self._tcp,
                            public_port=0, agent_tls=agent_tls, edge_tls=edge_tls, cert_files=self.cert_files,
                            version=__version__, geoip=geoip, upstreams=UpstreamPool(cfg.timeouts.http_idle_seconds),
                            h2_upstreams=H2UpstreamPool(cfg.timeouts.http_idle_seconds))
        ctx.services.update(store=store, signer=verifier, policies=ctx.policies)
        if geoip is not None:
            ctx.services["geoip"] = geoip  # the admin API refuses country allow-lists without it
        self.store = store
        credentials = CredentialCache(ctx.policies, geoip_available=geoip is not None)
        try:
            await credentials.reload(store)
        except Exception:
            await store.close()
            raise
        ctx.access = AccessVerifier(verifier, credentials)
        credentials.on_reload(functools.partial(close_withdrawn, ctx))
        ctx.services["credentials"] = credentials
        from portway.engine.store.changes import ChangeFeed  # noqa: PLC0415 - SQLAlchemy: see _open_store

        self._changes = ChangeFeed(store)
        ctx.services["changes"] = self._changes
        self._credentials = credentials
        try:
            self._listener = Listener.bind(ctx, host, port)
        except BaseException:
            await store.close()
            raise
        ctx.public_port = cfg.engine.public_port or self._listener.port
        self._tcp.ctx = ctx
        self.ctx = ctx
        if cfg.http.enabled:
            try:
                self._http = PlainHttpListener.bind(ctx)
            except OSError as error:
                self._listener.stop()
                await store.close()
                raise ConfigError(f"http.listen_addr: cannot listen on {cfg.http.listen_addr}: "
                                  f"{error.strerror or error}") from None
        if cfg.metrics.prometheus.enabled:
            metrics = MetricsServer(cfg.metrics.prometheus, cfg.timeouts, engine_registry(ctx))
            try:
                await metrics.start()
            except ConfigError:
                self._listener.stop()
                if self._http is not None:
                    self._http.stop()
                await store.close()
                raise
            self.metrics = metrics
        if cfg.webhooks.enabled:
            try:
                self._webhooks = await _open_webhooks(cfg, store, self.state.state_dir, ctx.policies.project(None))
            except ConfigError:
                self._listener.stop()
                if self._http is not None:
                    self._http.stop()
                if self.metrics is not None:
                    await self.metrics.close()
                await store.close()
                raise
            ctx.services["webhooks"] = self._webhooks
            self._webhooks.announce = self._changes.announce
            self._webhooks.attach(ctx.events)
            self._webhooks.start()
        if self._http is not None:
            await self._http.start()
        self._listener.start()
        credentials.start(store, cfg.store.refresh_seconds)
        self._changes.start(functools.partial(self._apply_changes, store))
        if watcher is not None:
            self._watch_certs(watcher)
        log.info("engine %s listening on %s:%d (host %s)", __version__, host, self._listener.port, cfg.engine.host)
        if self._http is not None:
            log.info("plain HTTP on %s:%d, %s", cfg.http.address[0], self._http.port, self._http.mode)

    async def _apply_changes(self, store: Store) -> None:
        """Another engine changed the control plane: read credentials, policies and endpoints again now."""
        assert self._credentials is not None
        await self._credentials.reload(store)
        if self._webhooks is not None:
            await self._webhooks.recorder.load()

    def _watch_certs(self, watcher: CertWatcher) -> None:
        """Check the static certificate files every `interval_s` until stop() (a timer, not a task: shutdown
        does not wait for it)."""
        def tick() -> None:
            watcher.check()
            self._watch_certs(watcher)

        self._cert_timer = asyncio.get_running_loop().call_later(watcher.interval_s, tick)

    def _reload_certs(self) -> None:
        """Rebuild every server context from the certificate files; swap them in only if all loaded, so a
        broken file never leaves a context half-loaded. Established connections keep their certificate."""
        ctx = self.ctx
        assert ctx is not None
        agent_tls, edge_tls = _tls_contexts(ctx.cert_files)
        tunnels = [t for t in ctx.registry.tunnels() if t.tls is not None]
        rebuilt = [tlsterm.tunnel_context(t.props, ctx.cert_files) for t in tunnels]
        ctx.agent_tls, ctx.edge_tls = agent_tls, edge_tls
        for tunnel, context in zip(tunnels, rebuilt, strict=True):
            tunnel.tls = context

    async def stop(self) -> None:
        """Graceful shutdown; safe to call twice."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._cert_timer is not None:
            self._cert_timer.cancel()
        ctx = self.ctx
        if self._listener is not None:
            self._listener.stop()
        if self._http is not None:
            self._http.stop()
        self._tcp.close()
        if self.metrics is not None:
            await self.metrics.close()
        if ctx is None:
            return
        ctx.upstreams.close()
        ctx.h2_upstreams.close()
        for watcher in list(ctx.watchers):
            watcher.close("the engine is shutting down")
        for session in list(ctx.sessions):
            session.close("engine shutting down")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.timeouts.shutdown_grace_seconds
        tasks = set(ctx.tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.config.timeouts.shutdown_grace_seconds)
            for task in pending:
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*pending, return_exceptions=True)
        await _drain_streams(ctx, deadline)
        if self._webhooks is not None:  # after the sessions: their last events are recorded first
            await self._webhooks.stop()
            self._webhooks.detach()
        if isinstance(ctx.geoip, GeoIPDatabase):
            ctx.geoip.close()
        if self._http is not None:
            self._http.close_connections()
        if self._changes is not None:
            await self._changes.stop()
        if self._credentials is not None:
            await self._credentials.stop()
        if self.store is not None:  # last: the tasks answering admin requests have ended
            await self.store.close()
        log.info("engine stopped")

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
