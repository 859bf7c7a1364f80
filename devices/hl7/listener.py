"""The MLLP listener: monitors and gateways connect, send ORU^R01, get ACKs.

A thin asyncio shell around ``MLLPFramer``, ``decode_oru`` and ``build_ack``. Per
message, in order per connection: decode -> store -> ACK ``AA`` -> ``on_stored``.
An ``asyncio.Protocol`` (no stream objects): ``data_received`` frames the bytes and
hands each complete message to the store at once; one task per connection awaits the
commits and writes the ACKs, in order.
``AA`` is sent only after the store returned, i.e. after the commit (fsync) that
covers the message. A message that cannot be read gets ``AE``/``AR`` with a reason; a
store failure or any other error inside the listener gets ``AE``. The connection goes
on either way: one bad message never ends it.

The store: a ``MessageStore`` (``SampleStore``) keeps each message once per (MSH-3,
MSH-4, MSH-10) and groups the messages of all connections into few transactions; a
resend of a stored message is acknowledged ``AA`` again, but ``on_stored`` is not
called for it. A plain ``SampleSink`` callable is accepted too (no de-duplication).
Frames that arrive together on one connection (a pipelining sender) are handed to
the store together, so they share a commit; their ACKs keep the order of the frames.
Frames that arrive while earlier ones wait for their commit go to the store too (up to
``MAX_QUEUED`` per connection, then reading pauses); a sender that half-closes its side
still gets the ACKs of what it sent.

Decoding: messages larger than ``decode_offload_size`` are decoded in a
``DecodePool`` (worker processes by default), so a waveform-heavy bed never delays
the numeric vitals of other beds.

Bounded: ``max_connections`` in all and ``max_connections_per_address`` from one
source address (further connections are closed at once), ``max_message_size`` (a
larger frame is dropped and answered ``AR``), ``first_message_timeout`` for a
connection that has not yet sent a complete message, ``idle_timeout`` for one that
has (monitors sending hourly trends), and a write timeout. The framer holds at most
one message, so memory is bounded per connection.

Logging: connection events at INFO; per-message lines at DEBUG carry the control id,
the device id and counts; errors at WARNING carry the location and reason. Never a
patient identifier, a name, a value or a raw message.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from devices.vitals import SampleSink, VitalAlarm, VitalSample

from .ack import Acknowledgement, AckTemplate, Responder, encode_ack
from .decode_pool import DecodePool
from .errors import ErrorCode, Location, MessageError, StorageError
from .mllp import (
    DEFAULT_MAX_MESSAGE_SIZE,
    BytesDiscarded,
    FrameTooLarge,
    MLLPFramer,
    encode_frame,
)
from .oru import MessageHeader, OruConfig, OruMessage, decode_oru, read_header
from .storage import Committed, MessageKey
from .timestamp import format_timestamp

logger = logging.getLogger(__name__)

StoredCallback = Callable[[Sequence[VitalSample], Sequence[VitalAlarm]],
                          Awaitable[None] | None]
"""Called with the samples and alarms (tuples, possibly empty) of each NEW message after
it was stored and acknowledged; not for a resend of a stored message."""

MAX_QUEUED = 256
"""Messages of one connection received and not yet answered: beyond, reading pauses."""
MAX_ACK_TEMPLATES = 1024
"""ACK templates kept (one per sender and message type); the cache is emptied when full."""
DECODE_OFFLOAD_SIZE = 64 * 1024
"""Messages larger than this are decoded in the decode pool (python-hl7 needs ~1 s for
a 1 MB waveform message): the event loop keeps serving the other connections."""


@runtime_checkable
class MessageStore(Protocol):
    """A store that keeps each HL7 message once (``SampleStore``). ``submit`` queues the
    message at once (raising ``StorageError`` if it cannot) and returns what resolves
    after the commit that covers it."""

    def submit(self, key: MessageKey | None, samples: Sequence[VitalSample],
               alarms: Sequence[VitalAlarm] = (),
               values_json: Sequence[str | None] | None = None
               ) -> asyncio.Future[Committed]: ...


@dataclass(frozen=True)
class ListenerConfig:
    host: str = "127.0.0.1"
    port: int = 2575
    """0 picks a free port (see ``HL7Listener.port``)."""
    max_connections: int = 256
    """Connections in all."""
    max_connections_per_address: int = 8
    """Connections from one source address: idle or stuck connections of one host cannot
    lock the other monitors out."""
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    idle_timeout: float = 3900.0
    """Seconds without a byte before a connection that has sent a complete message is
    closed: longer than the slowest trend interval of common monitors (60 min)."""
    first_message_timeout: float = 60.0
    """Seconds a connection may stay open without sending a complete message."""
    write_timeout: float = 30.0
    decode_offload_size: int = DECODE_OFFLOAD_SIZE
    decode_workers: int = 2
    """Processes decoding messages larger than ``decode_offload_size``; 0: threads."""
    responder: Responder = field(default_factory=Responder)
    oru: OruConfig = field(default_factory=OruConfig)

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.max_connections_per_address < 1:
            raise ValueError("max_connections and max_connections_per_address must be at "
                             "least 1")
        if self.max_message_size < 1:
            raise ValueError(f"max_message_size must be positive, got {self.max_message_size}")
        if not (self.idle_timeout > 0 and self.write_timeout > 0
                and self.first_message_timeout > 0):
            raise ValueError("idle_timeout, first_message_timeout and write_timeout must be "
                             "positive")
        if self.decode_workers < 0:
            raise ValueError("decode_workers must be 0 (threads) or more")


@dataclass
class ListenerStats:
    connections_accepted: int = 0
    connections_refused: int = 0
    connections_idle_closed: int = 0
    messages: int = 0
    accepted: int = 0
    duplicates: int = 0
    """Resends of stored messages: acknowledged AA, not stored nor passed on again."""
    errors: int = 0
    rejected: int = 0
    store_failures: int = 0
    internal_errors: int = 0
    samples_stored: int = 0
    alarms_stored: int = 0
    bytes_discarded: int = 0
    frames_too_large: int = 0


@dataclass(frozen=True)
class Outcome:
    """The result of one message: the ACK bytes to send and what was stored."""

    ack: bytes
    code: str
    samples: tuple[VitalSample, ...] = ()
    alarms: tuple[VitalAlarm, ...] = ()
    new: bool = False
    """True for a message stored now (not a resend): ``on_stored`` is called."""
    batch: int = 0
    """The group commit that covered it (0: not stored, or a plain sink)."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


_Pending = Outcome | tuple[OruMessage, "asyncio.Future[Committed] | None"]
"""A message between decoding and its ACK: done, or decoded and handed to the store (its
commit still to await; None: a plain sink, still to call)."""


class HL7Listener:
    """``HL7Listener(store, config, on_stored=...)``; ``await start()`` ... ``await stop()``.

    ``store`` is a ``MessageStore`` (``SampleStore``: once per message, group commit)
    or a plain ``SampleSink``; ``on_stored`` (optional, sync or async) sees the samples
    and alarms of each new message after its ACK, e.g. to forward them to live rooms:
    its failures are logged and change nothing for the sender.
    """

    def __init__(self, store: MessageStore | SampleSink, config: ListenerConfig | None = None,
                 *, on_stored: StoredCallback | None = None,
                 clock: Callable[[], datetime] = _utc_now) -> None:
        self.config = config or ListenerConfig()
        self.stats = ListenerStats()
        self._store = store if isinstance(store, MessageStore) else None
        self._sink: SampleSink | None = None if self._store is not None else store  # type: ignore[assignment]
        self._on_stored = on_stored
        self._clock = clock
        self._decoder = DecodePool(self.config.decode_workers)
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._per_address: dict[str, int] = {}
        self._numbers = itertools.count(1)
        self._control_ids = itertools.count(1)
        self._control_prefix = f"HZ{int(time.time()) & 0xFFFFFFF:07X}"
        self._templates: dict[tuple[object, ...] | None, AckTemplate] = {}
        epoch = datetime.fromtimestamp(0, UTC)
        self._stamp = (epoch, format_timestamp(epoch))
        """MSH-7 of the ACKs (to the second): the last one formatted, and its instant."""
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
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _MLLPProtocol(self), self.config.host, self.config.port)
        logger.info("hl7 listener on %s:%d", self.config.host, self.port)

    async def warm_up(self) -> None:
        """Start the decode workers now rather than with the first large message."""
        await self._decoder.start()

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
        self._decoder.close()
        if server is not None:
            await server.wait_closed()
            logger.info("hl7 listener stopped")

    async def __aenter__(self) -> HL7Listener:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ connections

    def _refusal(self, address: str) -> str | None:
        if self._closing:
            return "stopping"
        if len(self._connections) >= self.config.max_connections:
            return f"{len(self._connections)} connections open (max {self.config.max_connections})"
        if self._per_address.get(address, 0) >= self.config.max_connections_per_address:
            return (f"{self._per_address[address]} connections from this address open "
                    f"(max {self.config.max_connections_per_address})")
        return None

    def _connected(self, transport: asyncio.Transport) -> _Connection | None:
        """A new connection (``connection_made``): refused at once, or served by a task."""
        peername = transport.get_extra_info("peername")
        address = str(peername[0]) if isinstance(peername, tuple) else str(peername)
        peer = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else str(peername)
        refusal = self._refusal(address)
        if refusal is not None:
            self.stats.connections_refused += 1
            logger.warning("hl7 connection from %s refused: %s", peer, refusal)
            transport.close()
            return None
        connection = _Connection(next(self._numbers), peer, address, transport,
                                 self.config.max_message_size)
        self._connections.add(connection)
        self._per_address[address] = self._per_address.get(address, 0) + 1
        self.stats.connections_accepted += 1
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        logger.info("%s: connected", connection)
        connection.last_active = asyncio.get_running_loop().time()
        self._watch_idle(connection)
        connection.task = asyncio.get_running_loop().create_task(self._run(connection))
        return connection

    async def _run(self, connection: _Connection) -> None:
        try:
            await self._serve(connection)
        except asyncio.CancelledError:
            pass
        except (ConnectionError, TimeoutError) as exc:
            logger.info("%s: connection lost (%s)", connection, type(exc).__name__)
        except Exception as exc:  # a bug must not go unnoticed, nor end the server
            logger.error("%s: closing after an unexpected error (%s)", connection,
                         type(exc).__name__)
        finally:
            self._connections.discard(connection)
            address = connection.address
            left = self._per_address.get(address, 1) - 1
            if left > 0:
                self._per_address[address] = left
            else:
                self._per_address.pop(address, None)
            connection.transport.close()
            with contextlib.suppress(Exception):
                await connection.closed
            logger.info("%s: closed", connection)

    def _timeout(self, connection: _Connection) -> float:
        return (self.config.idle_timeout if connection.messages
                else self.config.first_message_timeout)

    def _watch_idle(self, connection: _Connection) -> None:
        """Close ``connection`` once it has been idle for its timeout.

        One timer per connection, re-armed lazily from ``connection.last_active``: far
        cheaper than a timeout around every read.
        """
        loop = asyncio.get_running_loop()
        idle = loop.time() - connection.last_active
        timeout = self._timeout(connection)
        if idle < timeout or connection.busy:
            connection.watchdog = loop.call_later(max(timeout - idle, 0.01), self._watch_idle,
                                                  connection)
            return
        connection.idle_closed = True
        self.stats.connections_idle_closed += 1
        logger.info("%s: idle for %.0f s%s, closing", connection, timeout,
                    "" if connection.messages else " before a complete message")
        if connection.task is not None:
            connection.task.cancel()

    def _received(self, connection: _Connection, data: bytes) -> None:
        """Bytes from the transport (``data_received``): frame them and admit each complete
        message at once (decoded, handed to the store), so the frames of one read share a
        commit; the connection's task answers them in order."""
        if self._closing or connection.idle_closed:
            return
        connection.last_active = asyncio.get_running_loop().time()
        events = connection.framer.feed(data)
        if not events:
            return
        inbox = connection.inbox
        name = connection.name
        for framer_event in events:
            if isinstance(framer_event, BytesDiscarded):
                self.stats.bytes_discarded += framer_event.count
                logger.warning("%s: %d bytes outside MLLP frames discarded", connection,
                               framer_event.count)
                continue
            connection.messages += 1
            if connection.messages == 1 and connection.watchdog is not None:
                connection.watchdog.cancel()  # from now on the (other) idle timeout
                self._watch_idle(connection)
            if isinstance(framer_event, FrameTooLarge):
                self.stats.frames_too_large += 1
                inbox.append(self._too_large(name, framer_event))
            elif (connection.undecoded
                  or len(framer_event.payload) > self.config.decode_offload_size):
                connection.undecoded += 1  # decoded by the task, in the decode pool
                inbox.append(framer_event.payload)
            else:
                inbox.append(self._admit(framer_event.payload, name))
        if inbox:
            connection.wake()
            if (len(inbox) >= MAX_QUEUED or connection.undecoded > 1) \
                    and not connection.reading_paused:
                connection.reading_paused = True
                connection.transport.pause_reading()

    async def _serve(self, connection: _Connection) -> None:
        try:
            await self._serve_until_closed(connection)
        finally:
            if connection.watchdog is not None:
                connection.watchdog.cancel()

    async def _serve_until_closed(self, connection: _Connection) -> None:
        loop = asyncio.get_running_loop()
        while not (self._closing and not connection.inbox):
            if not connection.inbox:
                if connection.ended or connection.idle_closed:
                    if connection.error is not None:
                        raise connection.error
                    return
                connection.wakeup = loop.create_future()
                await connection.wakeup
                continue
            items, connection.inbox = connection.inbox, []
            if connection.reading_paused and not connection.ended:
                connection.reading_paused = False
                connection.transport.resume_reading()
            connection.answering = True
            try:
                await self._answer(connection, items)
            finally:
                connection.answering = False

    async def _answer(self, connection: _Connection, items: Sequence[_Pending | bytes]
                      ) -> None:
        """The ACKs of the messages of ``items`` in one write (in order), each after its
        own commit; then on_stored sees the new messages, in order."""
        pending: list[_Pending] = []
        for item in items:
            if isinstance(item, bytes):
                pending.append(await self._admit_offloaded(item, connection.name))
                connection.undecoded -= 1
            else:
                pending.append(item)
        outcomes = await self._outcomes(connection.name, pending)
        transport = connection.transport
        transport.write(b"".join(b"\x0b" + o.ack + b"\x1c\r" for o in outcomes))  # see _ack
        if connection.writing_paused:
            async with asyncio.timeout(self.config.write_timeout):
                await self._drained(connection)
        connection.last_active = asyncio.get_running_loop().time()
        if self._on_stored is not None:
            for outcome in outcomes:
                if outcome.new:
                    await self._notify(connection, outcome.samples, outcome.alarms)

    async def _drained(self, connection: _Connection) -> None:
        """Until the transport's write buffer is below its high-water mark again."""
        while connection.writing_paused:
            if connection.ended:
                raise ConnectionResetError("connection lost")
            connection.drained = asyncio.get_running_loop().create_future()
            await connection.drained

    # ------------------------------------------------------------------ messages

    async def process(self, payload: bytes, *, connection: str = "hl7") -> Outcome:
        """Decode, store and acknowledge one message (without sending the ACK)."""
        if len(payload) > self.config.decode_offload_size:
            item = await self._admit_offloaded(payload, connection)
        else:
            item = self._admit(payload, connection)
        return (await self._outcomes(connection, [item]))[0]

    def _admit(self, payload: bytes, connection: str) -> _Pending:
        """Decode ``payload`` (here: small enough) and hand it to the store; what is left
        is awaited in order (``_outcomes``).

        Whatever goes wrong yields an ``AE``/``AR`` outcome, never an exception.
        """
        self.stats.messages += 1
        header: MessageHeader | None = None
        try:
            header = read_header(payload)
            if _CONTROL.search(payload, 0, _msh_end(payload)):
                _check_control_bytes(header)
            return self._submit(decode_oru(payload, self.config.oru, header), None)
        except MessageError as error:
            return self._refuse(connection, header, error)
        except Exception as exc:
            return self._internal_error(connection, header, exc)

    async def _admit_offloaded(self, payload: bytes, connection: str) -> _Pending:
        """``_admit`` of a large message: decoded in the decode pool."""
        self.stats.messages += 1
        header: MessageHeader | None = None
        try:
            header = read_header(payload)
            if _CONTROL.search(payload, 0, _msh_end(payload)):
                _check_control_bytes(header)
            decoded = await self._decoder.decode(payload, self.config.oru, header)
            return self._submit(decoded.message, decoded.values_json)
        except MessageError as error:
            return self._refuse(connection, header, error)
        except Exception as exc:
            return self._internal_error(connection, header, exc)

    def _submit(self, message: OruMessage, prepared: Sequence[str | None] | None
                ) -> _Pending:
        """Queue a decoded message in the store (a plain sink is called later, in order)."""
        if self._store is None:
            return message, None
        header = message.header
        key = MessageKey(header.sending_application, header.sending_facility,
                         header.control_id)
        try:
            stored = self._store.submit(key, message.samples, message.alarms, prepared)
        except StorageError as error:
            stored = asyncio.get_running_loop().create_future()
            stored.set_exception(error)
        return message, stored

    async def _outcomes(self, connection: str, pending: Sequence[_Pending]) -> list[Outcome]:
        """The outcome of each message of ``pending``, in order, each after its commit."""
        outcomes: list[Outcome] = []
        for item in pending:
            if isinstance(item, Outcome):
                outcomes.append(item)
            else:
                outcomes.append(await self._finish(connection, *item))
        return outcomes

    async def _finish(self, connection: str, message: OruMessage,
                      stored: asyncio.Future[Committed] | None) -> Outcome:
        header = message.header
        try:
            if stored is not None:
                committed = stored.result() if stored.done() else await stored
            else:
                assert self._sink is not None
                if message.samples:
                    await self._sink(message.samples)
                committed = Committed(True, 0)
        except Exception as exc:
            # Only the type (and our own StorageError text): a sink's exception may
            # quote the data it failed to store.
            self.stats.store_failures += 1
            self.stats.errors += 1
            detail = str(exc) if isinstance(exc, StorageError) else type(exc).__name__
            logger.error("%s: message %s not stored (%s): AE", connection,
                         header.control_id, detail)
            return Outcome(self._ack(header, Acknowledgement.not_stored()), "AE")
        try:
            ack = self._ack(header, Acknowledgement.accept(), committed.batch)
        except Exception as exc:
            return self._internal_error(connection, header, exc)
        self.stats.accepted += 1
        if not committed.new:
            self.stats.duplicates += 1
            logger.info("%s: message %s is a resend of a stored message: AA, not stored "
                        "again", connection, header.control_id)
            return Outcome(ack, "AA", batch=committed.batch)
        self.stats.samples_stored += len(message.samples)
        self.stats.alarms_stored += len(message.alarms)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s: message %s from %s: %d samples, %d alarms stored (%d rows "
                         "skipped): AA", connection, header.control_id, header.device_id,
                         len(message.samples), len(message.alarms), message.skipped)
        return Outcome(ack, "AA", message.samples, message.alarms, True, committed.batch)

    def _refuse(self, connection: str, header: MessageHeader | None,
                error: MessageError) -> Outcome:
        ack = Acknowledgement.for_error(error)
        if ack.code == "AR":
            self.stats.rejected += 1
        else:
            self.stats.errors += 1
        logger.warning("%s: message %s %s: %s", connection,
                       header.control_id if header else "(no MSH)", ack.code, error)
        return self._safe_outcome(header, ack)

    def _internal_error(self, connection: str, header: MessageHeader | None,
                        exc: Exception) -> Outcome:
        self.stats.internal_errors += 1
        self.stats.errors += 1
        logger.error("%s: message %s: internal error (%s): AE", connection,
                     header.control_id if header else "(no MSH)", type(exc).__name__)
        return self._safe_outcome(header, Acknowledgement("AE", "internal error",
                                                          ErrorCode.INTERNAL))

    def _safe_outcome(self, header: MessageHeader | None, ack: Acknowledgement) -> Outcome:
        """An error ACK, built without the header if the header itself is the problem."""
        try:
            return Outcome(self._ack(header, ack), ack.code)
        except Exception:
            return Outcome(self._ack(None, ack), ack.code)

    def _too_large(self, connection: str, framer_event: FrameTooLarge) -> Outcome:
        self.stats.messages += 1
        self.stats.rejected += 1
        try:
            header: MessageHeader | None = read_header(framer_event.head)
        except Exception:
            header = None
        logger.warning("%s: message %s of more than %d bytes dropped: AR", connection,
                       header.control_id if header else "(no MSH)",
                       self.config.max_message_size)
        reason = f"message larger than {self.config.max_message_size} bytes"
        return self._safe_outcome(header, Acknowledgement("AR", reason))

    def _ack(self, header: MessageHeader | None, ack: Acknowledgement, batch: int = 0) -> bytes:
        """The encoded ACK. Its own control id (MSH-10) ends in ``B<batch>`` when a
        group commit covered the message: proof, for a client, of which commit did."""
        control_id = f"{self._control_prefix}{next(self._control_ids)}"
        if batch:
            control_id += f"B{batch}"
        key = None if header is None else (
            header.separators, header.sending_application, header.sending_facility,
            header.receiving_application, header.receiving_facility, header.message_type,
            header.processing_id, header.version, header.charset)
        template = self._templates.get(key)
        if template is None:
            if len(self._templates) >= MAX_ACK_TEMPLATES:
                self._templates.clear()
            template = self._templates[key] = AckTemplate.for_header(header,
                                                                     self.config.responder)
        now = self._clock()
        second = now.replace(microsecond=0)
        if second != self._stamp[0] or now.tzinfo is not self._stamp[0].tzinfo:
            self._stamp = (second, format_timestamp(second))
        text = template.render(ack, control_id=control_id, timestamp=self._stamp[1],
                               message_control_id=header.control_id if header else None)
        data = encode_ack(text, header)
        encode_frame(data)  # raises here, where the caller falls back, if it cannot frame
        return data

    async def _notify(self, connection: _Connection, samples: Sequence[VitalSample],
                      alarms: Sequence[VitalAlarm]) -> None:
        assert self._on_stored is not None
        try:
            result = self._on_stored(tuple(samples), tuple(alarms))
            if result is not None:
                await result
        except Exception as exc:
            logger.error("%s: on_stored callback failed (%s)", connection, type(exc).__name__)


class _Connection:
    """One MLLP connection: its transport, framer and the messages between their arrival
    and their ACK (``inbox``), in order."""

    def __init__(self, number: int, peer: str, address: str,
                 transport: asyncio.Transport, max_message_size: int) -> None:
        self.number = number
        self.peer = peer
        self.address = address
        self.transport = transport
        self.framer = MLLPFramer(max_message_size)
        self.inbox: list[_Pending | bytes] = []
        """Admitted messages (their commit still to await) and, as ``bytes``, large
        frames still to decode in the pool: in arrival order."""
        self.undecoded = 0
        """Large frames of ``inbox`` (or being handled) not yet handed to the store: the
        frames after them wait, so that the store sees the messages in arrival order."""
        self.answering = False
        self.wakeup: asyncio.Future[None] | None = None
        self.ended = False
        self.error: BaseException | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.drained: asyncio.Future[None] | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.messages = 0
        self.last_active = 0.0
        self.idle_closed = False
        self.watchdog: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None
        self.name = f"hl7 conn {number} ({peer})"

    @property
    def busy(self) -> bool:
        """Messages received and not yet answered (stop and the idle timer wait)."""
        return self.answering or bool(self.inbox)

    def wake(self) -> None:
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)

    def __str__(self) -> str:
        return self.name


class _MLLPProtocol(asyncio.Protocol):
    """The transport's callbacks, handed to the listener (no stream objects per read)."""

    def __init__(self, listener: HL7Listener) -> None:
        self._listener = listener
        self._connection: _Connection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._connection = self._listener._connected(transport)

    def data_received(self, data: bytes) -> None:
        if self._connection is not None:
            self._listener._received(self._connection, data)

    def eof_received(self) -> bool | None:
        if self._connection is not None:
            self._connection.ended = True
            self._connection.wake()
        return True  # half-closed: the ACKs of what came before the EOF still go out

    def connection_lost(self, exc: Exception | None) -> None:
        connection = self._connection
        if connection is None:
            return
        connection.ended = True
        if exc is not None and connection.error is None:
            connection.error = exc
        connection.wake()
        for future in (connection.drained, connection.closed):
            if future is not None and not future.done():
                future.set_result(None)

    def pause_writing(self) -> None:
        if self._connection is not None:
            self._connection.writing_paused = True

    def resume_writing(self) -> None:
        connection = self._connection
        if connection is not None:
            connection.writing_paused = False
            if connection.drained is not None and not connection.drained.done():
                connection.drained.set_result(None)


_CONTROL = re.compile(rb"[\x00-\x0c\x0e-\x1f\x7f]")


def _msh_end(payload: bytes) -> int:
    end = payload.find(b"\r")
    return len(payload) if end < 0 else end


_HEADER_FIELDS = (("sending_application", 3), ("sending_facility", 4),
                  ("receiving_application", 5), ("receiving_facility", 6),
                  ("message_type", 9), ("control_id", 10), ("processing_id", 11),
                  ("version", 12), ("charset", 18))


def _check_control_bytes(header: MessageHeader) -> None:
    """MSH fields are HL7 text: a control byte (e.g. 0x1C) in one is a data type error.

    The ACK still echoes the field, escaped (``ack.safe_field``)."""
    for name, number in _HEADER_FIELDS:
        text = getattr(header, name)
        if not text.isprintable() and any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
            raise MessageError("control character in a header field",
                               location=Location("MSH", 1, number))
