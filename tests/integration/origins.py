"""Scripted HTTP upstreams for the HTTP edge tests: requests are parsed with h11 (so chunked bodies and
pipelining are understood), answers are raw bytes chosen by the test (so HEAD, 1xx, close-delimited and
broken responses can be sent as they are)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import h11


@dataclass
class Seen:
    """A request as the upstream received it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name.lower()]


# An answer: raw response bytes, or None to close the connection without answering. The connection closes
# after an answer with `Connection: close`, and echoes bytes after a `101` or a `200` to CONNECT.
Answer = Callable[[Seen], bytes | None]


def ok(seen: Seen) -> bytes:
    body = f"{seen.method} {seen.target} {len(seen.body)}".encode()
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


@dataclass
class Origin:
    answer: Answer = ok
    requests: list[Seen] = field(default_factory=list)
    echoed: bytearray = field(default_factory=bytearray)
    port: int = 0
    server: asyncio.Server | None = None

    async def __aenter__(self) -> Origin:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pending = b""
        try:
            while True:
                conn = h11.Connection(h11.SERVER)
                if pending:
                    conn.receive_data(pending)  # (b"" would mean end of input)
                seen, pending = await self._read_request(conn, reader, writer)
                if seen is None:
                    return
                self.requests.append(seen)
                answer = self.answer(seen)
                if answer is None:
                    return
                writer.write(answer)
                await writer.drain()
                if b"\r\nConnection: close\r\n" in answer.split(b"\r\n\r\n", 1)[0] + b"\r\n":
                    return
                switched = answer.startswith(b"HTTP/1.1 101") or (
                    seen.method == "CONNECT" and answer.startswith(b"HTTP/1.1 200"))
                if switched:
                    await self._echo(pending, reader, writer)
                    return
        except (ConnectionError, h11.RemoteProtocolError):
            pass
        finally:
            writer.close()

    async def _read_request(self, conn: h11.Connection, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> tuple[Seen | None, bytes]:
        seen: Seen | None = None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                conn.receive_data(data)
                if not data and seen is None:
                    return None, b""
                continue
            if isinstance(event, h11.Request):
                seen = Seen(event.method.decode(), event.target.decode(),
                            [(k.decode().lower(), v.decode("latin-1")) for k, v in event.headers.raw_items()])
                if event.method in (b"CONNECT",) or any(k.lower() == b"upgrade" for k, _ in event.headers):
                    # h11 stops at a protocol switch: the head is all there is
                    return seen, conn.trailing_data[0]
                if seen.header("expect") == ["100-continue"]:
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            elif isinstance(event, h11.Data):
                assert seen is not None
                seen.body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                assert seen is not None
                return seen, conn.trailing_data[0]
            elif isinstance(event, h11.ConnectionClosed):
                return seen, b""
            elif event is h11.PAUSED:
                assert seen is not None
                return seen, conn.trailing_data[0]

    async def _echo(self, pending: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if pending:
            self.echoed.extend(pending)
            writer.write(pending)
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                self.echoed.extend(data)
                writer.write(data)
                await writer.drain()
