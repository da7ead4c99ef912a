"""TLS over `ssl.MemoryBIO` as an asyncio transport, for every agent and edge connection.

Why not asyncio's own TLS transport: it cannot half-close (`can_write_eof()` is False), yet the
protocol relies on TLS 1.3 close_notify as "no more data from me" while the other direction keeps
flowing (a visitor that shuts down its sending side still gets its reply). It is also a thick layer:
here a read is one BIO write plus `SSLObject.read` calls, a write is one `SSLObject.write`.

`TLSConnection` is the protocol of the raw TCP transport; after the handshake it creates the
application protocol and hands it a `TLSTransport`, which behaves like any asyncio transport
(write, write_eof, close, pause/resume_reading, flow control callbacks, set_protocol).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Any, TypeVar, cast

log = logging.getLogger("portway.tls")
P = TypeVar("P", bound=asyncio.Protocol)

# Plaintext handed to the application per read call: big reads keep per-call overhead low.
READ_BYTES = 256 * 1024


class SessionCache:
    """The newest resumable TLS session per server. Resuming skips certificate verification and the
    server's signature (the client's handshake costs ~40 % less here) while TLS 1.3 resumption still
    runs a fresh (EC)DHE exchange, so forward secrecy is kept."""

    # Reading a session is costly (CPython re-decodes it, certificate included): refresh it only this often,
    # well within the engine's ticket lifetime (OpenSSL's default is 2 hours).
    REFRESH_S = 300.0

    def __init__(self) -> None:
        self._sessions: dict[tuple[str, int], tuple[float, ssl.SSLSession]] = {}

    def get(self, key: tuple[str, int]) -> ssl.SSLSession | None:
        entry = self._sessions.get(key)
        return entry[1] if entry is not None else None

    def wants(self, key: tuple[str, int], now: float) -> bool:
        """Whether a connection to `key` should offer its session (none cached, or the cached one is old)."""
        entry = self._sessions.get(key)
        return entry is None or now - entry[0] > self.REFRESH_S

    def put(self, key: tuple[str, int], session: ssl.SSLSession, now: float) -> None:
        self._sessions[key] = (now, session)


class TLSConnection(asyncio.Protocol):
    """Drives one TLS session over a plain transport.

    `handshake` resolves when the session is established (or fails with the TLS error); the
    application protocol from `factory` only sees the connection after that.
    """

    def __init__(self, context: ssl.SSLContext, factory: Callable[[], asyncio.BaseProtocol], *,
                 server_side: bool, server_hostname: str | None = None, handshake_timeout_s: float = 10.0,
                 session: ssl.SSLSession | None = None,
                 on_session: Callable[[ssl.SSLSession], None] | None = None) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.ssl_object = context.wrap_bio(self._incoming, self._outgoing, server_side=server_side,
                                           server_hostname=server_hostname, session=session)
        self._on_session = on_session
        self.context = context
        self._factory = factory
        self._timeout_s = handshake_timeout_s
        self._timer: asyncio.TimerHandle | None = None
        self.handshake: asyncio.Future[TLSTransport] = asyncio.get_running_loop().create_future()
        self.raw: asyncio.Transport | None = None
        self.app: asyncio.Protocol | None = None
        self.transport: TLSTransport | None = None
        self._paused = False
        self._eof_seen = False
        self._write_closed = False

    # ---- raw transport events ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.raw = cast(asyncio.Transport, transport)
        self._timer = asyncio.get_running_loop().call_later(self._timeout_s, self._handshake_timed_out)
        self._advance_handshake()

    def data_received(self, data: bytes) -> None:
        self._incoming.write(data)
        if self.transport is None:
            self._advance_handshake()
        else:
            self._read_plaintext()

    def eof_received(self) -> bool:
        # TCP FIN. Without a close_notify first this is a truncation; either way no more data comes.
        if self.transport is None:
            self._fail_handshake(ConnectionResetError("connection closed during the TLS handshake"))
            return False
        if not self._eof_seen:
            self._read_plaintext()
        if not self._eof_seen:
            self._eof_seen = True
            keep_open = self.app.eof_received() if self.app is not None else False
            return bool(keep_open) and not self._write_closed
        return not self._write_closed

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.transport is None:
            self._fail_handshake(exc or ConnectionResetError("connection lost during the TLS handshake"))
            return
        self.transport._closing = True
        if self.app is not None:
            self.app.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.app is not None:
            self.app.pause_writing()

    def resume_writing(self) -> None:
        if self.app is not None:
            self.app.resume_writing()

    # ---- handshake ----

    def _advance_handshake(self) -> None:
        try:
            self.ssl_object.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, ssl.CertificateError) as error:
            self._flush()
            self._fail_handshake(error)
            return
        self._flush()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.transport = TLSTransport(self)
        app = self._factory()
        assert isinstance(app, asyncio.Protocol)
        self.app = app
        if not self.handshake.done():
            self.handshake.set_result(self.transport)
        app.connection_made(self.transport)
        self._read_plaintext()

    def _handshake_timed_out(self) -> None:
        self._fail_handshake(TimeoutError("TLS handshake timed out"))

    def _fail_handshake(self, error: BaseException) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(error)
            self.handshake.exception()  # whoever dialed reads it; an accepted connection just logs
        if self.raw is not None and not self.raw.is_closing():
            self.raw.abort()

    # ---- data ----

    def _read_plaintext(self) -> None:
        """Deliver decrypted data until the BIO is empty, the app pauses, or the peer sent close_notify."""
        app = self.app
        while not self._paused and not self._eof_seen and app is not None:
            try:
                chunk = self.ssl_object.read(READ_BYTES)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                chunk = b""
            except ssl.SSLError as error:
                log.info("TLS error on %s: %s", self.raw.get_extra_info("peername") if self.raw else "?", error)
                self._flush()
                if self.raw is not None:
                    self.raw.abort()
                return
            if not chunk:
                self._peer_closed_write()
                break
            app.data_received(chunk)
            app = self.app  # the app may hand the connection to another protocol
            if not self._incoming.pending and not self.ssl_object.pending():
                break  # all consumed: skip the read that would only raise SSLWantReadError
        if self._on_session is not None:
            self._offer_session()
        self._flush()

    def _offer_session(self) -> None:
        """TLS 1.3 tickets arrive after the handshake: hand the first resumable session to the cache."""
        session = self.ssl_object.session
        if session is not None and session.has_ticket and self._on_session is not None:
            self._on_session(session)
            self._on_session = None

    def _peer_closed_write(self) -> None:
        """The peer sent close_notify: end of its data. Keep writing only if the app asks to."""
        self._eof_seen = True
        keep_open = self.app.eof_received() if self.app is not None else False
        if not keep_open and self.transport is not None:
            self.transport.close()

    def _flush(self) -> None:
        if self._outgoing.pending and self.raw is not None and not self.raw.is_closing():
            self.raw.write(self._outgoing.read())

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._write_closed:
            raise RuntimeError("write after write_eof/close")
        self.ssl_object.write(data)
        self._flush()

    def write_eof(self) -> None:
        """Send close_notify and keep reading (TLS 1.3 half-close)."""
        if self._write_closed:
            return
        self._write_closed = True
        with contextlib.suppress(ssl.SSLError):  # SSLWantReadError: close_notify sent, peer's still to come
            self.ssl_object.unwrap()
        self._flush()
        if self._eof_seen and self.raw is not None:
            self.raw.close()

    def set_paused(self, paused: bool) -> None:
        self._paused = paused
        if self.raw is None:
            return
        if paused:
            self.raw.pause_reading()
        else:
            self.raw.resume_reading()
            asyncio.get_running_loop().call_soon(self._read_plaintext)


class TLSTransport(asyncio.Transport):
    """The application's view of a `TLSConnection`."""

    def __init__(self, conn: TLSConnection) -> None:
        super().__init__()
        self._conn = conn
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        conn = self._conn
        if name == "ssl_object":
            return conn.ssl_object
        # No "sslcontext": asyncio's StreamReaderProtocol reads it as "this transport cannot half-close"
        # (true of asyncio's TLS, not of this one) and would close the stream at the peer's close_notify.
        if name == "peercert":
            return conn.ssl_object.getpeercert()
        if name == "cipher":
            return conn.ssl_object.cipher()
        return conn.raw.get_extra_info(name, default) if conn.raw is not None else default

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._conn.app = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._conn.app is not None
        return self._conn.app

    def is_closing(self) -> bool:
        return self._closing or self._conn.raw is None or self._conn.raw.is_closing()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.is_closing():
            self._conn.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self._conn.write_eof()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._conn.write_eof()
        if self._conn.raw is not None:
            self._conn.raw.close()

    def abort(self) -> None:
        self._closing = True
        if self._conn.raw is not None:
            self._conn.raw.abort()

    def pause_reading(self) -> None:
        self._conn.set_paused(True)

    def resume_reading(self) -> None:
        self._conn.set_paused(False)

    def is_reading(self) -> bool:
        return not self._conn._paused

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if self._conn.raw is not None:
            self._conn.raw.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._conn.raw.get_write_buffer_size() if self._conn.raw is not None else 0


async def connect(loop: asyncio.AbstractEventLoop, factory: Callable[[], P], host: str, port: int, *,
                  context: ssl.SSLContext, server_hostname: str, timeout_s: float,
                  sessions: SessionCache | None = None) -> tuple[TLSTransport, P]:
    """Dial `host:port`, complete the TLS handshake, and return (transport, application protocol).

    With `sessions`, resume the last session to this server and remember the next one.
    """
    key = (server_hostname, port)
    session = sessions.get(key) if sessions is not None else None
    offer = sessions is not None and sessions.wants(key, loop.time())

    def remember(new: ssl.SSLSession) -> None:
        assert sessions is not None
        sessions.put(key, new, loop.time())

    _, conn = await asyncio.wait_for(
        loop.create_connection(lambda: TLSConnection(context, factory, server_side=False,
                                                     server_hostname=server_hostname, handshake_timeout_s=timeout_s,
                                                     session=session,
                                                     on_session=remember if offer else None),
                               host, port), timeout_s)
    transport = await conn.handshake
    return transport, cast(P, conn.app)


async def start_client(transport: asyncio.Transport, factory: Callable[[str | None], P], *,
                       context: ssl.SSLContext, server_hostname: str | None,
                       timeout_s: float) -> tuple[TLSTransport, P]:
    """Run a TLS client over a transport that is already connected (TLS inside a tunnel stream), and
    return (TLS transport, application protocol) once the handshake is done. `factory` gets the
    protocol the server chose by ALPN (None without one)."""
    conn: TLSConnection = TLSConnection(context, lambda: factory(conn.ssl_object.selected_alpn_protocol()),
                                        server_side=False, server_hostname=server_hostname,
                                        handshake_timeout_s=timeout_s)
    transport.set_protocol(conn)
    conn.connection_made(transport)
    tls_transport = await conn.handshake
    return tls_transport, cast(P, conn.app)
