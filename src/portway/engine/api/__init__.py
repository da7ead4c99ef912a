"""The Engine HTTP API (§4.1 of the rstream facts): inventories of live clients and tunnels, the
credential check, discovery, webhooks and its OpenAPI document. Sans-IO: `routes.answer` turns a request
into a response; the HTTP edges only carry bytes."""

# The webhook routes register themselves in routes' table when imported: importing them here, once the
# routes module is complete, gives every importer of the API the whole table without an import cycle.
from portway.engine.api import routes, webhook_routes

__all__ = ["routes", "webhook_routes"]
