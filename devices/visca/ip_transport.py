"""VISCA over the network: Sony's UDP protocol with its header, raw VISCA over TCP or UDP.

Sony cameras (BRC, SRG) take the 8-byte header on UDP port 52381; other vendors take
bare VISCA packets over TCP (PTZOptics) or UDP (Avonic, port 1259).
"""

from __future__ import annotations

import abc
import asyncio
import logging

from devices.visca.codec import ViscaFramer
from devices.visca.errors import CameraOffline, ViscaError
from devices.visca.sony_ip import (
    DEFAULT_PORT,
    MessageRejected,
    ReplyLost,
    ReplyReceived,
    ResetDone,
    ResetFailed,
    SendDatagram,
    SonyIpLink,
)
from devices.visca.transport import PacketSink, ViscaTransport

logger = logging.getLogger(__name__)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, owner: _UdpBase) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.owner._datagram(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the camera is not there (yet). Timeouts tell.
        logger.debug("%r: %s", self.owner, exc)


class _UdpBase(ViscaTransport):
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._udp: asyncio.DatagramTransport | None = None
        self._sink: PacketSink | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.host!r}, {self.port})"

    @property
    def is_open(self) -> bool:
        return self._udp is not None

    async def _open_socket(self, sink: PacketSink) -> None:
        if self._udp is not None:
            raise RuntimeError(f"{self!r} is already open")
        loop = asyncio.get_running_loop()
        udp, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self), remote_addr=(self.host, self.port)
        )
        self._udp = udp
        self._sink = sink

    async def close(self) -> None:
        udp, self._udp = self._udp, None
        if udp is not None:
            udp.close()

    def _sendto(self, data: bytes) -> None:
        if self._udp is None:
            raise OSError(f"{self!r} is not open")
        self._udp.sendto(data)

    @abc.abstractmethod
    def _datagram(self, data: bytes) -> None: ...


class RawUdpTransport(_UdpBase):
    """Bare VISCA packets in UDP datagrams (no header)."""

    async def open(self, sink: PacketSink) -> None:
        await self._open_socket(sink)

    def send(self, packet: bytes) -> None:
        self._sendto(packet)

    def _datagram(self, data: bytes) -> None:
        if self._sink is not None:
            for packet in ViscaFramer().feed(data):
                self._sink.packet_received(packet)


class SonyUdpTransport(_UdpBase):
    """Sony VISCA over IP: header, sequence numbers, RESET on open, resends.

    The camera address is fixed to 1. A message without reply is resent with the same
    sequence number every ``retransmit_interval`` up to ``max_retransmits`` times.
    """

    fixed_address = 1

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        retransmit_interval: float = 0.25,
        max_retransmits: int = 3,
    ) -> None:
        super().__init__(host, port)
        self.retransmit_interval = retransmit_interval
        self.max_retransmits = max_retransmits
        self.link = SonyIpLink(retransmit_interval, max_retransmits)
        self._timer: asyncio.TimerHandle | None = None
        self._reset_waiter: asyncio.Future[None] | None = None

    async def open(self, sink: PacketSink) -> None:
        """Open the socket and RESET the sequence numbers; CameraOffline if no answer."""
        await self._open_socket(sink)
        loop = asyncio.get_running_loop()
        self.link = SonyIpLink(self.retransmit_interval, self.max_retransmits)
        self._reset_waiter = loop.create_future()
        self.link.reset(loop.time())
        self._pump()
        try:
            await self._reset_waiter
        except BaseException:
            await self.close()
            raise
        finally:
            self._reset_waiter = None

    def send(self, packet: bytes) -> None:
        if self._udp is None:
            raise OSError(f"{self!r} is not open")
        self.link.send(packet, asyncio.get_running_loop().time())
        self._pump()

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._settle_reset(CameraOffline(f"{self!r} closed during RESET"))
        await super().close()

    def _datagram(self, data: bytes) -> None:
        try:
            self.link.datagram_received(data, asyncio.get_running_loop().time())
        except ValueError as exc:
            logger.debug("%r: ignored datagram: %s", self, exc)
            return
        self._pump()

    def _pump(self) -> None:
        if self._udp is None:
            return
        loop = asyncio.get_running_loop()
        for event in self.link.poll(loop.time()):
            self._handle(event)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.link.next_deadline()
        if deadline is not None and self._udp is not None:
            self._timer = loop.call_at(deadline, self._pump)

    def _handle(self, event: object) -> None:
        sink = self._sink
        match event:
            case SendDatagram(data):
                self._sendto(data)
            case ReplyReceived(packet, _):
                if sink is not None:
                    sink.packet_received(packet)
            case ReplyLost():
                if sink is not None:
                    sink.reply_lost()
            case MessageRejected(sequence):
                if sink is not None:
                    sink.message_rejected(
                        ViscaError(f"camera rejected message {sequence} (message type error)")
                    )
            case ResetDone():
                self._settle_reset(None)
            case ResetFailed():
                self._settle_reset(CameraOffline(f"no answer to VISCA-over-IP RESET from {self!r}"))

    def _settle_reset(self, error: Exception | None) -> None:
        waiter = self._reset_waiter
        if waiter is None or waiter.done():
            return
        if error is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(error)


class _Stream(asyncio.Protocol):
    def __init__(self, owner: TcpTransport) -> None:
        self.owner = owner
        self.framer = ViscaFramer()

    def data_received(self, data: bytes) -> None:
        sink = self.owner._sink
        for packet in self.framer.feed(data):
            if sink is not None:
                sink.packet_received(packet)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._connection_lost(exc)


class TcpTransport(ViscaTransport):
    """Bare VISCA packets over a TCP connection (PTZOptics and others)."""

    def __init__(self, host: str, port: int, *, connect_timeout: float = 2.0) -> None:
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self._tcp: asyncio.Transport | None = None
        self._sink: PacketSink | None = None

    def __repr__(self) -> str:
        return f"TcpTransport({self.host!r}, {self.port})"

    @property
    def is_open(self) -> bool:
        return self._tcp is not None

    async def open(self, sink: PacketSink) -> None:
        if self._tcp is not None:
            raise RuntimeError(f"{self!r} is already open")
        loop = asyncio.get_running_loop()
        tcp, _ = await asyncio.wait_for(
            loop.create_connection(lambda: _Stream(self), self.host, self.port),
            self.connect_timeout,
        )
        self._tcp = tcp
        self._sink = sink

    def send(self, packet: bytes) -> None:
        if self._tcp is None:
            raise OSError(f"{self!r} is not connected")
        self._tcp.write(packet)

    async def close(self) -> None:
        tcp, self._tcp = self._tcp, None
        if tcp is not None:
            tcp.close()

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._tcp is None:
            return  # we closed it
        self._tcp = None
        if self._sink is not None:
            self._sink.connection_lost(exc)
