"""Requests to the engine's own host → responses. Sans-IO: an `Inventory` supplies the live state and
checks credentials; nothing here touches a socket, so both HTTP edges share it and tests call it directly.

GET everywhere, POST to mint a derived token (tokens.py). The token comes from `Authorization: Bearer`;
the `rstream.token` query parameter is for the streaming endpoints only (a token in a URL ends up in logs
and histories), so it is not read here. Errors are `{"error", "status"}` JSON, never echoing the credential.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import BaseModel, ValidationError

from portway.engine.api.openapi import openapi_document
from portway.engine.api.tokens import MintRefused, MintRequest, MintResponse, derive
from portway.engine.api.views import AuthView, ClientView, Discovery, ErrorBody, TunnelView
from portway.engine.auth import Principal
from portway.engine.filters import FilterError, compile_filter
from portway.engine.policy import bearer_token
from portway.errors import AuthError

MAX_PARAMS_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024
MAX_LIMIT = 10_000
TUNNEL_FILTER_FIELDS = frozenset({"id", "name", "type", "status", "client_id", "user_id", "protocol", "hostname",
                                  "publish", "http_version", "labels", "host", "port", "project_id"})
CLIENT_FILTER_FIELDS = frozenset({"id", "status", "user_id", "agent", "channel", "version", "os", "arch",
                                  "protocol_version", "labels", "project_id"})
CAPABILITIES = ("engine-api", "tunnels", "clients", "openapi")


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


@dataclass(frozen=True, slots=True)
class ApiResponse:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    cache: str = "no-store"


class _Refusal(Exception):
    def __init__(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def is_api_target(target: bytes) -> bool:
    """Whether a request target on the engine host is the API's (else the edge answers it itself)."""
    return target.startswith((b"/api/", b"/.well-known/rstream/"))


def answer(inventory: Inventory, method: str, target: str, authorization: bytes | None, *,
           secure: bool = True, body: bytes = b"") -> ApiResponse:
    """The response to one request for the engine's own host; `secure` is False on the cleartext listener,
    where only the health endpoint answers (tokens are not sent in clear)."""
    try:
        parts = urlsplit(target)
        path = unquote(parts.path)
        if path == "/api/tokens":
            if method != "POST":
                raise _Refusal(405, "use POST to mint a token", (("Allow", "POST"),))
            return _mint(inventory, _principal(inventory, authorization), body)
        if method != "GET":
            raise _Refusal(405, "only GET is supported here", (("Allow", "GET"),))
        if path in ("/healthz", "/api/health"):
            return _json({"status": "ok", "version": inventory.version, "tunnels": inventory.tunnel_count()})
        if not secure:
            raise _Refusal(403, "the Engine API is served over https only")
        if path == "/.well-known/rstream/engine":
            return _model(Discovery(engine=inventory.host, product_version=inventory.version,
                                    capabilities=list(CAPABILITIES)), cache="max-age=300")
        if path == "/api/openapi.json":
            return _json(openapi_document(inventory.version))
        route = _ROUTES.get(path)
        if route is None and path.startswith("/api/tunnels/") and path.count("/") == 3:
            route = _one_tunnel
        if route is None:
            raise _Refusal(404, "unknown engine endpoint")
        principal = _principal(inventory, authorization)
        try:
            query = parse_qs(parts.query, max_num_fields=16)
        except ValueError:
            raise _Refusal(400, "too many query parameters") from None
        return route(inventory, principal, path, query)
    except _Refusal as refusal:
        body = ErrorBody(error=refusal.message, status=refusal.status).model_dump_json().encode()
        return ApiResponse(refusal.status, body, headers=refusal.headers)


def _principal(inventory: Inventory, authorization: bytes | None) -> Principal:
    token = bearer_token(authorization)
    if authorization is not None and token is None:
        raise _Refusal(401, "the Authorization header must be 'Bearer <token>'", _CHALLENGE)
    try:
        return inventory.verify(token)
    except AuthError as error:
        raise _Refusal(401, str(error), _CHALLENGE) from None


_CHALLENGE = (("WWW-Authenticate", 'Bearer realm="portway"'),)
Query = dict[str, list[str]]


def _auth(inventory: Inventory, principal: Principal, path: str, query: Query) -> ApiResponse:
    kind = principal.claims.get("type")
    expires = datetime.fromtimestamp(principal.expires_at, UTC) if principal.expires_at else None
    return _model(AuthView(subject=principal.subject, type=kind if isinstance(kind, str) else None,
                           expires_at=expires))


def _tunnels(inventory: Inventory, principal: Principal, path: str, query: Query) -> ApiResponse:
    return _listing(inventory.tunnels(), query, TUNNEL_FILTER_FIELDS)


def _clients(inventory: Inventory, principal: Principal, path: str, query: Query) -> ApiResponse:
    return _listing(inventory.clients(), query, CLIENT_FILTER_FIELDS)


def _one_tunnel(inventory: Inventory, principal: Principal, path: str, query: Query) -> ApiResponse:
    wanted = path.rsplit("/", 1)[1]
    for tunnel in inventory.tunnels():
        if tunnel.id == wanted:
            return _model(tunnel)
    raise _Refusal(404, "no live tunnel has this id")


def _mint(inventory: Inventory, principal: Principal, body: bytes) -> ApiResponse:
    try:
        request = MintRequest.model_validate_json(body or b"{}")
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise _Refusal(400, f"{where}: {first['msg']}") from None
    now = time.time()
    try:
        ttl, claims = derive(principal, request, now=now, engine=inventory.host)
        token = inventory.issue(subject=principal.subject, ttl_s=ttl, extra=claims)
    except MintRefused as error:
        raise _Refusal(403, str(error)) from None
    except ValueError as error:
        raise _Refusal(400, str(error)) from None
    except AuthError as error:
        raise _Refusal(403, str(error)) from None
    return _model(MintResponse(token=token, expires_at=int(now) + ttl))


_ROUTES: dict[str, Callable[[Inventory, Principal, str, Query], ApiResponse]] = {
    "/api/auth": _auth, "/api/tunnels": _tunnels, "/api/clients": _clients,
}


def list_params(query: Query, fields: frozenset[str]) -> tuple[Callable[[dict[str, Any]], bool], int]:
    """(`params.filters` as a predicate, `params.limit`) from a query string; 400 on anything malformed."""
    raw = query.get("params", [""])[-1]
    if not raw:
        return (lambda _record: True), MAX_LIMIT
    if len(raw) > MAX_PARAMS_BYTES:
        raise _Refusal(400, "params is too large")
    try:
        params = json.loads(raw)
    except ValueError:
        raise _Refusal(400, "params must be JSON") from None
    if not isinstance(params, dict) or set(params) - {"filters", "limit"}:
        raise _Refusal(400, "params takes an object with 'filters' and 'limit'")
    limit = params.get("limit", MAX_LIMIT)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise _Refusal(400, f"params.limit must be an integer from 1 to {MAX_LIMIT}")
    try:
        match = compile_filter(params.get("filters") or {}, fields)
    except FilterError as error:
        raise _Refusal(400, f"params.filters: {error}") from None
    return match, limit


def _listing(items: Sequence[BaseModel], query: Query, fields: frozenset[str]) -> ApiResponse:
    match, limit = list_params(query, fields)
    out: list[dict[str, Any]] = []
    for item in items:
        record = item.model_dump(mode="json")
        if match(record):
            out.append(record)
            if len(out) >= limit:
                break
    return _json(out)


def _model(model: BaseModel, cache: str = "no-store") -> ApiResponse:
    return ApiResponse(200, model.model_dump_json().encode(), cache=cache)


def _json(value: object) -> ApiResponse:
    return ApiResponse(200, json.dumps(value, separators=(",", ":")).encode())
