"""The Engine HTTP API (§4.1 of the rstream facts): inventories of live clients and tunnels, the
credential check, discovery, webhooks, the admin surface and its OpenAPI document. Sans-IO:
`routes.answer` turns a request into a response; the HTTP edges only carry bytes.

Route modules register themselves in routes' table when imported; the engine (server.py) imports them,
so this package's modules can be imported alone without cycles."""
