"""A signaling subscriber (§4.2), sans-IO: the `state.initial` snapshot, then each matching event, encoded
for Server-Sent Events or WebSocket text messages. The edges' adapters (edges/watchstream.py) carry the
bytes and enforce the buffer bound; this module decides what is sent.

Consistency: `start()` takes the snapshot and subscribes to the bus in one synchronous call, so no event
can fall between them (none lost, none duplicated).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from websockets.frames import Close, Frame, Opcode
from websockets.protocol import Protocol, Side

from portway.engine.api.routes import Inventory, WatchRequest, visible_clients, visible_tunnels
from portway.engine.auth import Principal
from portway.engine.authorize import client_visible, unrestricted, visible
from portway.engine.events import CLIENT_EVENTS, SUMMARY_EVENT, TUNNEL_EVENTS, EngineEvent, EventBus

SSE_KEEPALIVE = b": keepalive\n\n"
MAX_CLIENT_MESSAGE_BYTES = 64 * 1024
SLOW_CONSUMER = "the client did not keep up with the event stream"


def summary_tunnel(event: EngineEvent, obj: dict[str, Any], shown: dict[str, Any] | None = None) -> dict[str, Any]:
    """The tunnel record a summary (`obj`, as the subscriber sees it) is matched against by tunnel filters:
    the routed tunnel's id, name, protocol, hostname and labels, its client and owner (a stream that was not
    routed has only nulls). `shown`: the tunnel as a restricted subscriber may see it; its client and owner
    are left out when `select` hides them, so a filter cannot probe them summary by summary."""
    routed = (obj.get("routing") or {}).get("routed") or {}
    record = {"id": obj.get("tunnel_id"), "client_id": obj.get("client_id"), "user_id": event.user_id,
              **(routed.get("tunnel") or {})}
    if shown is not None:
        for key in ("client_id", "user_id"):
            if key not in shown:
                record.pop(key, None)
    return record


class Watch:
    """Filters and encodes events for one subscriber; `send` receives encoded bytes to write."""

    def __init__(self, request: WatchRequest, inventory: Inventory, bus: EventBus,
                 send: Callable[[bytes], None]) -> None:
        self.request = request
        self._inventory = inventory
        self._bus = bus
        self._send = send
        self._unsubscribe: Callable[[], None] | None = None
        self.ws = Protocol(Side.SERVER, max_size=MAX_CLIENT_MESSAGE_BYTES) if request.transport == "websocket" \
            else None
        self.closed = False
        self.sent_events = 0

    def start(self) -> None:
        """Send the snapshot and follow the bus from the same instant."""
        tunnels = visible_tunnels(self._inventory, self.request.principal)
        clients = visible_clients(self._inventory, self.request.principal, tunnels)
        snapshot = {"snapshot_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                    "clients": [c for c in clients if self.request.clients(c)],
                    "tunnels": [t for t in tunnels if self.request.tunnels(t)]}
        self._emit({"id": None, "type": "state.initial", "created_at": snapshot["snapshot_at"], "object": snapshot},
                   "state.initial", None)
        self._unsubscribe = self._bus.subscribe(self.offer)

    def offer(self, event: EngineEvent) -> None:
        """An event from the bus: sent when this subscriber wants it and may see it (as it may see it)."""
        if self.closed or not self.wants(event):
            return
        envelope = event.envelope()
        principal = self.request.principal
        if event.type in TUNNEL_EVENTS:
            # The caller's filter reads the tunnel as the caller sees it (as in the snapshot): a filter on a
            # field `select` hides must not tell, event by event, what that field holds.
            shown = visible(principal, event.object)
            if shown is None or not self.request.tunnels(shown):
                return
            envelope["object"] = shown
            if shown is not event.object:  # projected by `select`
                _hide_in_envelope(envelope, shown)
        elif event.type in CLIENT_EVENTS:
            owners = {str(t.get("client_id")) for t in visible_tunnels(self._inventory, principal)} \
                if not unrestricted(principal) else set()
            if not client_visible(principal, event.object, owners):
                return
        else:
            summary, tunnel = (event.object, None) if unrestricted(principal) else \
                visible_summary(self._inventory, principal, event.object)
            if summary is None or not self.request.tunnels(summary_tunnel(event, summary, tunnel)):
                return
            envelope["object"] = summary
            if tunnel is not None:
                _hide_in_envelope(envelope, tunnel)
        self._emit(envelope, event.type, event.id)

    def wants(self, event: EngineEvent) -> bool:
        request = self.request
        if event.type == SUMMARY_EVENT:
            return request.summaries  # filtered in `offer`, on what the subscriber may see
        if request.events is not None and event.type not in request.events:
            return False
        if event.type in TUNNEL_EVENTS:
            return True  # filtered in `offer`, on what the subscriber may see
        if event.type in CLIENT_EVENTS:
            return request.clients(event.object)
        return False

    def keepalive(self) -> None:
        """SSE: a comment line; WebSocket: a ping (the client's pong proves it is alive)."""
        if self.closed:
            return
        if self.ws is None:
            self._send(SSE_KEEPALIVE)
        else:
            self.ws.send_ping(b"portway")
            self._flush_ws()

    def received(self, data: bytes) -> None:
        """Bytes from the client: WebSocket control frames (ping, pong, close); SSE clients send nothing."""
        if self.ws is None or self.closed:
            return
        self.ws.receive_data(data)
        for frame in self.ws.events_received():
            if isinstance(frame, Frame) and frame.opcode is Opcode.CLOSE:
                self.closed = True
        self._flush_ws()
        if self.ws.close_expected():
            self.stop()

    def fail(self, reason: str) -> None:
        """End the stream with a reason the client can read (a final comment, or a WebSocket close 1008)."""
        if self.closed:
            return
        self.closed = True  # first: what is sent below must not re-enter through the writer's buffer check
        if self.ws is None:
            self._send(f": disconnected: {reason}\n\n".encode())
        else:
            self.ws.send_close(Close(1008, reason[:120]).code, reason[:120])
            self._flush_ws()
        self.stop()

    def stop(self) -> None:
        """Leave the bus (nothing more is sent)."""
        self.closed = True
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _emit(self, envelope: dict[str, Any], kind: str, event_id: str | None) -> None:
        data = json.dumps(envelope, separators=(",", ":"))
        self.sent_events += 1
        if self.ws is None:
            head = f"id: {event_id}\n" if event_id else ""
            self._send(f"{head}event: {kind}\ndata: {data}\n\n".encode())
        else:
            self.ws.send_text(data.encode())
            self._flush_ws()

    def _flush_ws(self) -> None:
        assert self.ws is not None
        for chunk in self.ws.data_to_send():
            if chunk:
                self._send(chunk)


def visible_summary(inventory: Inventory, principal: Principal,
                    summary: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """A stream summary for a restricted credential: only about a live tunnel it may list, and showing of
    that tunnel only the fields its `select` lets it see; with that tunnel as the credential sees it."""
    tunnel_id = summary.get("tunnel_id")
    shown = next((t for t in visible_tunnels(inventory, principal) if t.get("id") == tunnel_id), None)
    if shown is None:
        return None, None
    routed = (summary.get("routing") or {}).get("routed")
    if not routed or not isinstance(routed.get("tunnel"), dict):
        return summary, shown
    tunnel = {k: v for k, v in routed["tunnel"].items() if k in shown}
    return {**summary, "routing": {**summary["routing"], "routed": {**routed, "tunnel": tunnel}}}, shown


def _hide_in_envelope(envelope: dict[str, Any], shown: dict[str, Any]) -> None:
    """The envelope's `user_id`, `workspace_id` and `project_id` are fields of the tunnel too: one that
    `select` keeps out of the subscriber's view of the tunnel is nulled here as well."""
    for key in ("user_id", "workspace_id", "project_id"):
        if key not in shown:
            envelope[key] = None
