"""The MLLP listener: monitors and gateways connect, send ORU^R01, get ACKs.

A thin asyncio shell around ``MLLPFramer``, ``decode_oru`` and ``build_ack``. Per
message, in order per connection: decode -> ``await sink(samples)`` -> ACK ``AA``
-> ``on_stored(samples)``. ``AA`` is sent only after the sink returned, so only for
samples stored durably. A message that cannot be read gets ``AE``/``AR`` with a
reason; a sink failure gets ``AE`` "not stored". The connection goes on either way.

Bounded: ``max_connections`` (further connections are closed at once),
``max_message_size`` (a larger frame is dropped and answered ``AR``), an idle timeout
and a write timeout. One message per connection is in progress at a time, and the
framer holds at most one message, so memory is bounded per connection.

Logging: connection events at INFO; per-message lines at DEBUG carry the control id,
the device id and counts; errors at WARNING carry the location and reason. Never a
patient identifier, a name, a value or a raw message.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from devices.vitals import SampleSink, VitalSample

from .ack import Acknowledgement, Responder, build_ack, encode_ack
from .errors import MessageError, StorageError
from .mllp import (
    DEFAULT_MAX_MESSAGE_SIZE,
    BytesDiscarded,
    Frame,
    FrameTooLarge,
    MLLPFramer,
    encode_frame,
)
from .oru import MessageHeader, OruConfig, decode_oru, read_header

logger = logging.getLogger(__name__)

StoredCallback = Callable[[Sequence[VitalSample]], Awaitable[None] | None]
"""Called with the samples of each message after they were stored and acknowledged."""

READ_SIZE = 64 * 1024
DECODE_IN_THREAD = 64 * 1024
"""Messages larger than this are decoded in a worker thread (python-hl7 needs ~1 s for
a 1 MB waveform message): the event loop keeps serving the other connections."""


@dataclass(frozen=True)
class ListenerConfig:
    host: str = "127.0.0.1"
    port: int = 2575
    """0 picks a free port (see ``HL7Listener.port``)."""
    max_connections: int = 64
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    idle_timeout: float = 3900.0
    """Seconds without a byte before a connection is closed: longer than the slowest
    trend interval of common monitors (60 min)."""
    write_timeout: float = 30.0
    responder: Responder = field(default_factory=Responder)
    oru: OruConfig = field(default_factory=OruConfig)

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {self.max_connections}")
        if self.max_message_size < 1:
            raise ValueError(f"max_message_size must be positive, got {self.max_message_size}")
        if not self.idle_timeout > 0 or not self.write_timeout > 0:
            raise ValueError("idle_timeout and write_timeout must be positive")


@dataclass
class ListenerStats:
    connections_accepted: int = 0
    connections_refused: int = 0
    connections_idle_closed: int = 0
    messages: int = 0
    accepted: int = 0
    errors: int = 0
    rejected: int = 0
    store_failures: int = 0
    samples_stored: int = 0
    bytes_discarded: int = 0
    frames_too_large: int = 0


@dataclass(frozen=True)
class Outcome:
    """The result of one message: the ACK bytes to send and the samples stored."""

    ack: bytes
    code: str
    samples: tuple[VitalSample, ...] = ()


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _Connection:
    def __init__(self, number: int, peer: str, writer: asyncio.StreamWriter,
                 max_message_size: int) -> None:
        self.number = number
        self.peer = peer
        self.writer = writer
        self.framer = MLLPFramer(max_message_size)
        self.busy = False
        self.task: asyncio.Task[None] | None = None

    def __str__(self) -> str:
        return f"hl7 conn {self.number} ({self.peer})"


class HL7Listener:
    """``HL7Listener(sink, config, on_stored=...)``; ``await start()`` ... ``await stop()``.

    ``sink`` stores samples durably (``SampleStore.store``); ``on_stored`` (optional,
    sync or async) sees them after the ACK, e.g. to forward them to live rooms: its
    failures are logged and change nothing for the sender.
    """

    def __init__(self, sink: SampleSink, config: ListenerConfig | None = None, *,
                 on_stored: StoredCallback | None = None,
                 clock: Callable[[], datetime] = _utc_now) -> None:
        self.config = config or ListenerConfig()
        self.stats = ListenerStats()
        self._sink = sink
        self._on_stored = on_stored
        self._clock = clock
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._numbers = itertools.count(1)
        self._control_ids = itertools.count(1)
        self._control_prefix = f"HZ{int(time.time()) & 0xFFFFFFF:07X}"
        self._closing = False

    @property
    def port(self) -> int:
        """The bound port (after ``start``)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the HL7 listener is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def start(self) -> None:
        if self._closing:
            raise RuntimeError("the HL7 listener is stopped")
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._accept, self.config.host,
                                                  self.config.port)
        logger.info("hl7 listener on %s:%d", self.config.host, self.port)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, let messages in progress finish (up to ``grace`` s), close all.

        Idempotent.
        """
        self._closing = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks = [c.task for c in self._connections if c.task is not None]
        for connection in list(self._connections):
            if not connection.busy and connection.task is not None:
                connection.task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
            logger.info("hl7 listener stopped")

    async def __aenter__(self) -> HL7Listener:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else str(peername)
        if self._closing or len(self._connections) >= self.config.max_connections:
            self.stats.connections_refused += 1
            logger.warning("hl7 connection from %s refused: %d connections open (max %d)",
                           peer, len(self._connections), self.config.max_connections)
            writer.close()
            return
        connection = _Connection(next(self._numbers), peer, writer,
                                 self.config.max_message_size)
        connection.task = asyncio.current_task()
        self._connections.add(connection)
        self.stats.connections_accepted += 1
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        logger.info("%s: connected", connection)
        try:
            await self._serve(connection, reader)
        except asyncio.CancelledError:
            pass
        except (ConnectionError, TimeoutError) as exc:
            logger.info("%s: connection lost (%s)", connection, type(exc).__name__)
        finally:
            self._connections.discard(connection)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            logger.info("%s: closed", connection)

    async def _serve(self, connection: _Connection, reader: asyncio.StreamReader) -> None:
        while not self._closing:
            try:
                async with asyncio.timeout(self.config.idle_timeout):
                    data = await reader.read(READ_SIZE)
            except TimeoutError:
                self.stats.connections_idle_closed += 1
                logger.info("%s: idle for %.0f s, closing", connection,
                            self.config.idle_timeout)
                return
            if not data:
                return
            for framer_event in connection.framer.feed(data):
                connection.busy = True
                try:
                    await self._on_event(connection, framer_event)
                finally:
                    connection.busy = False
                if self._closing:
                    return

    async def _on_event(self, connection: _Connection,
                        framer_event: Frame | BytesDiscarded | FrameTooLarge) -> None:
        if isinstance(framer_event, BytesDiscarded):
            self.stats.bytes_discarded += framer_event.count
            logger.warning("%s: %d bytes outside MLLP frames discarded", connection,
                           framer_event.count)
            return
        if isinstance(framer_event, FrameTooLarge):
            self.stats.frames_too_large += 1
            outcome = self._too_large(str(connection), framer_event)
        else:
            outcome = await self.process(framer_event.payload, connection=str(connection))
        async with asyncio.timeout(self.config.write_timeout):
            connection.writer.write(encode_frame(outcome.ack))
            await connection.writer.drain()
        if outcome.samples and self._on_stored is not None:
            await self._notify(connection, outcome.samples)

    async def process(self, payload: bytes, *, connection: str = "hl7") -> Outcome:
        """Decode, store and acknowledge one message (without sending the ACK)."""
        self.stats.messages += 1
        try:
            header = read_header(payload)
        except MessageError as error:
            return self._refuse(connection, None, error)
        try:
            if len(payload) > DECODE_IN_THREAD:
                message = await asyncio.to_thread(decode_oru, payload, self.config.oru, header)
            else:
                message = decode_oru(payload, self.config.oru, header)
        except MessageError as error:
            return self._refuse(connection, header, error)
        samples = message.samples
        if samples:
            try:
                await self._sink(samples)
            except Exception as exc:
                # Only the type (and our own StorageError text): a sink's exception may
                # quote the data it failed to store.
                self.stats.store_failures += 1
                self.stats.errors += 1
                detail = str(exc) if isinstance(exc, StorageError) else type(exc).__name__
                logger.error("%s: message %s not stored (%s): AE", connection,
                             header.control_id, detail)
                return Outcome(self._ack(header, Acknowledgement.not_stored()), "AE")
        self.stats.accepted += 1
        self.stats.samples_stored += len(samples)
        logger.debug("%s: message %s from %s: %d samples stored (%d rows skipped): AA",
                     connection, header.control_id, header.device_id, len(samples),
                     message.skipped)
        return Outcome(self._ack(header, Acknowledgement.accept()), "AA", samples)

    def _refuse(self, connection: str, header: MessageHeader | None,
                error: MessageError) -> Outcome:
        ack = Acknowledgement.for_error(error)
        if ack.code == "AR":
            self.stats.rejected += 1
        else:
            self.stats.errors += 1
        logger.warning("%s: message %s %s: %s", connection,
                       header.control_id if header else "(no MSH)", ack.code, error)
        return Outcome(self._ack(header, ack), ack.code)

    def _too_large(self, connection: str, framer_event: FrameTooLarge) -> Outcome:
        self.stats.messages += 1
        self.stats.rejected += 1
        try:
            header: MessageHeader | None = read_header(framer_event.head)
        except MessageError:
            header = None
        logger.warning("%s: message %s of more than %d bytes dropped: AR", connection,
                       header.control_id if header else "(no MSH)",
                       self.config.max_message_size)
        reason = f"message larger than {self.config.max_message_size} bytes"
        return Outcome(self._ack(header, Acknowledgement("AR", reason)), "AR")

    def _ack(self, header: MessageHeader | None, ack: Acknowledgement) -> bytes:
        control_id = f"{self._control_prefix}{next(self._control_ids)}"
        text = build_ack(header, ack, control_id=control_id, now=self._clock(),
                         responder=self.config.responder)
        return encode_ack(text, header)

    async def _notify(self, connection: _Connection, samples: Sequence[VitalSample]) -> None:
        assert self._on_stored is not None
        try:
            result = self._on_stored(samples)
            if result is not None:
                await result
        except Exception as exc:
            logger.error("%s: on_stored callback failed (%s)", connection, type(exc).__name__)
