"""`Client`: dial the engine, open control channels, and dial private tunnels (protocol facts §6.3)."""

from __future__ import annotations

from portway import __version__
from portway.agent.api import EngineApi
from portway.agent.control import ControlChannel
from portway.agent.options import AgentOptions, TLSOptions, ssl_context
from portway.agent.stream import DatagramStream, EngineDialer, Stream, open_stream
from portway.wire import messages
from portway.wire.messages import ClientDetails


class Client:
    """Entry point of the SDK.

    >>> client = Client("localhost:8443", token, tls=TLSOptions(ca_file="ca.pem"))
    >>> control = await client.connect()
    >>> tunnel = await control.create_tunnel(protocol="http")
    >>> await tunnel.forward_to("127.0.0.1", 8080)
    """

    def __init__(self, engine: str, token: str | None = None, *, tls: TLSOptions | None = None,
                 heartbeat_interval_s: float = 5.0, connect_timeout_s: float = 15.0,
                 operation_timeout_s: float = 30.0, zero_rtt: bool = True) -> None:
        self.options = AgentOptions(engine=engine, token=token, tls=tls or TLSOptions(),
                                    heartbeat_interval_s=heartbeat_interval_s, connect_timeout_s=connect_timeout_s,
                                    operation_timeout_s=operation_timeout_s, zero_rtt=zero_rtt)
        self.options.host_port  # validate now, not at first dial  # noqa: B018
        self.dialer = EngineDialer(self.options, ssl_context(self.options.tls))

    async def connect(self) -> ControlChannel:
        """Open a control channel. Raises `EngineRejected` (e.g. code 1000 for a bad token) or
        `TransportError` when the engine cannot be reached."""
        _, control = await self.dialer.connect(lambda: ControlChannel(self.dialer))
        try:
            await control._open(self.options.token)
        except BaseException:
            if control.transport is not None:
                control.transport.close()
            raise
        return control

    async def dial(self, tunnel: str, *, zero_rtt: bool | None = None) -> Stream:
        """Open a stream to a private tunnel by name or id (§2.7)."""
        zero = self.options.zero_rtt if zero_rtt is None else zero_rtt
        first = messages.stream_req(ClientDetails.local(self.options.token, version=__version__), tunnel, zero)
        return await open_stream(self.dialer, first, None if zero else "stream_rsp")

    async def dial_datagram(self, tunnel: str) -> DatagramStream:
        """Dial a private datagram tunnel; packets are length-framed on the stream (§2.8)."""
        return DatagramStream(await self.dial(tunnel, zero_rtt=False))

    @property
    def api(self) -> EngineApi:
        """The Engine HTTP API with this client's engine, token and TLS trust (list tunnels, clients...)."""
        return EngineApi(self.options)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None
