"""The two ends `portway nc` joins: a remote end (a tunnel stream, as bytes or as datagrams) and a local
end (this process's stdin/stdout, or a child process started for the stream with --exec/--sh-exec).

Datagrams cross the local end as RFC 4571 frames (cli/framing.py), so both ends speak bytes and one
relay (ncsession.py) serves every mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import stat
import sys
from typing import Protocol

from portway.agent import DatagramStream, Stream
from portway.cli.framing import Rfc4571Decoder, encode_rfc4571
from portway.errors import ClosedError

CHUNK_BYTES = 64 * 1024
# When its stream ends, a child gets this long to exit on its own (its stdin is closed), then SIGTERM,
# then after CHILD_GRACE_S more its whole process group is killed.
CHILD_EXIT_S = 0.5
CHILD_GRACE_S = 2.0
# Bound on closing a stream: a TLS close is a round trip, and the peer may be gone.
CLOSE_TIMEOUT_S = 5.0


class LocalGone(Exception):
    """The local end stopped taking data (stdout closed, or the child closed its stdin)."""


# ---------------------------------------------------------------- remote ends


class RemoteEnd(Protocol):
    async def receive(self) -> bytes: ...  # b"" at end of stream
    async def send(self, data: bytes) -> None: ...  # raises ClosedError once the peer is gone
    def input_ended(self, half_close: bool) -> None: ...  # local input is over; raises FrameTruncated
    async def lost(self) -> None: ...  # returns once the connection is gone
    async def close(self) -> None: ...


class ByteRemote:
    """A tunnel stream carried as plain bytes."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream

    async def receive(self) -> bytes:
        return await self.stream.read(CHUNK_BYTES)

    async def send(self, data: bytes) -> None:
        self.stream.write(data)
        await self.stream.drain()

    def input_ended(self, half_close: bool) -> None:
        if half_close:
            self.stream.write_eof()

    async def lost(self) -> None:
        async def closed() -> None:
            with contextlib.suppress(Exception):
                await self.stream.writer.wait_closed()

        # Shielded: cancelling a task that awaits the writer's close future would cancel that shared
        # future itself, and the stream's own close() would then fail with CancelledError.
        await asyncio.shield(closed())

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stream.close(), CLOSE_TIMEOUT_S)
        self.stream.writer.transport.abort()  # no-op once closed; cuts a peer that never answered the close


class DatagramRemote(ByteRemote):
    """A stream of a datagram tunnel: RFC 4571 frames locally, the 4-byte framing on the wire (§2.8)."""

    def __init__(self, stream: Stream) -> None:
        super().__init__(stream)
        self.datagrams = DatagramStream(stream)
        self._decoder = Rfc4571Decoder()

    async def receive(self) -> bytes:
        try:
            return encode_rfc4571(await self.datagrams.recv())
        except ClosedError:
            return b""

    async def send(self, data: bytes) -> None:
        for datagram in self._decoder.feed(data):
            await self.datagrams.send(datagram)

    def input_ended(self, half_close: bool) -> None:
        self._decoder.check_eof()
        super().input_ended(half_close)


def remote_end(stream: Stream, datagram: bool) -> RemoteEnd:
    return DatagramRemote(stream) if datagram else ByteRemote(stream)


# ---------------------------------------------------------------- local ends


class LocalEnd(Protocol):
    async def read(self) -> bytes: ...  # b"" at end of input
    async def write(self, data: bytes) -> None: ...  # raises LocalGone
    def end_input(self) -> None: ...  # the remote end is over
    async def close(self) -> None: ...


class Stdin:
    """This process's stdin, opened once and shared by successive sessions (`nc -L -k`)."""

    def __init__(self) -> None:
        self._reader: asyncio.StreamReader | None = None
        self._fd: int | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._opened = False

    async def read(self) -> bytes:
        if not self._opened:
            await self._open()
        if self._reader is not None:
            return await self._reader.read(CHUNK_BYTES)
        if self._fd is None:
            return b""
        return os.read(self._fd, CHUNK_BYTES)  # a file: reading it does not wait on anyone

    async def _open(self) -> None:
        self._opened = True
        if sys.stdin is None:
            return
        fd = sys.stdin.fileno()
        mode = os.fstat(fd).st_mode
        # Only pipes, sockets and terminals can be polled: uvloop aborts on a regular file or /dev/null.
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)):
            self._fd = fd
            return
        self._reader = asyncio.StreamReader(limit=CHUNK_BYTES)
        reader = self._reader
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class Stdio:
    """stdin/stdout as the local end. stdout is written with os.write so nothing buffers it; when
    stdin shares a terminal with stdout it is non-blocking, hence the wait for writability."""

    def __init__(self, stdin: Stdin) -> None:
        self.stdin = stdin
        self.fd = sys.stdout.fileno()

    async def read(self) -> bytes:
        return await self.stdin.read()

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view):]
            except BlockingIOError:
                await self._writable()
            except (BrokenPipeError, ConnectionError) as error:
                # Nobody reads our output: stop, and keep interpreter exit from failing on the flush.
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self.fd)
                os.close(devnull)
                raise LocalGone("stdout closed") from error

    async def _writable(self) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def writable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_writer(self.fd, writable)
        try:
            await ready
        finally:
            loop.remove_writer(self.fd)

    def end_input(self) -> None:
        return None

    async def close(self) -> None:
        return None


class Child:
    """A child process for one stream: the stream feeds its stdin, its stdout feeds the stream; its
    stderr stays ours. It leads its own process group, so `--sh-exec` grandchildren are stopped too."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, argv: list[str]) -> Child:
        """Raises OSError when the command cannot be started."""
        process = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE,
                                                       stdout=asyncio.subprocess.PIPE, start_new_session=True)
        return cls(process)

    async def read(self) -> bytes:
        assert self.process.stdout is not None
        return await self.process.stdout.read(CHUNK_BYTES)

    async def write(self, data: bytes) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(data)
            await self.process.stdin.drain()
        except (ConnectionError, RuntimeError) as error:  # RuntimeError: write after close
            raise LocalGone("the command closed its input") from error

    def end_input(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()

    async def close(self) -> None:
        """End the child: EOF on its stdin, a moment to exit, then SIGTERM and finally SIGKILL to its
        process group (whatever it left behind goes too); always reaped, so no zombie stays."""
        self.end_input()
        for sig, wait_s in ((signal.SIGTERM, CHILD_EXIT_S), (signal.SIGKILL, CHILD_GRACE_S)):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.process.wait()), wait_s)
            self._signal(sig)
        await self.process.wait()

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)


class IdleClock:
    """When data last flowed either way; `expired()` returns once none has for `timeout_s`."""

    def __init__(self, timeout_s: float | None) -> None:
        self.timeout_s = timeout_s
        self._last = asyncio.get_running_loop().time()

    def touch(self) -> None:
        self._last = asyncio.get_running_loop().time()

    async def expired(self) -> None:
        loop = asyncio.get_running_loop()
        fired: asyncio.Future[None] = loop.create_future()
        if self.timeout_s is None:
            await fired  # never
            return
        timeout_s = self.timeout_s
        timer: asyncio.TimerHandle | None = None

        def check() -> None:
            nonlocal timer
            due = self._last + timeout_s
            if loop.time() >= due:
                if not fired.done():
                    fired.set_result(None)
            else:  # data flowed since: look again when the new deadline is due
                timer = loop.call_at(due, check)

        timer = loop.call_at(self._last + timeout_s, check)
        try:
            await fired
        finally:
            timer.cancel()
