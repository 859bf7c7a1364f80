"""CameraSimulator: serves a :class:`SimulatedCamera` over a pty, Sony UDP, raw UDP and TCP.

Serial: :meth:`CameraSimulator.open_pty` creates a pseudo-terminal pair, keeps the
master and returns the slave's path for the driver to open with pyserial. VISCA over
IP: :meth:`~CameraSimulator.serve_udp` speaks Sony's header and sequence numbers
(RESET, ``0F 01`` for a sequence number it has seen, ``0F 02`` for a message type it
does not take) and can lose datagrams on purpose (``drop_requests``, ``drop_replies``).
One camera behind every endpoint, like a real camera with a serial port and a network
port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pty
import tty
from functools import partial
from typing import cast

from devices.visca.codec import INQUIRY, ViscaFramer
from devices.visca.simulated_camera import ReplyTo, SimulatedCamera
from devices.visca.sony_ip import (
    CONTROL_ACK,
    MESSAGE_TYPE_ERROR,
    RESET,
    SEQUENCE_ERROR,
    PayloadType,
    SonyIpMessage,
)

logger = logging.getLogger(__name__)

Address = tuple[str, int]


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, simulator: CameraSimulator) -> None:
        self.simulator = simulator
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)


class _SonyEndpoint(_Endpoint):
    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.simulator._sony_datagram(self, data, addr)


class _RawEndpoint(_Endpoint):
    def datagram_received(self, data: bytes, addr: Address) -> None:
        transport = self.transport
        if transport is not None:
            self.simulator._feed(data, ViscaFramer(), partial(transport.sendto, addr=addr))


class _TcpConnection(asyncio.Protocol):
    def __init__(self, simulator: CameraSimulator) -> None:
        self.simulator = simulator
        self.framer = ViscaFramer()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.simulator._connections.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.simulator._connections.discard(self.transport)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.simulator._feed(data, self.framer, self._write)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


class CameraSimulator:
    def __init__(self, camera: SimulatedCamera | None = None) -> None:
        self.camera = camera if camera is not None else SimulatedCamera()
        self.drop_requests = 0
        """Sony UDP: ignore the next N datagrams, as if the network lost them."""
        self.drop_replies = 0
        """Sony UDP: lose the next N VISCA replies (control replies still go out)."""
        self.corrupt_replies = 0
        """Sony UDP: replace the next N VISCA replies by a malformed one (``y0 7F FF``)."""
        self.datagrams: list[SonyIpMessage] = []
        """Every well-formed Sony UDP datagram received, dropped ones included."""
        self.last_sequence: int | None = None
        """The Sony sequence number last accepted (0 after RESET; None: accept any)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._ptys: list[tuple[int, int]] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._connections: set[asyncio.Transport] = set()
        self._endpoints: list[asyncio.DatagramTransport] = []

    async def __aenter__(self) -> CameraSimulator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def now(self) -> float:
        """The simulator's clock (the event loop's)."""
        return self._get_loop().time()

    # -- endpoints ---------------------------------------------------------------------

    async def open_pty(self) -> str:
        """A serial line: returns the path of the pty slave to open with pyserial."""
        loop = self._get_loop()
        master, slave = pty.openpty()
        tty.setraw(slave)  # no echo, no line editing, until the driver configures it
        os.set_blocking(master, False)
        self._ptys.append((master, slave))
        framer = ViscaFramer()
        loop.add_reader(master, self._pty_readable, master, framer)
        return os.ttyname(slave)

    async def serve_udp(self, host: str = "127.0.0.1", port: int = 0) -> Address:
        """Sony VISCA over IP; returns the bound (host, port)."""
        return await self._serve_datagrams(_SonyEndpoint(self), host, port)

    async def serve_raw_udp(self, host: str = "127.0.0.1", port: int = 0) -> Address:
        """Bare VISCA packets in UDP datagrams."""
        return await self._serve_datagrams(_RawEndpoint(self), host, port)

    async def serve_tcp(self, host: str = "127.0.0.1", port: int = 0) -> Address:
        """Bare VISCA over TCP; returns the bound (host, port)."""
        loop = self._get_loop()
        server = await loop.create_server(lambda: _TcpConnection(self), host, port)
        self._servers.append(server)
        bound = server.sockets[0].getsockname()
        return str(bound[0]), int(bound[1])

    async def close(self) -> None:
        """Close every endpoint; idempotent."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for master, slave in self._ptys:
            if self._loop is not None:
                self._loop.remove_reader(master)
            os.close(master)
            os.close(slave)
        self._ptys.clear()
        for endpoint in self._endpoints:
            endpoint.close()
        self._endpoints.clear()
        for connection in list(self._connections):
            connection.close()
        for server in self._servers:
            server.close()
            await server.wait_closed()
        self._servers.clear()

    # -- internals ---------------------------------------------------------------------

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    async def _serve_datagrams(self, endpoint: _Endpoint, host: str, port: int) -> Address:
        loop = self._get_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: endpoint, local_addr=(host, port)
        )
        self._endpoints.append(transport)
        bound = transport.get_extra_info("sockname")
        return str(bound[0]), int(bound[1])

    def _pty_readable(self, master: int, framer: ViscaFramer) -> None:
        try:
            data = os.read(master, 1024)
        except BlockingIOError:
            return
        except OSError as exc:
            logger.debug("pty read failed: %s", exc)
            self._get_loop().remove_reader(master)
            return
        self._feed(data, framer, partial(self._pty_write, master))

    @staticmethod
    def _pty_write(master: int, data: bytes) -> None:
        with contextlib.suppress(BlockingIOError):  # nobody reading: the line drops it
            os.write(master, data)

    def _feed(self, data: bytes, framer: ViscaFramer, reply_to: ReplyTo) -> None:
        now = self.now()
        overflows = framer.overflows
        packets = framer.feed(data)
        if framer.overflows > overflows:
            self.camera.receive_overlong(now, reply_to)
        for packet in packets:
            self.camera.receive(packet, now, reply_to)
        self._flush()

    def _flush(self) -> None:
        loop = self._get_loop()
        for reply_to, data in self.camera.poll(loop.time()):
            if reply_to is not None:
                reply_to(data)
        if self._timer is not None:
            self._timer.cancel()
        deadline = self.camera.next_deadline()
        self._timer = None if deadline is None else loop.call_at(deadline, self._flush)

    def _sony_datagram(self, endpoint: _Endpoint, data: bytes, addr: Address) -> None:
        transport = endpoint.transport
        try:
            message = SonyIpMessage.parse(data)
        except ValueError as exc:
            logger.debug("ignored datagram from %s: %s", addr, exc)
            return
        self.datagrams.append(message)
        if self.drop_requests > 0:
            self.drop_requests -= 1
            return
        if transport is None or not self.camera.responding:
            return

        def control(payload: bytes) -> None:
            reply = SonyIpMessage(PayloadType.CONTROL_REPLY, message.sequence, payload)
            transport.sendto(reply.serialize(), addr)

        if message.payload_type is PayloadType.CONTROL:
            if message.payload == RESET:
                self.last_sequence = 0
                control(CONTROL_ACK)
            else:
                control(MESSAGE_TYPE_ERROR)
            return
        is_inquiry = message.payload[1:2] == bytes((INQUIRY,))
        expected = PayloadType.INQUIRY if is_inquiry else PayloadType.COMMAND
        if message.payload_type is not expected:
            control(MESSAGE_TYPE_ERROR)
            return
        if self.last_sequence is not None and message.sequence <= self.last_sequence:
            control(SEQUENCE_ERROR)
            return
        self.last_sequence = message.sequence
        reply_to = partial(self._sony_reply, transport, addr, message.sequence)
        self._feed(message.payload, ViscaFramer(), reply_to)

    def _sony_reply(
        self, transport: asyncio.DatagramTransport, addr: Address, sequence: int, data: bytes
    ) -> None:
        if self.drop_replies > 0:
            self.drop_replies -= 1
            return
        if self.corrupt_replies > 0:
            self.corrupt_replies -= 1
            data = bytes((data[0], 0x7F, 0xFF))
        if not transport.is_closing():
            transport.sendto(SonyIpMessage(PayloadType.REPLY, sequence, data).serialize(), addr)
