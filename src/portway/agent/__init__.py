"""The Portway agent SDK: publish local services through an engine, or dial private tunnels."""

from portway.agent.client import Client
from portway.agent.control import ControlChannel
from portway.agent.observe import ForwardedStream, HttpExchange, StreamObserver
from portway.agent.options import TLSOptions
from portway.agent.reconnect import Backoff, is_fatal, keep_tunnel
from portway.agent.stream import DatagramStream, Stream
from portway.agent.tunnel import Tunnel
from portway.wire.hostnames import forwarding_address

__all__ = [
    "Backoff",
    "Client",
    "ControlChannel",
    "DatagramStream",
    "ForwardedStream",
    "HttpExchange",
    "Stream",
    "StreamObserver",
    "TLSOptions",
    "Tunnel",
    "forwarding_address",
    "is_fatal",
    "keep_tunnel",
]
