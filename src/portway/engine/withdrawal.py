"""Revocation reaches live connections: after every credential reload (an admin change here, or the periodic
refresh that sees another engine's), each open control channel and signaling stream is checked again with
`AccessVerifier.withdrawn`, and those whose token or credential was revoked, or whose user was disabled, are
closed — their tunnels withdrawn — instead of living on until they happen to reconnect. (Visitors' token_auth
re-checks at each request: policy.TokenMemo.)"""

from __future__ import annotations

import logging

from portway.engine.context import EngineContext

log = logging.getLogger("portway.engine.access")


def close_withdrawn(ctx: EngineContext) -> int:
    """Close what may no longer stay open; how many were closed (each logged once, with the reason)."""
    closed = 0
    for session in list(ctx.sessions):
        reason = ctx.access.withdrawn(session.principal)
        if reason is not None:
            log.warning("control channel %s of %s closed: %s", session.client_id, session.principal.subject, reason)
            session.close(reason)
            closed += 1
    for watcher in list(ctx.watchers):
        reason = ctx.access.withdrawn(watcher.principal)
        if reason is not None:
            log.warning("signaling stream of %s closed: %s", watcher.principal.subject, reason)
            watcher.close(reason)
            closed += 1
    return closed
