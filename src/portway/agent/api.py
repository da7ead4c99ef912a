"""A client of the Engine HTTP API (§4.1): credential check, live inventories, token minting, webhooks.

Same engine address, token and TLS trust as the agent connection; one short-lived HTTPS connection per
call (these are occasional calls from commands and scripts, not a hot path).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx
import websockets

from portway.agent.options import AgentOptions, split_engine, ssl_context
from portway.errors import EngineApiError, TransportError

API_ALPN = ("h2", "http/1.1")


class EngineApi:
    """`GET /api/...` calls with the agent's credentials; errors raise `EngineApiError`/`TransportError`."""

    def __init__(self, options: AgentOptions, timeout_s: float = 10.0) -> None:
        host, port = split_engine(options.engine)
        self._base = f"https://{f'[{host}]' if ':' in host else host}:{port}"
        self._token = options.token
        self._tls = ssl_context(options.tls, API_ALPN)
        self._tls_h1 = ssl_context(options.tls, ("http/1.1",))  # a WebSocket client speaks HTTP/1.1 only
        self._sni = options.tls.server_name
        self._timeout = timeout_s

    async def auth(self) -> dict[str, Any]:
        """Who the token speaks for (`subject`, `type`, `expires_at`); 401 when it is refused."""
        value = await self._call("GET", "/api/auth")
        assert isinstance(value, dict)
        return value

    async def tunnels(self, filters: Mapping[str, object] | None = None, limit: int | None = None) -> list[Any]:
        return await self._list("/api/tunnels", filters, limit)

    async def tunnel(self, tunnel_id: str) -> dict[str, Any]:
        value = await self._call("GET", f"/api/tunnels/{_segment(tunnel_id)}")
        assert isinstance(value, dict)
        return value

    async def clients(self, filters: Mapping[str, object] | None = None, limit: int | None = None) -> list[Any]:
        return await self._list("/api/clients", filters, limit)

    async def discovery(self) -> dict[str, Any]:
        value = await self._call("GET", "/.well-known/rstream/engine", auth=False)
        assert isinstance(value, dict)
        return value

    async def mint_token(self, body: Mapping[str, object]) -> dict[str, Any]:
        """A short-lived token derived from this client's token (`POST /api/tokens`)."""
        value = await self._call("POST", "/api/tokens", body=body)
        assert isinstance(value, dict)
        return value

    async def admin(self, method: str, path: str, *, query: dict[str, str] | None = None,
                    body: Mapping[str, object] | None = None) -> Any:
        """One admin API call (`/api/admin/<path>`, operator tokens only); the decoded JSON answer."""
        return await self._call(method, f"/api/admin/{path.lstrip('/')}", query=query, body=body)

    async def admin_list(self, path: str, **query: str | None) -> list[Any]:
        """An admin listing (`workspaces`, `projects`, `users`, `pats`, `apps`, `revocations`), `None` filters
        left out."""
        value = await self.admin("GET", path, query={k: v for k, v in query.items() if v is not None} or None)
        if not isinstance(value, list):
            raise EngineApiError(200, "expected a JSON array")
        return value

    async def watch(self, params: Mapping[str, object] | None = None, transport: str = "sse",
                    ) -> AsyncIterator[dict[str, Any]]:
        """Signaling events (`state.initial` first), over Server-Sent Events or WebSocket, until the
        engine ends the stream. Raises `EngineApiError` when the engine refuses the watch."""
        query = f"?params={quote(json.dumps(dict(params)))}" if params else ""
        if transport == "websocket":
            async for event in self._watch_websocket(query):
                yield event
            return
        headers = {"Accept": "text/event-stream"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        extensions = {"sni_hostname": self._sni} if self._sni else None
        timeout = httpx.Timeout(self._timeout, read=None)  # events may be minutes apart (keepalives every 15 s)
        try:
            async with httpx.AsyncClient(verify=self._tls, timeout=timeout) as client, \
                    client.stream("GET", f"{self._base}/api/sse{query}", headers=headers,
                                  extensions=extensions) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _api_error(response)
                data: list[str] = []
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif not line and data:
                        yield json.loads("\n".join(data))
                        data = []
        except httpx.HTTPError as error:
            raise TransportError(f"event stream from {self._base} failed: {error}") from None

    async def _watch_websocket(self, query: str) -> AsyncIterator[dict[str, Any]]:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        url = f"wss://{self._base.removeprefix('https://')}/api/websocket{query}"
        try:
            async with websockets.connect(url, ssl=self._tls_h1, additional_headers=headers,
                                          server_hostname=self._sni, open_timeout=self._timeout,
                                          max_size=4 * 1024 * 1024) as connection:
                async for message in connection:
                    yield json.loads(message)
        except websockets.InvalidStatus as error:
            status = error.response.status_code
            raise EngineApiError(status, _error_text(error.response.body)) from None
        except (websockets.ConnectionClosedError, websockets.InvalidHandshake) as error:
            raise TransportError(f"event stream from {self._base} failed: {error}") from None
        except OSError as error:
            raise TransportError(f"cannot reach the engine at {self._base}: {error}") from None
    async def webhooks(self) -> list[Any]:
        """The webhook endpoints (secrets masked)."""
        return await self._array("GET", "/api/webhooks")

    async def webhook(self, webhook_id: str) -> dict[str, Any]:
        return await self._object("GET", f"/api/webhooks/{_segment(webhook_id)}")

    async def create_webhook(self, body: Mapping[str, object]) -> dict[str, Any]:
        """A new endpoint; the answer holds its secret (the only time it is shown)."""
        return await self._object("POST", "/api/webhooks", body=body)

    async def delete_webhook(self, webhook_id: str) -> dict[str, Any]:
        return await self._object("DELETE", f"/api/webhooks/{_segment(webhook_id)}")

    async def rotate_webhook(self, webhook_id: str, body: Mapping[str, object]) -> dict[str, Any]:
        """A new secret for the endpoint (in the answer); the previous one keeps signing for a grace period."""
        return await self._object("POST", f"/api/webhooks/{_segment(webhook_id)}/rotate", body=body)

    async def webhook_deliveries(self, webhook_id: str, limit: int | None = None) -> list[Any]:
        query = {"params": json.dumps({"limit": limit})} if limit is not None else None
        return await self._array("GET", f"/api/webhooks/{_segment(webhook_id)}/deliveries", query=query)

    async def redeliver(self, webhook_id: str, delivery_id: str) -> dict[str, Any]:
        """Send a delivery's event again (as a new delivery)."""
        path = f"/api/webhooks/{_segment(webhook_id)}/deliveries/{_segment(delivery_id)}/redeliver"
        return await self._object("POST", path)

    async def _object(self, method: str, path: str, *, body: Mapping[str, object] | None = None) -> dict[str, Any]:
        value = await self._call(method, path, body=body)
        if not isinstance(value, dict):
            raise EngineApiError(200, "expected a JSON object")
        return value

    async def _array(self, method: str, path: str, *, query: dict[str, str] | None = None) -> list[Any]:
        value = await self._call(method, path, query=query)
        if not isinstance(value, list):
            raise EngineApiError(200, "expected a JSON array")
        return value

    async def _list(self, path: str, filters: Mapping[str, object] | None, limit: int | None) -> list[Any]:
        params: dict[str, object] = {}
        if filters:
            params["filters"] = dict(filters)
        if limit is not None:
            params["limit"] = limit
        value = await self._call("GET", path, query={"params": json.dumps(params)} if params else None)
        if not isinstance(value, list):
            raise EngineApiError(200, "expected a JSON array")
        return value

    async def _call(self, method: str, path: str, *, query: dict[str, str] | None = None,
                    body: Mapping[str, object] | None = None, auth: bool = True) -> object:
        headers = {"Authorization": f"Bearer {self._token}"} if auth and self._token else {}
        extensions = {"sni_hostname": self._sni} if self._sni else None
        try:
            async with httpx.AsyncClient(verify=self._tls, http2=True, timeout=self._timeout) as client:
                response = await client.request(method, self._base + path, params=query, headers=headers,
                                                json=body, extensions=extensions)
        except httpx.HTTPError as error:
            raise TransportError(f"cannot reach the engine API at {self._base}: {error}") from None
        if response.status_code >= 400:
            raise _api_error(response)
        try:
            return response.json()
        except ValueError:
            return None


def _error_text(body: bytes | None) -> str:
    try:
        value = json.loads(body or b"")
    except ValueError:
        return (body or b"").decode("utf-8", "replace")[:200] or "no details"
    return str(value.get("error") if isinstance(value, dict) else value)


def _api_error(response: httpx.Response) -> EngineApiError:
    return EngineApiError(response.status_code, _error_text(response.content) or response.reason_phrase)


def _segment(value: str) -> str:
    """`value` as one path segment (an id with a `/` cannot reach another endpoint)."""
    return quote(value, safe="")
