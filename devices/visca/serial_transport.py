"""VISCA over RS-232/RS-422: pyserial for the port settings, the event loop for readiness.

The port is opened non-blocking (8N1, no flow control, DTR held high) and its file
descriptor watched with ``loop.add_reader``, so nothing polls.
"""

from __future__ import annotations

import asyncio
import logging

import serial

from devices.visca.codec import ViscaFramer
from devices.visca.transport import PacketSink, ViscaTransport

logger = logging.getLogger(__name__)

BAUD_RATES = (9600, 19200, 38400)


class SerialTransport(ViscaTransport):
    broadcast = True

    def __init__(self, port: str, baudrate: int = 9600) -> None:
        if baudrate not in BAUD_RATES:
            raise ValueError(f"VISCA baud rate must be one of {BAUD_RATES}, got {baudrate}")
        self.port = port
        self.baudrate = baudrate
        self._serial: serial.Serial | None = None
        self._sink: PacketSink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._framer = ViscaFramer()

    def __repr__(self) -> str:
        return f"SerialTransport({self.port!r}, {self.baudrate})"

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    async def open(self, sink: PacketSink) -> None:
        if self._serial is not None:
            raise RuntimeError("serial transport is already open")
        port = serial.Serial(
            port=self.port,
            baudrate=self.baudrate,
            bytesize=serial.EIGHTBITS,
            parity=serial.PARITY_NONE,
            stopbits=serial.STOPBITS_ONE,
            timeout=0,  # reads return what is there
            xonxoff=False,
            rtscts=False,
            dsrdtr=False,  # DTR stays high (pyserial asserts it on open)
        )
        self._loop = asyncio.get_running_loop()
        self._framer = ViscaFramer()
        self._serial = port
        self._sink = sink
        self._loop.add_reader(port.fileno(), self._readable)

    def send(self, packet: bytes) -> None:
        if self._serial is None:
            raise OSError(f"serial port {self.port} is not open")
        try:
            self._serial.write(packet)
        except serial.SerialException as exc:
            self._lost(exc)
            raise

    async def close(self) -> None:
        port, self._serial = self._serial, None
        if port is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(port.fileno())
        port.close()

    def _readable(self) -> None:
        port = self._serial
        if port is None:
            return
        try:
            data = port.read(port.in_waiting or 1)
        except (serial.SerialException, OSError) as exc:
            self._lost(exc)
            return
        sink = self._sink
        for packet in self._framer.feed(data):
            if sink is not None:
                sink.packet_received(packet)

    def _lost(self, exc: Exception) -> None:
        port, self._serial = self._serial, None
        if port is None:
            return
        logger.info("serial port %s lost: %s", self.port, exc)
        if self._loop is not None:
            self._loop.remove_reader(port.fileno())
        port.close()
        if self._sink is not None:
            self._sink.connection_lost(exc)
