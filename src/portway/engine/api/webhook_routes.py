"""The webhook endpoints of the Engine API: CRUD, secret rotation, deliveries and redelivery.

Authorization until identities land: a token without a `permissions` claim (or with null) may manage
webhooks, as may one whose permissions include `webhooks.read-write`; any other token gets 403. Secrets
appear only in the answers to create and rotate, never in listings or logs. A broken database is a 503.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from portway.engine.api.routes import ApiResponse, Call, Refusal, json_param, model_response, parse_body, route
from portway.engine.api.webhook_views import (
    DeliveryView,
    WebhookCreate,
    WebhookDeleted,
    WebhookRotate,
    WebhookView,
    WebhookWithSecret,
)
from portway.engine.webhooks import DELIVERABLE_EVENTS, StoreError, WebhookService
from portway.engine.webhooks.records import Endpoint

PERMISSION = "webhooks.read-write"
DEFAULT_DELIVERIES = 50
MAX_DELIVERIES = 1000

WebhookHandler = Callable[[Call, WebhookService], ApiResponse]


def _webhooks(handler: WebhookHandler) -> Callable[[Call], ApiResponse]:
    """Check the caller's permission, find the service, and turn database failures into a 503."""
    @functools.wraps(handler)
    def checked(call: Call) -> ApiResponse:
        held = call.principal.claims.get("permissions")
        if held is not None and not (isinstance(held, list) and PERMISSION in held):
            raise Refusal(403, f"managing webhooks needs the {PERMISSION} permission")
        service = call.inventory.service("webhooks")
        if not isinstance(service, WebhookService):
            raise Refusal(404, "webhooks are turned off on this engine (webhooks.enabled)")
        try:
            return handler(call, service)
        except StoreError:
            raise Refusal(503, "the webhook database is unavailable; see the engine log") from None
    return checked


def _endpoint(service: WebhookService, call: Call) -> Endpoint:
    endpoint = service.endpoint(call.params["id"])
    if endpoint is None:
        raise Refusal(404, "no webhook has this id")
    return endpoint


@route("POST", "/api/webhooks")
@_webhooks
def _create(call: Call, service: WebhookService) -> ApiResponse:
    request = parse_body(WebhookCreate, call.body)
    kinds = [kind for kind in DELIVERABLE_EVENTS if request.events is None or kind in request.events]
    endpoint, secret = service.create(url=request.url, event_types=kinds, enabled=request.enabled,
                                      secret=request.secret)
    return model_response(WebhookWithSecret.with_secret(endpoint, secret), 201)


@route("GET", "/api/webhooks")
@_webhooks
def _list(call: Call, service: WebhookService) -> ApiResponse:
    body = b"[" + b",".join(WebhookView.of(e).model_dump_json().encode() for e in service.endpoints()) + b"]"
    return ApiResponse(200, body)


@route("GET", "/api/webhooks/{id}")
@_webhooks
def _get(call: Call, service: WebhookService) -> ApiResponse:
    return model_response(WebhookView.of(_endpoint(service, call)))


@route("DELETE", "/api/webhooks/{id}")
@_webhooks
def _delete(call: Call, service: WebhookService) -> ApiResponse:
    if not service.delete(call.params["id"]):
        raise Refusal(404, "no webhook has this id")
    return model_response(WebhookDeleted(id=call.params["id"]))


@route("POST", "/api/webhooks/{id}/rotate")
@_webhooks
def _rotate(call: Call, service: WebhookService) -> ApiResponse:
    request = parse_body(WebhookRotate, call.body)
    rotated = service.rotate(call.params["id"], secret=request.secret, grace_s=request.grace_seconds)
    if rotated is None:
        raise Refusal(404, "no webhook has this id")
    return model_response(WebhookWithSecret.with_secret(*rotated))


@route("GET", "/api/webhooks/{id}/deliveries")
@_webhooks
def _deliveries(call: Call, service: WebhookService) -> ApiResponse:
    params = json_param(call.query)
    if set(params) - {"limit"}:
        raise Refusal(400, "params takes 'limit'")
    limit = params.get("limit", DEFAULT_DELIVERIES)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_DELIVERIES:
        raise Refusal(400, f"params.limit must be an integer from 1 to {MAX_DELIVERIES}")
    endpoint = _endpoint(service, call)
    views = [DeliveryView.of(d, attempts) for d, attempts in service.deliveries(endpoint.id, limit=limit)]
    return ApiResponse(200, b"[" + b",".join(v.model_dump_json().encode() for v in views) + b"]")


@route("POST", "/api/webhooks/{id}/deliveries/{delivery_id}/redeliver")
@_webhooks
def _redeliver(call: Call, service: WebhookService) -> ApiResponse:
    endpoint = _endpoint(service, call)
    delivery = service.redeliver(endpoint.id, call.params["delivery_id"])
    if delivery is None:
        raise Refusal(404, "this webhook has no delivery with this id")
    return model_response(DeliveryView.of(delivery, []), 202)
