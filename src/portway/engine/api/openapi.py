"""The OpenAPI 3.1 document of the Engine API, built from the pydantic models that serialize its
responses (views.py), so a field added there is described here."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from portway.engine.api.tokens import MintRequest, MintResponse
from portway.engine.api.views import AuthView, ClientView, Discovery, ErrorBody, TunnelView
from portway.engine.api.webhook_views import (
    DeliveryView,
    WebhookCreate,
    WebhookDeleted,
    WebhookRotate,
    WebhookView,
    WebhookWithSecret,
)

_REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _answer(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": _answer(_ref("ErrorBody"), "Malformed params"),
    "401": _answer(_ref("ErrorBody"), "Missing, invalid or expired token"),
}
_PARAMS = [{
    "name": "params", "in": "query", "required": False,
    "description": 'JSON: {"filters": {field: value | {"exact"|"oneof": …}, "labels": {key: value|null}, '
                   '"AND"/"OR": [filters]}, "limit": 1..10000}',
    "schema": {"type": "string"},
}]


def _get(summary: str, ok: dict[str, Any], *, secured: bool = True, params: list[Any] | None = None,
         extra: dict[str, Any] | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": {"200": ok, **(_ERRORS if secured else {}),
                                                                    **(extra or {})}}
    if params:
        operation["parameters"] = params
    if not secured:
        operation["security"] = []
    return {"get": operation}


@functools.cache
def _schemas() -> dict[str, Any]:
    from portway.engine.api.admin_openapi import ADMIN_REQUESTS, ADMIN_RESPONSES  # noqa: PLC0415 - see _admin_paths

    shown: tuple[type[BaseModel], ...] = (TunnelView, ClientView, AuthView, Discovery, ErrorBody, MintResponse,
                                          WebhookView, WebhookWithSecret, WebhookDeleted, DeliveryView,
                                          *ADMIN_RESPONSES)
    accepted: tuple[type[BaseModel], ...] = (MintRequest, WebhookCreate, WebhookRotate, *ADMIN_REQUESTS)
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(model, "serialization") for model in shown]
    models += [(model, "validation") for model in accepted]
    _, top = models_json_schema(models, ref_template=_REF)
    schemas: dict[str, Any] = top["$defs"]
    return schemas


def _op(summary: str, ok: tuple[str, dict[str, Any]], *, body: str | None = None,
        params: list[Any] | None = None, missing: str | None = None) -> dict[str, Any]:
    """One webhook operation: its success answer, the common errors, a 404 when it names a webhook."""
    responses = {ok[0]: ok[1], **_ERRORS,
                 "403": _answer(_ref("ErrorBody"), "The token lacks webhooks.read-write"),
                 "503": _answer(_ref("ErrorBody"), "The webhook database is unavailable")}
    if missing:
        responses["404"] = _answer(_ref("ErrorBody"), missing)
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if body:
        operation["requestBody"] = {"required": False, "content": {"application/json": {"schema": _ref(body)}}}
    if params:
        operation["parameters"] = params
    return operation


def _webhook_paths() -> dict[str, Any]:
    hook = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    delivery = [*hook, {"name": "delivery_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    limit = [{"name": "params", "in": "query", "required": False, "description": 'JSON: {"limit": 1..1000}',
              "schema": {"type": "string"}}]
    nowhere = "No webhook (or delivery) has this id"
    listing = {"type": "array", "items": _ref("WebhookView")}
    return {
        "/api/webhooks": {
            "get": _op("Webhook endpoints (secrets masked)", ("200", _answer(listing, "Endpoints"))),
            "post": _op("Create a webhook endpoint; the answer shows its secret, once",
                        ("201", _answer(_ref("WebhookWithSecret"), "The endpoint and its secret")),
                        body="WebhookCreate"),
        },
        "/api/webhooks/{id}": {
            "get": _op("One webhook endpoint", ("200", _answer(_ref("WebhookView"), "The endpoint")),
                       params=hook, missing=nowhere),
            "delete": _op("Delete an endpoint with its deliveries",
                          ("200", _answer(_ref("WebhookDeleted"), "Deleted")), params=hook, missing=nowhere),
        },
        "/api/webhooks/{id}/rotate": {
            "post": _op("New secret; the current ones keep signing for the grace period",
                        ("200", _answer(_ref("WebhookWithSecret"), "The endpoint and its new secret")),
                        body="WebhookRotate", params=hook, missing=nowhere),
        },
        "/api/webhooks/{id}/deliveries": {
            "get": _op("Deliveries, newest first, with every attempt",
                       ("200", _answer({"type": "array", "items": _ref("DeliveryView")}, "Deliveries")),
                       params=[*hook, *limit], missing=nowhere),
        },
        "/api/webhooks/{id}/deliveries/{delivery_id}/redeliver": {
            "post": _op("Send the delivery's event again, as a new delivery",
                        ("202", _answer(_ref("DeliveryView"), "The new delivery, due now")),
                        params=delivery, missing=nowhere),
        },
    }


def _admin_paths() -> dict[str, Any]:
    """Imported when the document is first asked for: the admin models pull in the store (SQLAlchemy),
    which commands that merely import the engine should not pay for."""
    from portway.engine.api.admin_openapi import admin_paths  # noqa: PLC0415

    return admin_paths()


def openapi_document(version: str) -> dict[str, Any]:
    """The document served at `/api/openapi.json`."""
    tunnel_path = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Portway Engine API", "version": version,
                 "description": "Live inventory of an engine, compatible with rstream's Engine API."},
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/auth": _get("Check a credential", _answer(_ref("AuthView"), "Who the token speaks for")),
            "/api/tunnels": _get("Live tunnels", _answer({"type": "array", "items": _ref("TunnelView")},
                                                         "Tunnels matching params.filters"), params=_PARAMS),
            "/api/tunnels/{id}": _get("One live tunnel", _answer(_ref("TunnelView"), "The tunnel"),
                                      params=tunnel_path,
                                      extra={"404": _answer(_ref("ErrorBody"), "No live tunnel has this id")}),
            "/api/clients": _get("Connected agents", _answer({"type": "array", "items": _ref("ClientView")},
                                                             "Clients matching params.filters"), params=_PARAMS),
            "/api/tokens": {"post": {
                "summary": "Mint a shorter-lived, narrower token from the caller's",
                "requestBody": {"required": False, "content": {"application/json": {"schema": _ref("MintRequest")}}},
                "responses": {"200": _answer(_ref("MintResponse"), "The derived token"), **_ERRORS,
                              "403": _answer(_ref("ErrorBody"), "Asks for more than the caller holds, or "
                                                                "minting is disabled")},
            }},
            **_webhook_paths(),
            "/api/openapi.json": _get("This document", {"description": "OpenAPI 3.1"}, secured=False),
            "/.well-known/rstream/engine": _get("Discovery", _answer(_ref("Discovery"), "What this engine offers"),
                                                secured=False),
            **_admin_paths(),
        },
    }
