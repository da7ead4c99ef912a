"""The one place a visitor connection becomes a tunnel stream: check the tunnel's edge policy, ask the
broker, then splice."""

from __future__ import annotations

import asyncio
import logging

from portway.engine.accesspolicy import CompiledPolicy
from portway.engine.broker import StreamFailed
from portway.engine.context import EngineContext
from portway.engine.policy import TokenMemo
from portway.engine.registry import Tunnel
from portway.pipe import Pipe, splice
from portway.wire.codes import ErrorCode

log = logging.getLogger("portway.engine.edge")


def project_policy(ctx: EngineContext, tunnel: Tunnel) -> CompiledPolicy:
    """The access policy of the project `tunnel` belongs to (accesspolicy.py)."""
    return ctx.policies.get(tunnel.owner.principal.project_id)


def refused_address(ctx: EngineContext, tunnel: Tunnel, source_ip: str | None) -> str | None:
    """The network control that refuses this visitor — the project's policy, then the tunnel's own
    trusted_ips/geoip — counted and logged; else None."""
    country_of = ctx.geoip.country if ctx.geoip is not None else None
    reason = project_policy(ctx, tunnel).refuse_visitor(tunnel.props, source_ip, country_of)
    if reason is None and tunnel.policy is not None:
        reason = tunnel.policy.refuses(source_ip, country_of)
    if reason is not None:
        count_denial(ctx, tunnel, reason, source_ip)
    return reason


def refused_tls(ctx: EngineContext, tunnel: Tunnel | None, version: str | None, source_ip: str | None) -> bool:
    """Whether the project's `min_tls_version` refuses a visitor that negotiated `version` (counted, logged)."""
    if tunnel is None or not project_policy(ctx, tunnel).tls_too_old(version):
        return False
    count_denial(ctx, tunnel, "project_min_tls_version", source_ip)
    return True


def failure_page(error: StreamFailed) -> tuple[int, str]:
    """The status and text a visitor reads when no stream could be opened: 503 when the tunnel's agent is
    gone or saturated, 504 when it did not answer in time, 502 when it could not reach its service."""
    if error.code in (ErrorCode.TUNNEL_NOT_FOUND, ErrorCode.CAPACITY_EXHAUSTED):
        return 503, "the tunnel's agent is unavailable"
    if error.code == ErrorCode.SERVICE_UNAVAILABLE and "in time" in error.reason:
        return 504, "the tunnel's agent did not answer in time"
    return 502, "the agent could not reach the service behind this tunnel"


def token_memo(ctx: EngineContext) -> TokenMemo:
    """A per-connection token_auth memo backed by the engine's token verifier."""
    return TokenMemo(lambda token, now: ctx.verifier.verify(token, now).expires_at)


def count_denial(ctx: EngineContext, tunnel: Tunnel, reason: str, source_ip: str | None) -> None:
    counters = ctx.counters
    counters.count(counters.policy_denials, (tunnel.props.protocol or "", reason))
    log.info("tunnel %s: visitor %s refused by %s", tunnel.id, source_ip, reason)


async def connect_visitor(ctx: EngineContext, tunnel: Tunnel, visitor: Pipe, source_ip: str | None) -> None:
    """Open a stream of `tunnel` for `visitor` (paused until then) and splice them; close it on refusal
    or failure, before any of its bytes are read."""
    if refused_address(ctx, tunnel, source_ip) is not None:
        visitor.close()
        return
    try:
        agent = await ctx.broker.open_stream(tunnel, source_ip)
    except StreamFailed as error:
        log.info("tunnel %s: stream for %s failed: %s", tunnel.id, source_ip, error.reason)
        visitor.close()
        return
    except asyncio.CancelledError:  # engine shutdown while the agent was still to answer
        visitor.close()
        raise
    splice(visitor, agent)
    ctx.streams.add(visitor, agent)
