"""ClientHello peek on real hellos made by the stdlib's OpenSSL, and on hand-built and broken ones."""

from __future__ import annotations

import ssl
import struct
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portway.errors import PortwayError
from portway.wire.clienthello import MAX_HELLO_BYTES, ClientHello, NotTLS, peek

FAST = settings(max_examples=50, deadline=None, database=None, derandomize=True)


@cache
def real_hello(
    server_name: str | None = "a.t.localhost", alpn: tuple[str, ...] = ("h2", "http/1.1")
) -> bytes:
    """The first flight of a real TLS client (one or more records), captured from a memory BIO."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if server_name is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(list(alpn))
    outgoing = ssl.MemoryBIO()
    tls = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    data = outgoing.read()
    assert data[0] == 22
    return data


def records(handshake: bytes, sizes: list[int], version: bytes = b"\x03\x01") -> bytes:
    """Frame `handshake` bytes as TLS handshake records, cut after each of `sizes` bytes."""
    chunks: list[bytes] = []
    pos = 0
    for size in sizes:
        chunks.append(handshake[pos : pos + size])
        pos += size
    chunks.append(handshake[pos:])
    return b"".join(b"\x16" + version + struct.pack(">H", len(c)) + c for c in chunks if c)


def handshake_of(flight: bytes) -> bytes:
    """The handshake bytes of the first record (a stdlib ClientHello fits in one)."""
    length = struct.unpack(">H", flight[3:5])[0]
    return flight[5 : 5 + length]


def vec(length_bytes: int, body: bytes) -> bytes:
    return len(body).to_bytes(length_bytes, "big") + body


def build_hello(
    server_name: bytes | None = None,
    alpn: list[bytes] | None = None,
    *,
    extensions: bool = True,
    extra_extensions: bytes = b"",
) -> bytes:
    """A minimal, well-formed TLS 1.2-style ClientHello record, built by hand."""
    body = b"\x03\x03" + b"\x11" * 32 + vec(1, b"") + vec(2, b"\x13\x01") + vec(1, b"\x00")
    if extensions:
        ext = b""
        if server_name is not None:
            ext += b"\x00\x00" + vec(2, vec(2, b"\x00" + vec(2, server_name)))
        if alpn is not None:
            ext += b"\x00\x10" + vec(2, vec(2, b"".join(vec(1, p) for p in alpn)))
        ext += extra_extensions
        body += vec(2, ext)
    handshake = b"\x01" + vec(3, body)
    return records(handshake, [])


# ---- real ClientHellos ---------------------------------------------------------------------------


def test_sni_and_alpn_of_a_real_hello() -> None:
    assert peek(real_hello()) == ClientHello("a.t.localhost", ("h2", "http/1.1"))


def test_rstream_alpn() -> None:
    expected = ClientHello("engine.example.com", ("rstrm/1",))
    assert peek(real_hello("engine.example.com", ("rstrm/1",))) == expected


def test_no_alpn() -> None:
    assert peek(real_hello("a.t.localhost", ())) == ClientHello("a.t.localhost", ())


def test_no_sni() -> None:
    hello = peek(real_hello(None, ("h2",)))
    assert hello is not None
    assert hello.server_name is None
    assert hello.alpn == ("h2",)


def test_server_name_is_lowercased() -> None:
    hello = peek(real_hello("Mixed.T.LocalHost", ()))
    assert hello is not None
    assert hello.server_name == "mixed.t.localhost"


def test_every_prefix_needs_more_bytes() -> None:
    data = real_hello()
    for end in range(len(data)):
        assert peek(data[:end]) is None, end
    assert peek(data) is not None


def test_bytes_after_the_hello_are_ignored() -> None:
    data = real_hello()
    assert peek(data + b"\x17\x03\x03\x00\x05hello") == peek(data)
    assert peek(data + data) == peek(data)


@pytest.mark.parametrize("cut", [1, 3, 4, 5, 38, 100, -1])
def test_hello_split_across_two_records(cut: int) -> None:
    handshake = handshake_of(real_hello())
    size = cut % len(handshake)
    split = records(handshake, [size])
    assert split.count(b"\x16\x03\x01") >= 2
    assert peek(split) == ClientHello("a.t.localhost", ("h2", "http/1.1"))
    first_record_end = 5 + size
    for end in (first_record_end, first_record_end + 4, len(split) - 1):
        assert peek(split[:end]) is None


@FAST
@given(data=st.data())
def test_hello_fragmented_into_many_records(data: st.DataObject) -> None:
    handshake = handshake_of(real_hello())
    sizes = data.draw(st.lists(st.integers(1, 64), max_size=12))
    assert peek(records(handshake, sizes, version=b"\x03\x03")) == ClientHello(
        "a.t.localhost", ("h2", "http/1.1")
    )


# ---- hand-built hellos ---------------------------------------------------------------------------


def test_hand_built_hello() -> None:
    assert peek(build_hello(b"x.example", [b"h2"])) == ClientHello("x.example", ("h2",))


def test_hello_without_extensions() -> None:
    assert peek(build_hello(extensions=False)) == ClientHello(None, ())


def test_empty_extensions() -> None:
    assert peek(build_hello()) == ClientHello(None, ())


def test_trailing_dot_is_stripped() -> None:
    hello = peek(build_hello(b"A.T.LocalHost."))
    assert hello is not None
    assert hello.server_name == "a.t.localhost"


def test_unknown_extensions_are_skipped() -> None:
    unknown = b"\xfa\xfa" + vec(2, b"") + b"\x00\x2b" + vec(2, b"\x02\x03\x04")
    assert peek(build_hello(b"x", [b"h2"], extra_extensions=unknown)) == ClientHello("x", ("h2",))


def test_non_host_name_types_are_ignored() -> None:
    ext = b"\x00\x00" + vec(2, vec(2, b"\x07" + vec(2, b"other")))
    assert peek(build_hello(extra_extensions=ext)) == ClientHello(None, ())


def test_non_ascii_server_name_is_not_tls() -> None:
    with pytest.raises(NotTLS):
        peek(build_hello("é.example".encode()))


sni_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-", min_size=1, max_size=60)
alpn_ids = st.lists(st.binary(min_size=1, max_size=20), max_size=5)


@FAST
@given(name=st.none() | sni_names, alpn=st.none() | alpn_ids)
def test_hand_built_round_trip(name: str | None, alpn: list[bytes] | None) -> None:
    hello = peek(build_hello(None if name is None else name.encode(), alpn))
    assert hello is not None
    assert hello.server_name == (None if name is None else name.rstrip("."))
    assert hello.alpn == tuple(p.decode("latin-1") for p in alpn or [])


# ---- not TLS -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n",
        b"\x00",
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"\x17\x03\x03\x00\x10" + b"\x00" * 16,  # application data first
        b"\x16\x02\x00\x00\x04\x01\x00\x00\x00",  # record version major is not 3
        b"\x16\x03\x01\x00\x00",  # empty record
        b"\x16\x03\x01\x48\x01" + b"\x01",  # record longer than TLS allows
        b"\x16\x03\x01\x00\x04\x02\x00\x00\x00",  # a ServerHello, not a ClientHello
        b"\x16\x03\x01\x00\x04\x01\x00\x80\x01",  # ClientHello claims more than MAX_HELLO_BYTES
        b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x03",  # ClientHello body truncated inside its fields
    ],
)
def test_not_tls(data: bytes) -> None:
    with pytest.raises(NotTLS):
        peek(data)


def test_empty_and_tiny_inputs_need_more() -> None:
    assert peek(b"") is None
    assert peek(b"\x16") is None
    assert peek(b"\x16\x03\x01\x02") is None


def test_second_record_not_handshake() -> None:
    handshake = handshake_of(real_hello())
    split = records(handshake, [50])
    broken = split[: 5 + 50] + b"\x17" + split[5 + 50 + 1 :]
    with pytest.raises(NotTLS):
        peek(broken)


def test_buffering_is_bounded() -> None:
    """An incomplete hello may not make the caller buffer more than MAX_HELLO_BYTES."""
    declared = MAX_HELLO_BYTES - 100
    first = b"\x01" + declared.to_bytes(3, "big") + b"\x00" * 17_996
    data = b"\x16\x03\x01" + struct.pack(">H", len(first)) + first
    assert peek(data) is None
    data += b"\x16\x03\x01" + struct.pack(">H", 18_000) + b"\x00" * 15_000
    assert len(data) > MAX_HELLO_BYTES
    with pytest.raises(NotTLS):
        peek(data)


def test_truncated_sni_vector() -> None:
    ext = b"\x00\x00" + vec(2, b"\x00\x10\x00")  # server_name_list claims 16 bytes, has 1
    with pytest.raises(NotTLS):
        peek(build_hello(extra_extensions=ext))


def test_not_tls_is_a_portway_error() -> None:
    assert issubclass(NotTLS, PortwayError)


# ---- garbage -------------------------------------------------------------------------------------


def _peek_or_not_tls(data: bytes) -> None:
    try:
        result = peek(data)
    except NotTLS:
        return
    assert result is None or isinstance(result, ClientHello)


@FAST
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_not_tls(data: bytes) -> None:
    _peek_or_not_tls(data)


@FAST
@given(body=st.binary(max_size=300), version=st.sampled_from([b"\x03\x01", b"\x03\x03"]))
def test_garbage_handshake_records_only_raise_not_tls(body: bytes, version: bytes) -> None:
    _peek_or_not_tls(b"\x16" + version + struct.pack(">H", len(body)) + body)
    _peek_or_not_tls(b"\x16" + version + struct.pack(">H", len(body) + 4) + b"\x01" + vec(3, body))


@FAST
@given(data=st.data())
def test_corrupted_real_hello_only_raises_not_tls(data: st.DataObject) -> None:
    hello = bytearray(real_hello())
    for _ in range(data.draw(st.integers(1, 4))):
        hello[data.draw(st.integers(0, len(hello) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(hello)))
    _peek_or_not_tls(bytes(hello[:cut]))
