"""The Engine HTTP API (§4.1 of the rstream facts): inventories of live clients and tunnels, the
credential check, discovery and its OpenAPI document. Sans-IO: `routes.answer` turns a request into a
response; the HTTP edges only carry bytes."""
