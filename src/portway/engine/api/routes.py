"""Requests to the engine's own host → responses. Sans-IO: an `Inventory` supplies the live state and
checks credentials; nothing here touches a socket, so both HTTP edges share it and tests call it directly.

Routes are (method, path template) → handler; other modules add theirs with `route()` (webhooks.py).
The token comes from `Authorization: Bearer`; the `rstream.token` query parameter is read only on the
streaming endpoints (a token in a URL ends up in logs and histories). Errors are `{"error", "status"}`
JSON, never echoing the credential; a refused token is also logged once, with its reason. The streaming
endpoints answer with a `WatchRequest` that the edge turns into a live stream (watch.py).

A handler may be a coroutine function (the admin routes, which wait on the database): `answer` then
returns a `Pending` coroutine, already bound to its refusal handling, that the edge runs as a task and
answers from when it completes; routes that answer at once stay synchronous and cost no task.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import BaseModel, ValidationError

from portway.engine.api.openapi import openapi_document
from portway.engine.api.tokens import MintRefused, MintRequest, MintResponse, derive
from portway.engine.api.views import AuthView, ClientView, Discovery, ErrorBody, TunnelView
from portway.engine.auth import Principal
from portway.engine.authorize import client_visible, visible
from portway.engine.filters import FilterError, compile_filter
from portway.engine.policy import bearer_token
from portway.errors import AuthError

MAX_PARAMS_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024
MAX_LIMIT = 10_000
MAX_LOGGED_PATH = 256
TUNNEL_FILTER_FIELDS = frozenset({"id", "name", "type", "status", "client_id", "user_id", "protocol", "hostname",
                                  "publish", "http_version", "labels", "host", "port", "project_id"})
CLIENT_FILTER_FIELDS = frozenset({"id", "status", "user_id", "agent", "channel", "version", "os", "arch",
                                  "protocol_version", "labels", "project_id"})
CAPABILITIES = ("engine-api", "tunnels", "clients", "openapi", "signaling-sse", "signaling-websocket",
                "stream-summaries", "webhooks")
Query = dict[str, list[str]]
M = TypeVar("M", bound=BaseModel)
Predicate = Callable[[dict[str, Any]], bool]
log = logging.getLogger("portway.engine.api")


class Inventory(Protocol):
    """What the API reads from the engine."""

    host: str
    version: str

    def verify(self, token: str | None) -> Principal: ...

    def tunnels(self) -> list[TunnelView]: ...

    def tunnel_count(self) -> int: ...

    def clients(self) -> list[ClientView]: ...

    def issue(self, *, subject: str, ttl_s: int, extra: dict[str, object]) -> str:
        """A token signed by this engine (AuthError when it does not use tokens or forbids minting)."""
        ...

    def service(self, name: str) -> object | None:
        """An optional engine service by name (e.g. "webhooks"), None when the engine runs without it."""
        ...


@dataclass(frozen=True, slots=True)
class ApiResponse:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    cache: str = "no-store"


@dataclass(frozen=True, slots=True)
class WatchRequest:
    """An accepted request for `/api/sse` or `/api/websocket`: the edge starts the stream."""

    transport: str  # "sse" or "websocket"
    principal: Principal
    tunnels: Predicate
    clients: Predicate
    events: frozenset[str] | None  # None: every lifecycle event
    summaries: bool  # stream.summary events too (opt-in)


class Refusal(Exception):
    """An error answer: status, message, extra headers."""

    def __init__(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


@dataclass(slots=True)
class Call:
    """What a handler gets: the inventory, the caller, path parameters, the query and the body."""

    inventory: Inventory
    principal: Principal
    params: dict[str, str]
    query: Query
    body: bytes = b""


Handler = Callable[[Call], "ApiResponse | WatchRequest | Awaitable[ApiResponse]"]
Pending = Coroutine[object, object, ApiResponse]
"""An answer still being worked out (an async handler's); awaiting it never raises."""


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    query_token: bool = False


_routes: list[_Route] = []


def route(method: str, template: str, *, query_token: bool = False) -> Callable[[Handler], Handler]:
    """Register `handler` for `method` on `template` (`{name}` matches one path segment)."""
    pattern = re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$")

    def add(handler: Handler) -> Handler:
        _routes.append(_Route(method, pattern, handler, query_token))
        return handler
    return add


def answer(inventory: Inventory, method: str, target: str, authorization: bytes | None, *,
           secure: bool = True, body: bytes = b"",
           source_ip: str | None = None) -> ApiResponse | WatchRequest | Pending:
    """The response to one request for the engine's own host; `secure` is False on the cleartext listener,
    where only the health endpoint answers (tokens are not sent in clear). A `Pending` answer must be
    awaited (or closed) by the caller. `source_ip` is only for the log line of a refused token."""
    try:
        parts = urlsplit(target)
        path = unquote(parts.path)
        if method == "GET" and path in ("/healthz", "/api/health"):
            return _json({"status": "ok", "version": inventory.version, "tunnels": inventory.tunnel_count()})
        if not secure:
            raise Refusal(403, "the Engine API is served over https only")
        if method == "GET" and path == "/.well-known/rstream/engine":
            return _model(Discovery(engine=inventory.host, product_version=inventory.version,
                                    capabilities=list(CAPABILITIES)), cache="max-age=300")
        if method == "GET" and path == "/api/openapi.json":
            return _json(openapi_document(inventory.version))
        # Routes match the path as sent, so a parameter may hold an encoded `/` (`acme%2Fweb`, a subject with a
        # slash); each parameter is decoded on its own below.
        matches = [(r, m) for r in _routes if (m := r.pattern.match(parts.path)) is not None]
        if not matches:
            raise Refusal(404, "unknown engine endpoint")
        chosen = next(((r, m) for r, m in matches if r.method == method), None)
        if chosen is None:
            allow = ", ".join(sorted({r.method for r, _ in matches}))
            raise Refusal(405, f"use {allow} here", (("Allow", allow),))
        handler, found = chosen
        try:
            query = parse_qs(parts.query, max_num_fields=16)
        except ValueError:
            raise Refusal(400, "too many query parameters") from None
        if authorization is None and handler.query_token:
            token = query.get("rstream.token", [None])[-1]
            authorization = f"Bearer {token}".encode() if token else None
        principal = _principal(inventory, authorization, f"{method} {parts.path[:MAX_LOGGED_PATH]}", source_ip)
        params = {name: unquote(value) for name, value in found.groupdict().items()}
        result = handler.handler(Call(inventory, principal, params, query, body))
        if inspect.isawaitable(result):
            return _settle(result)
        return result
    except Refusal as refusal:
        return error(refusal.status, refusal.message, refusal.headers)


async def _settle(pending: Awaitable[ApiResponse]) -> ApiResponse:
    """An async handler's answer, with its refusals (and failures, logged) turned into error answers."""
    try:
        return await pending
    except Refusal as refusal:
        return error(refusal.status, refusal.message, refusal.headers)
    except Exception:
        log.exception("engine API handler failed")
        return error(500, "the engine failed to answer this request")


def error(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> ApiResponse:
    body = ErrorBody(error=message, status=status).model_dump_json().encode()
    return ApiResponse(status, body, headers=headers)


def _principal(inventory: Inventory, authorization: bytes | None, request: str, source_ip: str | None) -> Principal:
    """The caller, or a 401 whose reason is also logged, once per request (both HTTP edges answer through here).

    The line names the request (method and path, never the query: `rstream.token` travels there) and the
    source, as agentconn.py logs a refused agent: a WARNING when a credential was presented and refused,
    INFO when none was (a client that has not authenticated yet is not worth a warning)."""
    token = bearer_token(authorization)
    if authorization is not None and token is None:
        log.warning("engine API %s from %s refused: the Authorization header is not 'Bearer <token>'",
                    request, source_ip)
        raise Refusal(401, "the Authorization header must be 'Bearer <token>'", _CHALLENGE)
    try:
        return inventory.verify(token)
    except AuthError as failure:
        log.log(logging.INFO if token is None else logging.WARNING, "engine API %s from %s refused: %s",
                request, source_ip, failure)
        raise Refusal(401, str(failure), _CHALLENGE) from None


_CHALLENGE = (("WWW-Authenticate", 'Bearer realm="portway"'),)


@route("GET", "/api/auth")
def _auth(call: Call) -> ApiResponse:
    principal = call.principal
    kind = principal.claims.get("type")
    expires = datetime.fromtimestamp(principal.expires_at, UTC) if principal.expires_at else None
    return _model(AuthView(subject=principal.subject, type=kind if isinstance(kind, str) else None,
                           expires_at=expires))


def visible_tunnels(inventory: Inventory, principal: Principal) -> list[dict[str, Any]]:
    """The live tunnels `principal` may list, as it may see them (`select` projections applied)."""
    shown = (visible(principal, t.model_dump(mode="json")) for t in inventory.tunnels())
    return [t for t in shown if t is not None]


def visible_clients(inventory: Inventory, principal: Principal,
                    tunnels: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The connected agents `principal` may list (authorize.client_visible)."""
    shown = tunnels if tunnels is not None else visible_tunnels(inventory, principal)
    owners = {str(t.get("client_id")) for t in shown}
    records = (c.model_dump(mode="json") for c in inventory.clients())
    return [c for c in records if client_visible(principal, c, owners)]


@route("GET", "/api/tunnels")
def _tunnels(call: Call) -> ApiResponse:
    return _listing(visible_tunnels(call.inventory, call.principal), call.query, TUNNEL_FILTER_FIELDS)


@route("GET", "/api/clients")
def _clients(call: Call) -> ApiResponse:
    return _listing(visible_clients(call.inventory, call.principal), call.query, CLIENT_FILTER_FIELDS)


@route("GET", "/api/tunnels/{id}")
def _one_tunnel(call: Call) -> ApiResponse:
    for tunnel in visible_tunnels(call.inventory, call.principal):
        if tunnel.get("id") == call.params["id"]:
            return json_response(tunnel)
    raise Refusal(404, "no live tunnel has this id")


@route("POST", "/api/tokens")
def _mint(call: Call) -> ApiResponse:
    request = parse_body(MintRequest, call.body)
    now = time.time()
    try:
        ttl, claims = derive(call.principal, request, now=now, engine=call.inventory.host)
        token = call.inventory.issue(subject=call.principal.subject, ttl_s=ttl, extra=claims)
    except MintRefused as failure:
        raise Refusal(403, str(failure)) from None
    except ValueError as failure:
        raise Refusal(400, str(failure)) from None
    except AuthError as failure:
        raise Refusal(403, str(failure)) from None
    return _model(MintResponse(token=token, expires_at=int(now) + ttl))


def parse_body(model: type[M], body: bytes) -> M:
    """A JSON request body as `model`; a 400 naming the first offending field otherwise."""
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as failure:
        first = failure.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise Refusal(400, f"{where}: {first['msg']}") from None


def _watch(call: Call, transport: str) -> WatchRequest:
    params = json_param(call.query)
    if set(params) - {"tunnels", "clients", "events", "summaries"}:
        raise Refusal(400, "params takes 'tunnels', 'clients', 'events' and 'summaries'")
    try:
        tunnels = compile_filter(params.get("tunnels") or {}, TUNNEL_FILTER_FIELDS)
        clients = compile_filter(params.get("clients") or {}, CLIENT_FILTER_FIELDS)
    except FilterError as failure:
        raise Refusal(400, f"params: {failure}") from None
    events = params.get("events")
    if events is not None and (not isinstance(events, list) or not all(isinstance(e, str) for e in events)):
        raise Refusal(400, "params.events must be a list of event types")
    summaries = params.get("summaries", False)
    if not isinstance(summaries, bool):
        raise Refusal(400, "params.summaries must be true or false")
    return WatchRequest(transport, call.principal, tunnels, clients, frozenset(events) if events else None,
                        summaries)


@route("GET", "/api/sse", query_token=True)
def _sse(call: Call) -> WatchRequest:
    return _watch(call, "sse")


@route("GET", "/api/websocket", query_token=True)
def _websocket(call: Call) -> WatchRequest:
    return _watch(call, "websocket")


def json_param(query: Query) -> dict[str, Any]:
    """The `params` query parameter as a JSON object ({} when absent); 400 when malformed."""
    raw = query.get("params", [""])[-1]
    if not raw:
        return {}
    if len(raw) > MAX_PARAMS_BYTES:
        raise Refusal(400, "params is too large")
    try:
        params = json.loads(raw)
    except ValueError:
        raise Refusal(400, "params must be JSON") from None
    if not isinstance(params, dict):
        raise Refusal(400, "params must be a JSON object")
    return params


def list_params(query: Query, fields: frozenset[str]) -> tuple[Predicate, int]:
    """(`params.filters` as a predicate, `params.limit`) from a query string; 400 on anything malformed."""
    params = json_param(query)
    if set(params) - {"filters", "limit"}:
        raise Refusal(400, "params takes an object with 'filters' and 'limit'")
    limit = params.get("limit", MAX_LIMIT)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise Refusal(400, f"params.limit must be an integer from 1 to {MAX_LIMIT}")
    try:
        match = compile_filter(params.get("filters") or {}, fields)
    except FilterError as failure:
        raise Refusal(400, f"params.filters: {failure}") from None
    return match, limit


def _listing(records: Sequence[dict[str, Any]], query: Query, fields: frozenset[str]) -> ApiResponse:
    match, limit = list_params(query, fields)
    out: list[dict[str, Any]] = []
    for record in records:
        if match(record):
            out.append(record)
            if len(out) >= limit:
                break
    return json_response(out)


def _model(model: BaseModel, cache: str = "no-store") -> ApiResponse:
    return ApiResponse(200, model.model_dump_json().encode(), cache=cache)


def model_response(model: BaseModel, status: int = 200) -> ApiResponse:
    return ApiResponse(status, model.model_dump_json().encode())


def json_response(value: object, status: int = 200) -> ApiResponse:
    return ApiResponse(status, json.dumps(value, separators=(",", ":")).encode())


_json = json_response
