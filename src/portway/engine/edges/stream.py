"""The one place a visitor connection becomes a tunnel stream: check the tunnel's edge policy, ask the
broker, then splice."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from portway.engine import summaries
from portway.engine.accesspolicy import CompiledPolicy
from portway.engine.auth import Principal
from portway.engine.broker import StreamFailed, new_stream_id
from portway.engine.context import EngineContext
from portway.engine.events import SUMMARY_EVENT
from portway.engine.policy import TokenMemo, parse_address
from portway.engine.registry import Tunnel
from portway.errors import AuthError
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


# The page of a TLS visitor refused by `min_tls_version`, whichever way its tunnel was found (SNI or Host).
TLS_TOO_OLD = (426, "this tunnel needs a newer TLS version")
TLS_DENIAL = "project_min_tls_version"


def refused_tls(ctx: EngineContext, tunnel: Tunnel | None, version: str | None, source_ip: str | None) -> bool:
    """Whether the project's `min_tls_version` refuses a visitor that negotiated `version` (counted, logged).
    `version` is None without TLS (the cleartext listener): below any minimum."""
    if tunnel is None or not project_policy(ctx, tunnel).tls_too_old(version):
        return False
    count_denial(ctx, tunnel, TLS_DENIAL, source_ip)
    return True


def tls_version(transport: asyncio.BaseTransport | None) -> str | None:
    """The TLS version a visitor's connection negotiated (`ssl.SSLObject.version()`), None in cleartext."""
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    return ssl_object.version() if ssl_object is not None else None


def failure_page(error: StreamFailed) -> tuple[int, str]:
    """The status and text a visitor reads when no stream could be opened: 503 when the tunnel's agent is
    gone or saturated, 504 when it did not answer in time, 502 when it could not reach its service."""
    if error.code in (ErrorCode.TUNNEL_NOT_FOUND, ErrorCode.CAPACITY_EXHAUSTED):
        return 503, "the tunnel's agent is unavailable"
    if error.code == ErrorCode.SERVICE_UNAVAILABLE and "in time" in error.reason:
        return 504, "the tunnel's agent did not answer in time"
    return 502, "the agent could not reach the service behind this tunnel"


def failure_kind(error: StreamFailed) -> summaries.FailureKind:
    """A broker failure as a summary's not_routed failure kind."""
    if error.code == ErrorCode.TUNNEL_NOT_FOUND:
        return "not_found"
    if error.code == ErrorCode.SERVICE_UNAVAILABLE and "in time" in error.reason:
        return "timeout"
    return "refused"


def summary_draft(ctx: EngineContext, transport: asyncio.BaseTransport | None, source_ip: str | None,
                  started: float, tunnel: Tunnel | None = None) -> summaries.Draft:
    """A stream's first facts: the visitor (address, country, TLS when the engine terminated it)."""
    address = parse_address(source_ip) if ctx.geoip is not None else None
    country = ctx.geoip.country(address) if ctx.geoip is not None and address is not None else None
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    downstream = summaries.downstream(source_ip, country, ssl_object)
    return summaries.Draft(new_stream_id(), started, downstream, tunnel=tunnel)


def http_draft(ctx: EngineContext, transport: asyncio.BaseTransport | None, source_ip: str | None, started: float, *,
               protocol: summaries.HttpProtocol, request: dict[str, Any]) -> summaries.Draft:
    """`summary_draft` of one HTTP request (both HTTP edges)."""
    draft = summary_draft(ctx, transport, source_ip, started)
    draft.http = {"protocol": protocol, "request": request}
    return draft


def publish_summary(ctx: EngineContext, draft: summaries.Draft, outcome: summaries.Outcome) -> None:
    """Publish a finished stream's summary, to the tunnel owner's subject, if a watch still wants it."""
    if not ctx.summary_watchers:
        return
    owner = draft.tunnel.owner.principal.subject if draft.tunnel is not None else None
    ctx.events.publish(SUMMARY_EVENT, summaries.summarize(draft, outcome, wall_now=time.time()), user_id=owner)


def publish_refusal(ctx: EngineContext, tunnel: Tunnel, transport: asyncio.BaseTransport | None,
                    source_ip: str | None, reason: str) -> None:
    """The summary of a connection refused by `tunnel`'s policy (`reason`) before any stream existed."""
    if not ctx.summary_watchers:
        return
    now = asyncio.get_running_loop().time()
    draft = summary_draft(ctx, transport, source_ip, now, tunnel)
    draft.denied = reason
    publish_summary(ctx, draft, summaries.Outcome(now, 0, 0, "engine", f"refused by {reason}", routed=False))


def publish_http_summary(ctx: EngineContext, draft: summaries.Draft, ended: float, *, status: int, request_bytes: int,
                         response_bytes: int, by: summaries.By, error: str | None) -> None:
    """Publish one HTTP request's summary (both HTTP edges): routed when it reached the agent's stream,
    failed when it ended with an error (the edge's page, a broken response, the visitor leaving) — then
    `by` ended it; a request answered in full was ended by the agent's response."""
    outcome = summaries.Outcome(ended, request_bytes, response_bytes, by if error else "agent", error, status,
                                routed=draft.established is not None and draft.denied is None,
                                failed=error is not None)
    publish_summary(ctx, draft, outcome)


def token_memo(ctx: EngineContext) -> TokenMemo:
    """A per-connection token_auth memo backed by the engine's token verifier."""
    return TokenMemo(ctx.access.verify, ctx.access.withdrawn)


def count_denial(ctx: EngineContext, tunnel: Tunnel, reason: str, source_ip: str | None,
                 detail: str | None = None, *, level: int = logging.INFO) -> None:
    """Count and log (one line) a visitor refused by the policy control `reason`; `detail` says why, when
    the control has more to say (token_auth: the token's refusal reason, which never quotes it)."""
    counters = ctx.counters
    counters.count(counters.policy_denials, (tunnel.props.protocol or "", reason))
    if detail is None:
        log.log(level, "tunnel %s: visitor %s refused by %s", tunnel.id, source_ip, reason)
    else:
        log.log(level, "tunnel %s: visitor %s refused by %s: %s", tunnel.id, source_ip, reason, detail)


NOT_PERMITTED = "the token may not connect to this tunnel or path"
"""token_auth's log detail for a valid token whose grant does not reach the tunnel (or the request's path)."""


def token_principal(ctx: EngineContext, tokens: TokenMemo, tunnel: Tunnel, token: str | None,
                    source_ip: str | None) -> Principal | None:
    """token_auth: who `token` speaks for, or None after counting and logging (once) why there is none.

    A token presented and refused is a WARNING with the verifier's reason, as agentconn.py logs an agent's;
    a request without one is INFO ("no token"): browsers and probes send none, and would drown the rest."""
    if token is None:
        count_denial(ctx, tunnel, "token_auth", source_ip, "no token")
        return None
    try:
        return tokens.principal(token)
    except AuthError as error:
        count_denial(ctx, tunnel, "token_auth", source_ip, f"token refused: {error}", level=logging.WARNING)
        return None


async def connect_visitor(ctx: EngineContext, tunnel: Tunnel, visitor: Pipe, source_ip: str | None) -> None:
    """Open a stream of `tunnel` for `visitor` (paused until then) and splice them; close it on refusal
    or failure, before any of its bytes are read."""
    refusal = refused_address(ctx, tunnel, source_ip)
    if refusal is not None:
        publish_refusal(ctx, tunnel, visitor.transport, source_ip, refusal)
        visitor.close()
        return
    loop = asyncio.get_running_loop()
    draft = summary_draft(ctx, visitor.transport, source_ip, loop.time(), tunnel) if ctx.summary_watchers else None
    try:  # a summary's stream id is the one the agent is asked for
        agent = await ctx.broker.open_stream(tunnel, source_ip, draft.stream_id if draft is not None else None)
    except StreamFailed as error:
        log.info("tunnel %s: stream for %s failed: %s", tunnel.id, source_ip, error.reason)
        visitor.close()
        if draft is not None:
            draft.failure = failure_kind(error)
            publish_summary(ctx, draft, summaries.Outcome(loop.time(), visitor.bytes_in, 0, "engine", error.reason,
                                                          routed=False))
        return
    except asyncio.CancelledError:  # engine shutdown while the agent was still to answer
        visitor.close()
        raise
    splice(visitor, agent)
    if draft is None:
        ctx.streams.add(visitor, agent)
        return
    draft.established = loop.time()

    def ended() -> None:  # the visitor's side closed: the relay is over
        by: summaries.By = "agent" if agent.closed else "visitor"
        publish_summary(ctx, draft, summaries.Outcome(loop.time(), visitor.bytes_in, agent.bytes_in, by, "closed"))

    ctx.streams.add(visitor, agent, on_end=ended)
