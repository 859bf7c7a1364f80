"""SerialMonitor: the thin asyncio shell that reads a serial oximeter and delivers its samples.

One task per monitor: open the port with pyserial (non-blocking), wait for it to become
readable with ``loop.add_reader`` on its file descriptor, read what is there, feed the
protocol's sans-I/O parser and await the ``SampleSink`` before reading again. Samples are
therefore delivered in order, one batch at a time, and a slow sink holds reading back
(the tty buffers meanwhile) instead of piling batches up in memory. A sink that raises
loses that batch (logged); the feed goes on.

The port is lost when a read fails (EIO: a USB adapter unplugged, a pty's master closed),
at end of file, or when the port's path no longer names the open device (checked every
``watch_interval`` seconds: the device node vanished, a symlink now points elsewhere).
The monitor then reports "disconnected", delivers what the parser still holds, and tries
to reopen the port after ``backoff_initial`` seconds, doubling up to ``backoff_max``. The
backoff starts over once a connection has received data: a port that opens but fails at
once keeps backing off instead of being reopened twice a second forever.

POSIX only (``add_reader`` on a tty's file descriptor; not the Windows proactor loop).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import serial

from devices.serial_monitors.backoff import Backoff
from devices.serial_monitors.protocol import SampleParser, SerialProtocol
from devices.vitals import SampleSink, VitalSample

logger = logging.getLogger(__name__)


class ConnectionState(StrEnum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


class SerialMonitorError(Exception):
    """Base class of this package's errors."""


class PortLostError(SerialMonitorError):
    """The open port failed: read error, end of file, or its path now names another device."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def _identity(stat: os.stat_result) -> tuple[int, int, int]:
    return stat.st_dev, stat.st_ino, stat.st_rdev


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _wait_readable(fd: int, timeout: float) -> bool:
    """True once ``fd`` is readable, False after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, _resolve, ready)
    try:
        done, _ = await asyncio.wait({ready}, timeout=timeout)
        return bool(done)
    finally:
        loop.remove_reader(fd)
        ready.cancel()


class SerialMonitor:
    """Reads one serial monitor on ``port`` and delivers its samples to ``sink``.

    ``on_state`` is called with the new ``ConnectionState`` on every change. ``baudrate``
    and ``parity`` default to the protocol's. ``clock`` gives the (timezone-aware) time
    passed to the parser with each read.
    """

    def __init__(self, port: str | os.PathLike[str], protocol: SerialProtocol,
                 sink: SampleSink, device_id: str, *,
                 on_state: Callable[[ConnectionState], None] | None = None,
                 baudrate: int | None = None, parity: str | None = None,
                 backoff_initial: float = 0.5, backoff_max: float = 10.0,
                 watch_interval: float = 1.0, read_size: int = 4096,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.port = os.fspath(port)
        self.protocol = protocol
        self.device_id = device_id
        self.baudrate = baudrate or protocol.baudrate
        self.parity = parity or protocol.parity
        if self.parity not in serial.PARITY_NAMES:
            raise ValueError(f"unknown parity {self.parity!r}")
        if watch_interval <= 0 or read_size <= 0:
            raise ValueError("watch_interval and read_size must be positive")
        self.watch_interval = watch_interval
        self.read_size = read_size
        self.failed_opens = 0
        """Failed attempts to open the port since the monitor last connected."""
        self.connections = 0
        """Successful opens since the monitor was created."""
        self._sink = sink
        self._on_state = on_state
        self._clock = clock
        self._backoff = Backoff(backoff_initial, backoff_max)
        self._state = ConnectionState.DISCONNECTED
        self._retry_delay: float | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def retry_delay(self) -> float | None:
        """The wait before the next attempt to open the port; None while connected."""
        return self._retry_delay

    async def start(self) -> None:
        """Start reading (and reconnecting) in the background; does nothing if running."""
        if self.running:
            return
        self._backoff.reset()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"serial-monitor-{self.device_id}")
        self._task.add_done_callback(self._task_done)

    async def stop(self) -> None:
        """Stop reading and close the port; does nothing if not running."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        except Exception:  # already logged by _task_done
            pass
        self._retry_delay = None

    # ----------------------------------------------------------------- internals

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s: serial monitor failed", self.device_id,
                         exc_info=task.exception())

    async def _run(self) -> None:
        while True:
            port = self._open()
            if port is not None:
                await self._session(port)
            delay = self._backoff.next_delay()
            self._retry_delay = delay
            await asyncio.sleep(delay)

    def _open(self) -> Any:
        try:
            return serial.Serial(port=self.port, baudrate=self.baudrate,
                                 bytesize=self.protocol.bytesize, parity=self.parity,
                                 stopbits=self.protocol.stopbits, timeout=0, exclusive=True)
        except OSError as exc:  # serial.SerialException is an OSError
            self.failed_opens += 1
            level = logging.WARNING if self.failed_opens == 1 else logging.DEBUG
            logger.log(level, "%s: cannot open %s (attempt %d): %s", self.device_id, self.port,
                       self.failed_opens, exc)
            return None

    async def _session(self, port: Any) -> None:
        self.failed_opens = 0
        self.connections += 1
        self._retry_delay = None
        parser = self.protocol.new_parser(self.device_id)
        self._set_state(ConnectionState.CONNECTED)
        try:
            await self._pump(port.fileno(), parser)
        except PortLostError as exc:
            logger.warning("%s: lost %s: %s", self.device_id, self.port, exc)
        finally:
            try:
                port.close()
            except OSError:
                logger.debug("%s: error closing %s", self.device_id, self.port, exc_info=True)
            self._set_state(ConnectionState.DISCONNECTED)
        await self._deliver(parser.flush())

    async def _pump(self, fd: int, parser: SampleParser) -> None:
        loop = asyncio.get_running_loop()
        identity = _identity(os.fstat(fd))
        next_check = loop.time() + self.watch_interval
        while True:
            if await _wait_readable(fd, max(0.0, next_check - loop.time())):
                data = self._read(fd)
                if data:
                    self._backoff.reset()
                    await self._deliver(parser.feed(data, self._clock()))
            if loop.time() >= next_check:
                self._check_port(identity)
                next_check = loop.time() + self.watch_interval

    def _read(self, fd: int) -> bytes:
        try:
            data = os.read(fd, self.read_size)
        except BlockingIOError:
            return b""
        except OSError as exc:
            raise PortLostError(f"read failed: {exc.strerror or exc}") from exc
        if not data:
            raise PortLostError("end of file")
        return data

    def _check_port(self, identity: tuple[int, int, int]) -> None:
        try:
            stat = os.stat(self.port)
        except OSError as exc:
            raise PortLostError("the port's path vanished") from exc
        if _identity(stat) != identity:
            raise PortLostError("the port's path now names another device")

    async def _deliver(self, samples: Sequence[VitalSample]) -> None:
        if not samples:
            return
        try:
            await self._sink(samples)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("%s: sample sink failed; %d samples lost", self.device_id,
                             len(samples))

    def _set_state(self, state: ConnectionState) -> None:
        if state == self._state:
            return
        self._state = state
        logger.info("%s: %s (%s)", self.device_id, state.value, self.port)
        if self._on_state is not None:
            try:
                self._on_state(state)
            except Exception:
                logger.exception("%s: state callback failed", self.device_id)
