"""The webhook endpoints of the Engine API: CRUD, secret rotation, deliveries and redelivery.

Authorization: a token without a `permissions` claim (or with null) may manage webhooks, as may one whose
permissions include `webhooks.read-write`; any other token gets 403. An endpoint belongs to the caller's
project (a token without one: the default project) and only that project's events reach it; another
project's endpoints are 404 to the caller. Secrets appear only in the answers to create and rotate, never in
listings or logs. A broken database is a 503. Handlers are coroutines (the store is async).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from portway.engine.accesspolicy import PolicyBook
from portway.engine.api.routes import ApiResponse, Call, Refusal, json_param, model_response, parse_body, route
from portway.engine.api.webhook_views import (
    DeliveryView,
    WebhookCreate,
    WebhookDeleted,
    WebhookRotate,
    WebhookView,
    WebhookWithSecret,
)
from portway.engine.webhooks.records import DELIVERABLE_EVENTS, Endpoint
from portway.engine.webhooks.service import WebhookService
from portway.engine.webhooks.store import StoreError

PERMISSION = "webhooks.read-write"
DEFAULT_DELIVERIES = 50
MAX_DELIVERIES = 1000

WebhookHandler = Callable[[Call, WebhookService, str], Awaitable[ApiResponse]]


def _webhooks(handler: WebhookHandler) -> Callable[[Call], Awaitable[ApiResponse]]:
    """Check the caller's permission, find the service and the caller's project, and turn database
    failures into a 503."""
    @functools.wraps(handler)
    async def checked(call: Call) -> ApiResponse:
        held = call.principal.claims.get("permissions")
        if held is not None and not (isinstance(held, list) and PERMISSION in held):
            raise Refusal(403, f"managing webhooks needs the {PERMISSION} permission")
        service = call.inventory.service("webhooks")
        if not isinstance(service, WebhookService):
            raise Refusal(404, "webhooks are turned off on this engine (webhooks.enabled)")
        book = call.inventory.service("policies")
        assert isinstance(book, PolicyBook)
        try:
            return await handler(call, service, book.project(call.principal.project_id))
        except StoreError:
            raise Refusal(503, "the webhook database is unavailable; see the engine log") from None
    return checked


async def _endpoint(service: WebhookService, project_id: str, call: Call) -> Endpoint:
    endpoint = await service.endpoint(project_id, call.params["id"])
    if endpoint is None:
        raise Refusal(404, "no webhook has this id")
    return endpoint


@route("POST", "/api/webhooks")
@_webhooks
async def _create(call: Call, service: WebhookService, project_id: str) -> ApiResponse:
    request = parse_body(WebhookCreate, call.body)
    kinds = [kind for kind in DELIVERABLE_EVENTS if request.events is None or kind in request.events]
    endpoint, secret = await service.create(project_id, url=request.url, event_types=kinds, enabled=request.enabled,
                                            secret=request.secret)
    return model_response(WebhookWithSecret.with_secret(endpoint, secret), 201)


@route("GET", "/api/webhooks")
@_webhooks
async def _list(call: Call, service: WebhookService, project_id: str) -> ApiResponse:
    views = [WebhookView.of(e).model_dump_json().encode() for e in await service.endpoints(project_id)]
    return ApiResponse(200, b"[" + b",".join(views) + b"]")


@route("GET", "/api/webhooks/{id}")
@_webhooks
async def _get(call: Call, service: WebhookService, project_id: str) -> ApiResponse:
    return model_response(WebhookView.of(await _endpoint(service, project_id, call)))


@route("DELETE", "/api/webhooks/{id}")
@_webhooks
async def _delete(call: Call, service: WebhookService, project_id: str) -> ApiResponse:
    if not await service.delete(project_id, call.params["id"]):
        raise Refusal(404, "no webhook has this id")
    return model_response(WebhookDeleted(id=call.params["id"]))


@route("POST", "/api/webhooks/{id}/rotate")
@_webhooks
async def _rotate(call: Call, service: WebhookService, project_id: str) -> ApiResponse:
    request = parse_body(WebhookRotate, call.body)
    rotated = await service.rotate(project_id, call.params["id"], secret=request.secret,
                                   grace_s=request.grace_seconds)
    if rotated is None:
        raise Refusal(404, "no webhook has this id")
    return model_response(WebhookWithSecret.with_secret(*rotated))


@route("GET", "/api/webhooks/{id}/deliveries")
@_webhooks
async def _deliveries(call: Call, service: WebhookService, project_id: str) -> ApiResponse:
    params = json_param(call.query)
    if set(params) - {"limit"}:
        raise Refusal(400, "params takes 'limit'")
    limit = params.get("limit", DEFAULT_DELIVERIES)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_DELIVERIES:
        raise Refusal(400, f"params.limit must be an integer from 1 to {MAX_DELIVERIES}")
    endpoint = await _endpoint(service, project_id, call)
    views = [DeliveryView.of(d, attempts) for d, attempts in await service.deliveries(endpoint.id, limit=limit)]
    return ApiResponse(200, b"[" + b",".join(v.model_dump_json().encode() for v in views) + b"]")


@route("POST", "/api/webhooks/{id}/deliveries/{delivery_id}/redeliver")
@_webhooks
async def _redeliver(call: Call, service: WebhookService, project_id: str) -> ApiResponse:
    endpoint = await _endpoint(service, project_id, call)
    delivery = await service.redeliver(endpoint.id, call.params["delivery_id"])
    if delivery is None:
        raise Refusal(404, "this webhook has no delivery with this id")
    return model_response(DeliveryView.of(delivery, []), 202)
