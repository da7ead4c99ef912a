"""Webhook test helpers: Engine API calls, and a tiny HTTP/1.1 receiver (asyncio, one request per
connection) that records every POST and answers with scripted statuses. The receiver's socket is bound
from the start, so its URL is known while it is "down" (bound, not listening: connections are refused)
and the same port serves when it comes up."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from rstream import webhooks as official

from tests.conftest import UNIT_S, EngineHandle


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]  # lower-case names
    body: bytes

    def verified(self, secret: str) -> official.WebhookEvent:
        """The event, after the official SDK checked its signature with `secret` (raises otherwise)."""
        return official.verify_event(self.body, self.headers["rstream-signature"], secret)


class Receiver:
    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.received: list[Received] = []
        self.script: list[tuple[int, bytes]] = []  # answers to give, in order; then `default`
        self.default: tuple[int, bytes] = (200, b"thanks")
        self._server: asyncio.Server | None = None
        self._arrived = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def black_hole(self) -> None:
        """Listen without ever accepting: connections open, requests get no answer (until `start()`)."""
        self._sock.listen(16)

    async def start(self) -> None:
        self._sock.listen(16)
        self._server = await asyncio.start_server(self._handle, sock=self._sock)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        else:
            self._sock.close()

    async def __aenter__(self) -> Receiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def wait_for(self, done: Callable[[list[Received]], bool], timeout: float = 15 * UNIT_S) -> list[Received]:
        """Wait until `done(received)` holds; fail with what arrived when it does not in time."""
        deadline = time.monotonic() + timeout
        while not done(self.received):
            left = deadline - time.monotonic()
            if left <= 0:
                kinds = [r.headers.get("rstream-event-type") for r in self.received]
                raise AssertionError(f"timed out; received {kinds}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)
        return self.received

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10 * UNIT_S)
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            status, answer = self.script.pop(0) if self.script else self.default
            self.received.append(Received(headers, body))
            self._arrived.set()
            writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                         % (status, len(answer), answer))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def api(engine: EngineHandle, token: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {token or engine.token()}"} if token != "" else {}
    async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{engine.port}", verify=engine.visitor_tls(),
                                 headers=headers, timeout=10) as client:
        yield client


async def create(client: httpx.AsyncClient, **body: object) -> dict[str, Any]:
    got = await client.post("/api/webhooks", json=body)
    assert got.status_code == 201, got.text
    created: dict[str, Any] = got.json()
    return created


async def deliveries(client: httpx.AsyncClient, hook_id: str) -> list[dict[str, Any]]:
    got = await client.get(f"/api/webhooks/{hook_id}/deliveries")
    assert got.status_code == 200, got.text
    listed: list[dict[str, Any]] = got.json()
    return listed


async def until_deliveries(client: httpx.AsyncClient, hook_id: str, done: Any,
                           timeout: float = 15 * UNIT_S) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        listed = await deliveries(client, hook_id)
        if done(listed):
            return listed
        assert time.monotonic() < deadline, listed
        await asyncio.sleep(0.05)
