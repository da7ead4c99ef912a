"""`AgentSession`: one agent's control channel (protocol facts §2.4, §2.5, §2.9).

The session owns its tunnels: it validates and registers them, relays stream requests to the agent,
acknowledges heartbeats and withdraws every route when the channel closes or goes silent. Streams
already established run on their own connections and are not affected by the session's end.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime

from portway.engine.access.tokens import AccessPrincipal
from portway.engine.api.inventory import client_view, tunnel_view
from portway.engine.auth import Principal
from portway.engine.authorize import may_create
from portway.engine.capabilities import check_supported
from portway.engine.context import EngineContext
from portway.engine.edges import tlsterm
from portway.engine.policy import build_policy
from portway.engine.registry import Tunnel
from portway.wire import events, hostnames, properties
from portway.wire.codes import ErrorCode
from portway.wire.control import EngineControlConnection
from portway.wire.errors import FrameError, InvalidTunnelProperties, WireError
from portway.wire.messages import ClientDetails, ServerDetails, TunnelProperties

log = logging.getLogger("portway.engine.session")

# A control channel whose agent stops reading is dead weight: drop it past this much unsent data.
MAX_CONTROL_BACKLOG_BYTES = 4 * 1024 * 1024


class AgentSession(asyncio.Protocol):
    """Protocol of a control-channel connection after its `OpenControlChannelReq` was accepted."""

    def __init__(self, ctx: EngineContext, principal: Principal, details: ClientDetails, peer: str) -> None:
        self.ctx = ctx
        self.principal = principal
        self.details = details
        self.peer = peer
        self.client_id = secrets.token_hex(12)
        self.opened_at = time.time()
        self.project_id = ctx.policies.project(principal.project_id)
        # The project's workspace: tokens without a project (ce, and tokens derived from them) work in the
        # default project, so their tunnels are in its workspace, not in none.
        self.workspace_id = ctx.policies.workspace(self.project_id) or (
            principal.workspace_id if isinstance(principal, AccessPrincipal) else None)
        self.token_id = principal.token_id
        self.tunnels: dict[str, Tunnel] = {}
        self.transport: asyncio.Transport | None = None
        self._conn: EngineControlConnection | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._opening = 0  # OpenTunnelReqs being served: they count against the tunnel limit
        self._closed = False

    # ---- lifecycle ----

    def start(self, transport: asyncio.Transport, requested_interval_ms: int | None, rest: bytes) -> None:
        """Take over `transport`, answer the open request, then process `rest` (frames already read)."""
        self.transport = transport
        transport.set_protocol(self)
        loop = asyncio.get_running_loop()
        self._conn = conn = EngineControlConnection(
            requested_interval_ms=requested_interval_ms,
            timeout_ms=int(self.ctx.config.timeouts.heartbeat_timeout_seconds * 1000), now=loop.time())
        conn.accepted(self.client_id, ServerDetails(agent="portway-engine", channel="self-hosted",
                                                    version=self.ctx.version, plan="self-hosted",
                                                    provider="portway", region="local"))
        self._arm_timer()
        self.ctx.sessions.add(self)
        self._announce("client.created")
        self.ctx.counters.control_channels += 1
        agreed = conn.liveness
        log.info("control channel open: client %s agent=%s version=%s from %s (liveness %s)",
                 self.client_id, self.details.agent, self.details.version, self.peer,
                 f"{agreed[0]}ms/{agreed[1]}ms" if agreed else "legacy")
        transport.pause_reading()  # nothing is answered before the acceptance, held for webhook recording

        def accept() -> None:
            if self._closed:
                return
            self._flush()
            transport.resume_reading()
            if rest:
                self.data_received(rest)

        self.ctx.events.after_recorded(accept)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # pragma: no cover - set in start()
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self._shutdown("connection closed")

    def eof_received(self) -> bool:
        return False

    def close(self, reason: str) -> None:
        """End the channel: withdraw every tunnel and close the connection."""
        self._shutdown(reason)
        if self.transport is not None:
            self.transport.close()

    def _shutdown(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        for task in self._tasks:
            task.cancel()
        # An agent that vanished will be back: its TCP ports stay reserved for it. One that said goodbye
        # (or that the engine dropped for misbehaving) releases them.
        reserve = reason in ("connection closed", "liveness expired", "agent stopped reading", "engine shutting down")
        for tunnel in list(self.tunnels.values()):
            self._withdraw(tunnel, reserve=reserve)
        self.ctx.sessions.discard(self)
        self._announce("client.deleted")
        log.info("control channel closed: client %s (%s)", self.client_id, reason)

    # ---- I/O ----

    def _flush(self) -> None:
        """Send what the protocol core queued. Never blocks; a channel that stops draining is closed."""
        if self._conn is None or self._closed or self.transport is None or self.transport.is_closing():
            return
        data = self._conn.data_to_send()
        if not data:
            return
        self.transport.write(data)
        if self.transport.get_write_buffer_size() > MAX_CONTROL_BACKLOG_BYTES:
            log.warning("control channel %s is not reading; closing it", self.client_id)
            self.close("agent stopped reading")

    def request_stream(self, tunnel_id: str, stream_id: str, secret: str, source_ip: str | None) -> None:
        """Ask the agent for a data connection (ProxyConnReq); see broker.StreamBroker."""
        if self._conn is not None and not self._closed:
            self._conn.stream_requested(tunnel_id, stream_id, secret, source_ip)
            self._flush()

    def data_received(self, data: bytes) -> None:
        if self._closed or self._conn is None:
            return
        try:
            found = self._conn.receive_data(data, asyncio.get_running_loop().time())
        except FrameError as error:  # the byte stream is unreadable: nothing more to say on it
            log.warning("control channel %s: bad frame: %s", self.client_id, error)
            self.close("bad frame")
            return
        except WireError as error:  # readable, but not allowed: tell the agent why before closing
            log.warning("control channel %s: protocol violation: %s", self.client_id, error)
            self._conn.told(f"protocol violation: {error}")
            self._flush()
            self.close("protocol violation")
            return
        for event in found:
            self._handle(event)
        self._flush()

    # ---- liveness ----

    def _arm_timer(self) -> None:
        assert self._conn is not None
        self._timer = asyncio.get_running_loop().call_at(self._conn.deadline, self._check_liveness)

    def _check_liveness(self) -> None:
        if self._closed or self._conn is None:
            return
        if self._conn.expired(asyncio.get_running_loop().time()):
            log.warning("control channel %s: no heartbeat for %.0fs; withdrawing its routes",
                        self.client_id, self._conn.timeout_s)
            self.close("liveness expired")
            return
        self._arm_timer()

    # ---- frame handlers ----

    def _handle(self, event: events.ControlEvent) -> None:
        match event:
            case events.TunnelOpenRequested(request_id, requested):
                self._spawn(self._open_tunnel(request_id, requested))
            case events.TunnelCloseRequested(tunnel_id):
                self._close_tunnel(tunnel_id)
            case events.StreamRefused(stream_id, code, reason):
                self.ctx.broker.refuse(stream_id, self.client_id, code, reason)
            case events.ChannelCloseRequested():
                self._flush()  # the CloseControlChannelRsp goes out before the connection closes
                self.close("closed by agent")

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _open_tunnel(self, request_id: str, requested: TunnelProperties) -> None:
        self._opening += 1
        try:
            tunnel = await self._create_tunnel(requested)
        except InvalidTunnelProperties as error:
            log.info("client %s: tunnel refused: %s", self.client_id, error)
            code, reason = error.code, str(error)
            self._reply(lambda conn: conn.tunnel_refused(request_id, code, reason))
            return
        except Exception:
            log.exception("client %s: tunnel creation failed", self.client_id)
            self._reply(lambda conn: conn.tunnel_refused(request_id, ErrorCode.INTERNAL, "internal error"))
            return
        finally:
            self._opening -= 1
        self._reply(lambda conn: conn.tunnel_opened(request_id, tunnel.props))
        log.info("tunnel %s open: client %s protocol=%s publish=%s name=%s hostname=%s port=%s",
                 tunnel.id, self.client_id, tunnel.props.protocol, tunnel.props.publish,
                 tunnel.props.name, tunnel.props.hostname, tunnel.props.port)

    def _reply(self, write: Callable[[EngineControlConnection], None]) -> None:
        """Send an answer once the events published so far are recorded for webhooks (events.py), in the
        order answers were made; nothing once the channel closed."""
        def send() -> None:
            if self._conn is not None and not self._closed:
                write(self._conn)
                self._flush()

        self.ctx.events.after_recorded(send)

    async def _create_tunnel(self, requested: TunnelProperties) -> Tunnel:
        ctx = self.ctx
        if requested.protocol == "tls" and requested.tls_mode is None:
            # The engine's default (SNI routing, bytes untouched), set first so §2.5's passthrough rules apply.
            requested = requested.replace(tls_mode="passthrough")
        props = properties.normalize(requested)
        check_supported(props)
        refusal = ctx.policies.get(self.project_id).refuse_tunnel(props)
        if refusal is not None:
            raise InvalidTunnelProperties(refusal, ErrorCode.UNAUTHORIZED)
        if not may_create(self.principal, props, self.project_id, self.workspace_id):
            raise InvalidTunnelProperties("the token may not create this tunnel", ErrorCode.UNAUTHORIZED)
        policy = build_policy(props, geoip_available=ctx.geoip is not None, tokens_enforced=ctx.verifier.enabled)
        if len(self.tunnels) + self._opening > ctx.config.limits.max_tunnels_per_agent:  # opens in flight count
            raise InvalidTunnelProperties("too many tunnels on this control channel", ErrorCode.CAPACITY_EXHAUSTED)
        published_web = props.publish and props.protocol in {"http", "tls"}
        if props.hostname is not None:
            hostname = props.hostname.lower().rstrip(".")
            props = props.replace(hostname=hostname)
            if not published_web:
                raise InvalidTunnelProperties("hostname applies only to published http and tls tunnels")
            if not hostnames.is_engine_hostname(hostname, ctx.host):
                raise InvalidTunnelProperties(
                    f"hostname {hostname!r} is not served by this engine; "
                    f"use <label>.{hostnames.tunnel_suffix(ctx.host)}")
        elif published_web:
            props = props.replace(hostname=hostnames.allocate(ctx.host, ctx.registry.hostnames()))
        tls = tlsterm.create_context(props, ctx.cert_files) if tlsterm.has_own_context(props) else None
        self._resolve_conflicts(props)
        props = props.replace(id=secrets.token_hex(12), creation_date=datetime.now(UTC))
        tunnel = Tunnel(props=props, owner=self, policy=policy, tls=tls, project_id=self.project_id,
                        workspace_id=self.workspace_id)
        if props.protocol == "tcp":
            port = await ctx.ports.publish(tunnel, props.port)
            tunnel.props = props.replace(port=port, host=f"{ctx.config.tcp.listen_host}:{port}")
            try:
                self._resolve_conflicts(tunnel.props)  # again: other opens ran while the port was bound
            except InvalidTunnelProperties:
                ctx.ports.release(tunnel)
                raise
        elif published_web:
            tunnel.props = props.replace(port=ctx.public_port, host=f"{props.hostname}:{ctx.public_port}")
        if self._closed:
            ctx.ports.release(tunnel)
            raise InvalidTunnelProperties("control channel closed", ErrorCode.SERVICE_UNAVAILABLE)
        ctx.registry.add(tunnel)
        self.tunnels[tunnel.id] = tunnel
        self._announce("tunnel.created", tunnel)
        self._announce("client.updated")
        return tunnel

    def _resolve_conflicts(self, props: TunnelProperties) -> None:
        """Names, hostnames and ports are unique among live tunnels. The same credential may take
        one back (an agent reconnecting before its old channel expired); anyone else is refused."""
        for holder in self.ctx.registry.holders(props):
            if holder.owner is self or holder.owner.token_id != self.token_id:
                if props.name is not None and holder.props.name == props.name:
                    what = "name"
                elif props.hostname is not None and holder.props.hostname == props.hostname:
                    what = "hostname"
                else:
                    what = "port"
                raise InvalidTunnelProperties(f"{what} is already in use by another tunnel")
            log.info("tunnel %s taken over by client %s (same credential reconnected)", holder.id, self.client_id)
            holder.owner.retire_tunnel(holder.id)

    def _close_tunnel(self, tunnel_id: str) -> None:
        tunnel = self.tunnels.get(tunnel_id)
        if tunnel is not None:
            self._withdraw(tunnel)
            log.info("tunnel %s closed by agent", tunnel_id)
        self._reply(lambda conn: conn.tunnel_closed(tunnel_id))

    def retire_tunnel(self, tunnel_id: str) -> None:
        """Close a tunnel from the engine side and tell the agent (unsolicited CloseTunnelRsp)."""
        tunnel = self.tunnels.get(tunnel_id)
        if tunnel is None:
            return
        self._withdraw(tunnel)
        self._reply(lambda conn: conn.tunnel_closed(tunnel_id))

    def _announce(self, kind: str, tunnel: Tunnel | None = None) -> None:
        """Publish a lifecycle event about this client or one of its tunnels (events.py)."""
        view = client_view(self) if tunnel is None else tunnel_view(tunnel)
        if kind.endswith(".deleted"):
            view.status = "offline"
        self.ctx.events.publish(kind, view.model_dump(mode="json"), user_id=self.principal.subject,
                                project_id=self.project_id, workspace_id=self.workspace_id)

    def _withdraw(self, tunnel: Tunnel, *, reserve: bool = False) -> None:
        self.tunnels.pop(tunnel.id, None)
        if self.ctx.registry.remove(tunnel):
            self._announce("tunnel.deleted", tunnel)
            if not self._closed:
                self._announce("client.updated")
        self.ctx.ports.release(tunnel, reserve=reserve)
        self.ctx.broker.fail_tunnel(tunnel)

