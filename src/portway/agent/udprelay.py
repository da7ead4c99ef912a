"""`forward_to` for datagram tunnels: the packets framed on a tunnel stream (protocol facts §2.8) ⇄ a UDP
socket connected to the local service, one socket per stream (so replies find their way back).

UDP is lossy by contract, so nothing waits for a slow side: a packet for a stream whose write buffer is
above `HIGH_WATER_BYTES` is dropped, as a full socket buffer would drop it.
"""

from __future__ import annotations

import asyncio
import logging

from portway.agent.stream import Stream, UpstreamUnreachable
from portway.pipe import HIGH_WATER_BYTES
from portway.wire.errors import WireError
from portway.wire.framing import PacketDecoder, encode_packet

log = logging.getLogger("portway.agent.udp")

# Relays outlive the control channel that started them (established streams survive its loss): held here.
_RELAYS: set[asyncio.Task[None]] = set()


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, stream: Stream) -> None:
        self.stream = stream

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        writer = self.stream.writer
        if writer.is_closing() or writer.transport.get_write_buffer_size() > HIGH_WATER_BYTES:
            return
        writer.write(encode_packet(data))

    def error_received(self, exc: Exception) -> None:
        log.debug("udp upstream: %s", exc)  # e.g. ICMP port unreachable: the service may come back


async def open_udp(stream: Stream, host: str, port: int) -> asyncio.DatagramTransport:
    """A UDP socket connected to `host:port` whose packets go to `stream`."""
    try:
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _Upstream(stream), remote_addr=(host, port))
    except OSError as error:
        raise UpstreamUnreachable(f"cannot reach udp {host}:{port}: {error}") from error
    return transport


def relay(stream: Stream, udp: asyncio.DatagramTransport) -> None:
    """Start relaying in a task of its own; it ends with the stream."""
    task = asyncio.ensure_future(_downstream(stream, udp))
    _RELAYS.add(task)
    task.add_done_callback(_RELAYS.discard)


async def _downstream(stream: Stream, udp: asyncio.DatagramTransport) -> None:
    decoder = PacketDecoder()
    try:
        while data := await stream.read():
            for packet in decoder.feed(data):
                udp.sendto(packet)
    except WireError as error:
        log.info("datagram stream %s: %s", stream.stream_id, error)
    finally:
        udp.close()
        await stream.close()
