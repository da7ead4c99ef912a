"""A tiny local HTTP service for the quickstart, so `portway up` works on a machine with nothing
running: it answers every request with a greeting and the headers the engine added."""

from __future__ import annotations

import asyncio
from typing import cast

_BODY = "Hello from Portway! This page came through your tunnel.\n"


class _Hello(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            forwarded = [line for line in head.decode("latin-1").split("\r\n") if line.lower().startswith("x-forw")]
            body = (_BODY + "\n".join(forwarded) + "\n").encode()
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        if len(self.buffer) > 65536:
            self.transport.close()


async def start_demo_service() -> tuple[asyncio.Server, int]:
    """Serve the greeting on 127.0.0.1 at an ephemeral port; returns the server and its port."""
    server = await asyncio.get_running_loop().create_server(_Hello, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])
