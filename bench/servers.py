"""Benchmark peers, run as separate processes: a byte sink, an echo server and a fixed-response
HTTP origin, all on uvloop Protocols so the peers are never the bottleneck being measured."""

from __future__ import annotations

import asyncio
import sys

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nhello, world\n"


class Sink(asyncio.Protocol):
    """Counts bytes; after 8-byte big-endian length prefix worth of bytes, answers b"ok"."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.expected = -1
        self.seen = 0
        self.head = b""

    def data_received(self, data: bytes) -> None:
        if self.expected < 0:
            self.head += data
            if len(self.head) < 8:
                return
            self.expected = int.from_bytes(self.head[:8], "big")
            data = self.head[8:]
        self.seen += len(data)
        if self.seen >= self.expected:
            self.transport.write(b"ok")  # type: ignore[attr-defined]


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


class Origin(asyncio.Protocol):
    """Answers each request head with a fixed response (no bodies expected)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        count = self.buffer.count(b"\r\n\r\n")
        if count:
            self.buffer = self.buffer[self.buffer.rfind(b"\r\n\r\n") + 4 :]
            self.transport.write(RESPONSE * count)  # type: ignore[attr-defined]


async def websocket_echo() -> None:
    """A WebSocket echo server (the `websockets` library, HTTP/1.1 upgrade)."""
    from websockets.asyncio.server import ServerConnection, serve

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(echo, "127.0.0.1", 0, compression=None) as server:
        print(next(iter(server.sockets)).getsockname()[1], flush=True)
        await asyncio.Event().wait()


async def main(kind: str) -> None:
    if kind == "wsecho":
        await websocket_echo()
        return
    factory = {"sink": Sink, "echo": Echo, "origin": Origin}[kind]
    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(sys.argv[1]))
