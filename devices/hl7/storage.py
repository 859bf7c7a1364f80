"""Durable storage of vital signs with SQLAlchemy 2 (SQLite by default, PostgreSQL).

``await store.store(samples)`` and ``await store.store_message(...)`` return only once
the rows are committed durably, so they are what an HL7 listener acknowledges after.

Group commit: every call is queued to ONE writer task, which takes everything queued
(from all connections and serial monitors) and commits it in one transaction, one
fsync, in the store's worker thread; each caller is answered after that commit. A
batch that fails is retried message by message, so one bad message fails alone.

HL7 messages are stored once: ``hl7_messages`` is keyed uniquely by (sending
application, sending facility, control id) and written in the same transaction as
the message's samples and alarms; a resend of a stored message is reported as a
duplicate (``Committed.new`` False) and nothing is written again.

Times: ``observed_at`` is the UTC instant, ``observed_offset`` the sender's UTC offset
in minutes; reading back gives the time in the sender's offset. Databases created
before these columns and tables existed are upgraded on ``open`` (added if missing).

Durability:

* SQLite (the default, ``<data_dir>/vitals.sqlite3``): every connection sets
  ``journal_mode=WAL`` and ``synchronous=FULL``, so a commit fsyncs the WAL before
  it returns (survives a power cut, not only a process crash).
* PostgreSQL (``postgresql+psycopg://user@host:5432/db``): a commit returns after
  the WAL is flushed when ``synchronous_commit`` is on; a server or role configured
  ``off`` is switched back to ``on`` for the store's sessions.

Errors: ``StorageError`` names the failure by exception types only (e.g.
``IntegrityError: NotNullViolation``) and is not chained to the driver's error, whose
text may quote the failing row; the engine also has ``hide_parameters=True``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from devices.vitals import VitalAlarm, VitalSample

from .errors import StorageError

logger = logging.getLogger(__name__)

DEFAULT_TABLE = "vital_samples"
DEFAULT_MESSAGES_TABLE = "hl7_messages"
DEFAULT_ALARMS_TABLE = "vital_alarms"
DEFAULT_FILE = "vitals.sqlite3"
MAX_BATCH = 512
"""Most messages one group commit takes (bounds a transaction and a retry)."""
COMMIT_DELAY = 0.001
"""Seconds the writer waits for more messages when fewer are queued than the last
group commit held (so concurrent senders share one fsync); 0: never."""
CHECKPOINT_BYTES = 4 << 20
"""SQLite: a checkpoint is started beside the writer after about this much WAL."""
LARGE = 256 * 1024
"""A message with more waveform JSON than this is committed after the small ones
queued with it, in its own transaction: numeric vitals do not wait for its I/O."""
T = TypeVar("T")


@dataclass(frozen=True)
class StoredSample:
    """A row of the store: its id (increasing in commit order for one writer)."""

    id: int
    sample: VitalSample
    received_at: datetime


@dataclass(frozen=True)
class StoredAlarm:
    id: int
    alarm: VitalAlarm
    received_at: datetime


@dataclass(frozen=True)
class MessageKey:
    """What identifies an HL7 message across resends: MSH-3, MSH-4 and MSH-10 as sent."""

    sending_application: str
    sending_facility: str
    control_id: str


@dataclass(frozen=True)
class Committed:
    """The answer to a store call: ``new`` False for an already stored message (a
    resend); ``batch`` is the number of the group commit that made it durable (for a
    duplicate, the one that found it)."""

    new: bool
    batch: int


@dataclass
class StoreStats:
    commits: int = 0
    """Transactions committed (each one fsync on SQLite)."""
    messages: int = 0
    duplicates: int = 0
    samples: int = 0
    alarms: int = 0
    retried_batches: int = 0
    largest_batch: int = 0


@dataclass
class _Pending:
    key: MessageKey | None
    samples: Sequence[VitalSample]
    alarms: Sequence[VitalAlarm]
    received_at: datetime
    future: asyncio.Future[Committed] = field(repr=False)
    values_json: Sequence[str | None] | None = None
    large: bool = False


def vital_samples_table(metadata: sa.MetaData, name: str = DEFAULT_TABLE,
                        schema: str | None = None) -> sa.Table:
    """The samples. ``observed_at``/``received_at`` are UTC, ``observed_offset`` the
    sender's UTC offset in minutes; ``values`` and ``abnormal_flags`` are JSON arrays."""
    return sa.Table(
        name, metadata,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.Text, nullable=False),
        sa.Column("patient_id", sa.Text),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("code_system", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("vital", sa.Text),
        sa.Column("value", sa.Double),
        sa.Column("values", sa.JSON(none_as_null=True)),
        sa.Column("sample_rate", sa.Double),
        sa.Column("unit", sa.Text),
        sa.Column("loinc", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("text", sa.Text),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("observed_offset", sa.Integer),
        sa.Column("reference_range", sa.Text),
        sa.Column("abnormal_flags", sa.JSON(none_as_null=True)),
        sa.Column("message_id", sa.BigInteger),
        sa.Index(f"ix_{name}_device_observed", "device_id", "observed_at"),
        sa.Index(f"ix_{name}_patient_observed", "patient_id", "observed_at"),
        schema=schema,
    )


def hl7_messages_table(metadata: sa.MetaData, name: str = DEFAULT_MESSAGES_TABLE,
                       schema: str | None = None) -> sa.Table:
    """One row per stored HL7 message: what makes a resend recognisable."""
    return sa.Table(
        name, metadata,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  primary_key=True, autoincrement=True),
        sa.Column("sending_application", sa.Text, nullable=False),
        sa.Column("sending_facility", sa.Text, nullable=False),
        sa.Column("control_id", sa.Text, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("samples", sa.Integer, nullable=False),
        sa.Column("alarms", sa.Integer, nullable=False),
        sa.UniqueConstraint("sending_application", "sending_facility", "control_id",
                            name=f"uq_{name}_sender_control_id"),
        schema=schema,
    )


def vital_alarms_table(metadata: sa.MetaData, name: str = DEFAULT_ALARMS_TABLE,
                       schema: str | None = None) -> sa.Table:
    return sa.Table(
        name, metadata,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.BigInteger),
        sa.Column("device_id", sa.Text, nullable=False),
        sa.Column("patient_id", sa.Text),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("priority", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("vital", sa.Text),
        sa.Column("text", sa.Text),
        sa.Column("flags", sa.JSON(none_as_null=True)),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("observed_offset", sa.Integer),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Index(f"ix_{name}_device_observed", "device_id", "observed_at"),
        schema=schema,
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SampleStore:
    """Durable vital-sign storage; use as ``async with SampleStore(...) as store``.

    ``url``: a SQLAlchemy URL; None means SQLite in ``data_dir``. ``table`` and
    ``schema`` place the samples table (the schema must exist); ``messages_table`` and
    ``alarms_table`` the others. ``workers``: threads for reads (default 1 for SQLite,
    4 otherwise); writes go through the one group-commit writer.
    """

    def __init__(self, url: str | None = None, *, data_dir: str | os.PathLike[str] = "data",
                 table: str = DEFAULT_TABLE, schema: str | None = None,
                 messages_table: str = DEFAULT_MESSAGES_TABLE,
                 alarms_table: str = DEFAULT_ALARMS_TABLE,
                 workers: int | None = None, max_batch: int = MAX_BATCH,
                 clock: Callable[[], datetime] = _utc_now,
                 on_commit: Callable[[int, int], None] | None = None,
                 commit_delay: float = COMMIT_DELAY) -> None:
        if url is None:
            url = f"sqlite:///{Path(data_dir) / DEFAULT_FILE}"
        self.url = sa.make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite and self.url.database in (None, "", ":memory:"):
            raise ValueError("a SQLite store needs a database file (an in-memory "
                             "database is not durable)")
        workers = workers or (1 if self.is_sqlite else 4)
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._clock = clock
        self._on_commit = on_commit
        self.commit_delay = commit_delay
        """Called in the writer thread right after each commit returned (fsync done),
        with the batch number and its message count: for measurements."""
        self._workers = workers
        self.max_batch = max_batch
        self.stats = StoreStats()
        self.metadata = sa.MetaData()
        self.table = vital_samples_table(self.metadata, table, schema)
        self.messages = hl7_messages_table(self.metadata, messages_table, schema)
        self.alarms = vital_alarms_table(self.metadata, alarms_table, schema)
        self._engine: Engine | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._writer_thread: ThreadPoolExecutor | None = None
        self._queue: asyncio.Queue[_Pending] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._wal_growth = 0
        """Bytes (estimated) committed since the last checkpoint (SQLite)."""
        self._sqlite_sql: dict[str, str] = {}
        self._sqlite_writer: Any = None
        """The writer thread's own SQLite connection (a pooled DB-API connection)."""
        self._checkpointing: asyncio.Future[None] | None = None
        self._closed = False

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise StorageError("the sample store is not open")
        return self._engine

    async def open(self) -> None:
        """Create the engine, the tables and columns if missing, check durability."""
        if self._closed:
            raise StorageError("the sample store is closed")
        if self._engine is not None:
            return
        self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="sample-store")
        self._writer_thread = ThreadPoolExecutor(1, thread_name_prefix="sample-store-writer")
        self._engine = self._create_engine()
        try:
            await self._run(self._create_schema)
        except BaseException:
            await self.close()
            raise
        self._queue = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop(), name="sample-store-writer")
        logger.info("sample store open: %s (%s)", self.url.render_as_string(hide_password=True),
                    ", ".join(f"{k}={v}" for k, v in (await self.durability()).items()))

    def _create_engine(self) -> Engine:
        if self.is_sqlite:
            assert self.url.database is not None
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(self.url, hide_parameters=True)
            event.listen(engine, "connect", _sqlite_durable)
            return engine
        engine = sa.create_engine(self.url, hide_parameters=True, pool_pre_ping=True,
                                  pool_size=self._workers + 1, max_overflow=0)
        if self.url.get_backend_name() == "postgresql":
            event.listen(engine, "connect", _postgresql_durable)
        return engine

    def _create_schema(self) -> None:
        """Create what is missing: tables, and columns a database made by an older
        version lacks (nullable, so ``ADD COLUMN`` works on SQLite and PostgreSQL)."""
        with self.engine.begin() as connection:
            self.metadata.create_all(connection)
            inspector = sa.inspect(connection)
            for table in (self.table, self.messages, self.alarms):
                present = {c["name"] for c in inspector.get_columns(table.name,
                                                                     schema=table.schema)}
                for column in table.columns:
                    if column.name in present:
                        continue
                    if not column.nullable:
                        raise StorageError(f"table {table.name} lacks the required column "
                                           f"{column.name}")
                    kind = column.type.compile(dialect=connection.dialect)
                    target = connection.dialect.identifier_preparer.format_table(table)
                    name = connection.dialect.identifier_preparer.quote(column.name)
                    connection.exec_driver_sql(f"ALTER TABLE {target} ADD COLUMN {name} {kind}")
                    logger.info("sample store: added column %s.%s", table.name, column.name)

    async def close(self) -> None:
        """Commit what is queued, wait for work in progress, release connections.
        Idempotent."""
        self._closed = True
        writer, self._writer = self._writer, None
        if writer is not None and self._queue is not None:
            await self._queue.put(_CLOSE)
            await asyncio.gather(writer, return_exceptions=True)
        if self._sqlite_writer is not None and self._writer_thread is not None:
            raw, self._sqlite_writer = self._sqlite_writer, None
            await asyncio.get_running_loop().run_in_executor(self._writer_thread, raw.close)
        executors = [e for e in (self._executor, self._writer_thread) if e is not None]
        self._executor = self._writer_thread = None
        engine, self._engine = self._engine, None
        for executor in executors:
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown)
        if engine is not None:
            engine.dispose()

    async def __aenter__(self) -> SampleStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _run(self, work: Callable[[], T]) -> T:
        if self._executor is None:
            raise StorageError("the sample store is closed" if self._closed
                               else "the sample store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    # ------------------------------------------------------------------ writes

    async def store(self, samples: Sequence[VitalSample]) -> None:
        """Insert ``samples`` (one transaction with whatever else is queued); returns
        once committed durably. A ``SampleSink``.

        Raises ``StorageError`` (naming the database error's type only) when the rows
        could not be committed.
        """
        if samples:
            await self.store_message(None, samples)

    __call__ = store

    async def store_message(self, key: MessageKey | None, samples: Sequence[VitalSample],
                            alarms: Sequence[VitalAlarm] = (),
                            values_json: Sequence[str | None] | None = None) -> Committed:
        """Store one message's samples and alarms atomically, once per ``key``.

        Returns after the commit covering it; ``Committed.new`` is False when a message
        with this key is already stored (nothing is written). ``key`` None: no
        de-duplication (serial monitors). ``values_json``: the samples' waveform values
        already serialised (by a decode worker), so the writer does not hold the GIL
        for it.
        """
        return await self.submit(key, samples, alarms, values_json)

    def submit(self, key: MessageKey | None, samples: Sequence[VitalSample],
               alarms: Sequence[VitalAlarm] = (),
               values_json: Sequence[str | None] | None = None) -> asyncio.Future[Committed]:
        """``store_message`` without a coroutine: queued now (so in call order), the
        future is resolved after the commit covering it."""
        if self._queue is None or self._closed:
            raise StorageError("the sample store is closed" if self._closed
                               else "the sample store is not open")
        future: asyncio.Future[Committed] = asyncio.get_running_loop().create_future()
        large = values_json is not None and sum(len(v or "") for v in values_json) > LARGE
        self._queue.put_nowait(_Pending(key, samples, alarms, self._clock(), future,
                                        values_json, large))
        return future

    async def _write_loop(self) -> None:
        """Take what is queued, commit the small messages in one transaction, then at
        most one large message (waveforms) in its own, and look at the queue again."""
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        queue = self._queue
        large: collections.deque[_Pending] = collections.deque()
        closing = False
        previous = 0
        while not (closing and not large):
            small: list[_Pending] = []
            if not large and not closing:
                first = await queue.get()
                if first is _CLOSE:
                    closing = True
                else:
                    (large if first.large else small).append(first)
            closing = self._drain(queue, small, large) or closing
            if (self.commit_delay and 0 < len(small) < previous and not closing
                    and len(small) < self.max_batch):
                # More callers were in the last batch than are here yet: wait a moment
                # for them, so one fsync covers them all (PostgreSQL's commit_delay).
                await asyncio.sleep(self.commit_delay)
                closing = self._drain(queue, small, large) or closing
            previous = len(small)
            small = [p for p in small if not p.future.done()]  # callers cancelled
            if small:
                await self._commit_group(loop, small)
            if large:
                pending = large.popleft()
                if not pending.future.done():
                    await self._commit_group(loop, [pending])

    def _drain(self, queue: asyncio.Queue[_Pending], small: list[_Pending],
               large: collections.deque[_Pending]) -> bool:
        """Move what is queued into ``small``/``large``; True if the store is closing."""
        closing = False
        while len(small) < self.max_batch and not queue.empty():
            item = queue.get_nowait()
            if item is _CLOSE:
                closing = True
            else:
                (large if item.large else small).append(item)
        return closing

    async def _commit_group(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]
                            ) -> None:
        assert self._writer_thread is not None
        if self.is_sqlite and self._wal_growth > CHECKPOINT_BYTES and (
                self._checkpointing is None or self._checkpointing.done()) and self._executor:
            self._wal_growth = 0
            self._checkpointing = loop.run_in_executor(self._executor, self._checkpoint)
        try:
            results = await loop.run_in_executor(self._writer_thread,
                                                 self._commit_batch, batch)
        except BaseException as exc:  # the loop must go on (CancelledError: stop)
            error = StorageError("the sample store stopped" if isinstance(
                exc, asyncio.CancelledError) else f"could not store ({type(exc).__name__})")
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(error)
            if isinstance(exc, asyncio.CancelledError):
                raise
            logger.error("sample store writer failed (%s)", type(exc).__name__)
            return
        for pending, result in zip(batch, results, strict=True):
            if pending.future.done():
                continue
            if isinstance(result, Exception):
                pending.future.set_exception(result)
            else:
                pending.future.set_result(result)

    def _commit_sqlite(self, batch: list[_Pending]) -> list[bool]:
        """One transaction on the writer's own driver connection, kept open: no pool
        checkout, reset or SQLAlchemy transaction per batch."""
        if self._sqlite_writer is None:
            self._sqlite_writer = self.engine.raw_connection()
        raw = self._sqlite_writer
        try:
            fresh = self._insert_sqlite(_Driver(self.engine.dialect, raw), batch)
            raw.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                raw.rollback()
            raise
        return fresh

    def _checkpoint(self) -> None:
        """A PASSIVE checkpoint on a reading connection: it copies committed WAL frames
        into the database without blocking the writer, so commits never pay for it."""
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except (SQLAlchemyError, sqlite3.Error) as exc:
            logger.warning("sample store checkpoint failed (%s)", type(exc).__name__)

    def _commit_batch(self, batch: list[_Pending]) -> list[Committed | StorageError]:
        """In the writer thread: one transaction for ``batch``; on failure, one per
        message so the others are stored and only the bad one fails."""
        try:
            if self.is_sqlite:
                fresh = self._commit_sqlite(batch)
            else:
                with self.engine.begin() as connection:
                    fresh = self._insert(connection, batch)
            self.stats.commits += 1
            number = self.stats.commits
            if self._on_commit is not None:
                self._on_commit(number, len(batch))
            self._wal_growth += sum(len(p.samples) + 1 for p in batch) * 512 + sum(
                len(v or "") for p in batch if p.values_json for v in p.values_json)
            self._count(batch, fresh)
            return [Committed(new, number) for new in fresh]
        except (SQLAlchemyError, sqlite3.Error) as exc:
            if len(batch) == 1:
                return [_storage_error(exc, batch[0])]
        self.stats.retried_batches += 1
        results: list[Committed | StorageError] = []
        for pending in batch:
            results.extend(self._commit_batch([pending]))
        return results

    def _count(self, batch: list[_Pending], fresh: list[bool]) -> None:
        stats = self.stats
        stats.largest_batch = max(stats.largest_batch, len(batch))
        for pending, new in zip(batch, fresh, strict=True):
            if new:
                stats.messages += 1
                stats.samples += len(pending.samples)
                stats.alarms += len(pending.alarms)
            else:
                stats.duplicates += 1

    def _insert(self, connection: Connection, batch: list[_Pending]) -> list[bool]:
        """Insert the new messages of ``batch``; which ones were new, in order."""
        keys = {p.key for p in batch if p.key is not None}
        stored = self._stored_keys(connection, keys) if keys else set()
        fresh: list[bool] = []
        new: list[_Pending] = []
        for pending in batch:
            if pending.key is not None and pending.key in stored:
                fresh.append(False)
                continue
            if pending.key is not None:
                stored.add(pending.key)  # a second copy in the same batch is a resend
            fresh.append(True)
            new.append(pending)
        keyed = [p for p in new if p.key is not None]
        ids: dict[int, int] = {}
        if keyed:
            result = connection.execute(
                self.messages.insert().returning(self.messages.c.id,
                                                 sort_by_parameter_order=True),
                [_message_row(p) for p in keyed])
            ids = {id(p): int(row[0]) for p, row in zip(keyed, result, strict=True)}
        sample_rows = [_row(s, p.received_at, ids.get(id(p))) for p in new for s in p.samples]
        if sample_rows:
            connection.execute(self.table.insert(), sample_rows)
        alarm_rows = [_alarm_row(a, p.received_at, ids.get(id(p))) for p in new
                      for a in p.alarms]
        if alarm_rows:
            connection.execute(self.alarms.insert(), alarm_rows)
        return fresh

    def _stored_keys(self, connection: Connection, keys: set[MessageKey]) -> set[MessageKey]:
        m = self.messages.c
        wanted = [(k.sending_application, k.sending_facility, k.control_id) for k in keys]
        rows = connection.execute(
            sa.select(m.sending_application, m.sending_facility, m.control_id).where(
                sa.tuple_(m.sending_application, m.sending_facility, m.control_id).in_(
                    wanted)))
        return {MessageKey(*row) for row in rows}

    def _insert_sqlite(self, connection: _Driver, batch: list[_Pending]) -> list[bool]:
        """SQLite, with the driver: ``INSERT OR IGNORE`` of each message row tells at once
        whether it is new (the unique key ignores a resend, also one in this batch) and
        its id, using the unique index; then the samples of the new ones in one
        ``executemany``."""
        sql = self._sqlite_sql.get("messages")
        if sql is None:
            sql = self._sqlite_sql["messages"] = _insert_sql(
                connection, self.messages, _MESSAGE_COLUMNS, "INSERT OR IGNORE")
            self._sqlite_sql["samples"] = _insert_sql(connection, self.table, _SAMPLE_COLUMNS)
        times = _SqliteTimes()
        fresh: list[bool] = []
        values: list[tuple[Any, ...]] = []
        alarm_rows: list[dict[str, Any]] = []
        cursor = connection.connection.cursor()
        try:
            for pending in batch:
                received = times(pending.received_at)
                message_id: int | None = None
                key = pending.key
                if key is not None:
                    cursor.execute(sql, (key.sending_application, key.sending_facility,
                                         key.control_id, received, len(pending.samples),
                                         len(pending.alarms)))
                    if cursor.rowcount != 1:
                        fresh.append(False)
                        continue
                    message_id = cursor.lastrowid
                fresh.append(True)
                prepared = pending.values_json
                values.extend(_sqlite_sample(sample, received, message_id, times,
                                             prepared[i] if prepared is not None else None)
                              for i, sample in enumerate(pending.samples))
                alarm_rows.extend(_alarm_row(a, pending.received_at, message_id)
                                  for a in pending.alarms)
            if values:
                cursor.executemany(self._sqlite_sql["samples"], values)
        finally:
            cursor.close()
        if alarm_rows:
            _sqlite_insert(connection, self.alarms, alarm_rows)
        return fresh

    # ------------------------------------------------------------------ reads

    async def samples_since(self, since: datetime | None = None, *, after_id: int = 0,
                            device_id: str | None = None, patient_id: str | None = None,
                            vital: str | None = None, limit: int = 10_000
                            ) -> list[StoredSample]:
        """Stored samples in id order: observed at or after ``since``, with ``id > after_id``.

        A recorder polls with ``after_id`` = the last id it has seen.
        """
        t = self.table
        query = sa.select(t).where(t.c.id > after_id).order_by(t.c.id).limit(limit)
        if since is not None:
            query = query.where(t.c.observed_at >= _utc(since))
        for column, wanted in (("device_id", device_id), ("patient_id", patient_id),
                               ("vital", vital)):
            if wanted is not None:
                query = query.where(t.c[column] == wanted)

        def select() -> list[StoredSample]:
            with self.engine.connect() as connection:
                return [_stored(row) for row in connection.execute(query).mappings()]

        return await self._run(select)

    async def alarms_since(self, *, after_id: int = 0, limit: int = 10_000
                           ) -> list[StoredAlarm]:
        t = self.alarms
        query = sa.select(t).where(t.c.id > after_id).order_by(t.c.id).limit(limit)

        def select() -> list[StoredAlarm]:
            with self.engine.connect() as connection:
                return [_stored_alarm(row) for row in connection.execute(query).mappings()]

        return await self._run(select)

    async def message_count(self) -> int:
        """HL7 messages stored (resends not counted)."""
        def count() -> int:
            with self.engine.connect() as connection:
                return int(connection.execute(
                    sa.select(sa.func.count()).select_from(self.messages)).scalar_one())

        return await self._run(count)

    async def durability(self) -> dict[str, str]:
        """The settings a commit's durability depends on, as the database reports them."""
        def read() -> dict[str, str]:
            with self.engine.connect() as connection:
                if self.is_sqlite:
                    mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
                    sync = connection.exec_driver_sql("PRAGMA synchronous").scalar()
                    names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
                    return {"journal_mode": str(mode),
                            "synchronous": names.get(int(sync or 0), str(sync))}
                if self.url.get_backend_name() == "postgresql":
                    value = connection.exec_driver_sql("SHOW synchronous_commit").scalar()
                    return {"synchronous_commit": str(value)}
                return {}

        return await self._run(read)


_CLOSE: Any = object()
"""Queued by ``close``: the writer commits what is before it and ends."""


def _storage_error(exc: Exception, pending: _Pending) -> StorageError:
    # Not chained: a database's own message may quote the row ("Failing row contains
    # ..."), patient id included. The exception types say what failed.
    driver_error = getattr(exc, "orig", None)
    kind = type(exc).__name__ + (f": {type(driver_error).__name__}"
                                 if driver_error is not None else "")
    what = f"{len(pending.samples)} samples" + (f" and {len(pending.alarms)} alarms"
                                                if pending.alarms else "")
    return StorageError(f"could not store {what} ({kind})")


@dataclass(frozen=True)
class _Driver:
    """What the SQLite fast path needs: the dialect (quoting) and a DB-API connection."""

    dialect: sa.Dialect
    connection: Any


def _quoted(connection: _Driver, table: sa.Table) -> str:
    return connection.dialect.identifier_preparer.format_table(table)


def _sqlite_insert(connection: _Driver, table: sa.Table, rows: list[dict[str, Any]]) -> int:
    """``rows`` into ``table`` with the driver's ``executemany``, values converted as
    SQLAlchemy stores them on SQLite (UTC text times, JSON text): the same rows at a
    fraction of the CPU. Returns the last inserted rowid."""
    columns = [c for c in table.columns if c.name in rows[0]]
    converters = [_sqlite_converter(c) for c in columns]
    keys = [c.name for c in columns]
    values = [tuple(v if convert is None or v is None else convert(v)
                    for v, convert in zip([row[k] for k in keys], converters, strict=True))
              for row in rows]
    return _sqlite_executemany(connection, table, keys, values)


def _insert_sql(connection: _Driver, table: sa.Table, columns: Sequence[str],
                verb: str = "INSERT") -> str:
    names = ", ".join(connection.dialect.identifier_preparer.quote(c) for c in columns)
    return (f"{verb} INTO {_quoted(connection, table)} ({names}) VALUES "
            f"({', '.join('?' * len(columns))})")


def _sqlite_executemany(connection: _Driver, table: sa.Table, columns: Sequence[str],
                        values: list[tuple[Any, ...]]) -> int:
    sql = _insert_sql(connection, table, columns)
    cursor = connection.connection.cursor()
    try:
        cursor.executemany(sql, values)
        return int(cursor.execute("SELECT last_insert_rowid()").fetchone()[0])
    finally:
        cursor.close()


class _SqliteTimes:
    """``_sqlite_time`` with a memory: the samples of a message share their times."""

    def __init__(self) -> None:
        self._seen: dict[datetime, str] = {}

    def __call__(self, moment: datetime) -> str:
        text = self._seen.get(moment)
        if text is None:
            text = self._seen[moment] = _sqlite_time(moment)
        return text


_MESSAGE_COLUMNS = ("sending_application", "sending_facility", "control_id", "received_at",
                    "samples", "alarms")
_SAMPLE_COLUMNS = ("device_id", "patient_id", "code", "code_system", "name", "vital", "value",
                   "values", "sample_rate", "unit", "loinc", "status", "text", "observed_at",
                   "observed_offset", "received_at", "reference_range", "abnormal_flags",
                   "message_id")


def _sqlite_sample(sample: VitalSample, received_at: str, message_id: int | None,
                   times: _SqliteTimes, values_json: str | None = None) -> tuple[Any, ...]:
    """The values of ``_row`` in ``_SAMPLE_COLUMNS`` order, as stored on SQLite."""
    observed = sample.observed_at
    if values_json is None and sample.values is not None:
        values_json = json.dumps(list(sample.values))
    return (sample.device_id, sample.patient_id, sample.code, sample.code_system,
            sample.name, sample.vital, sample.value, values_json,
            sample.sample_rate, sample.unit, sample.loinc, sample.status, sample.text,
            times(observed), _offset_minutes(observed), received_at,
            sample.reference_range,
            json.dumps(list(sample.abnormal_flags)) if sample.abnormal_flags else None,
            message_id)


def _sqlite_converter(column: sa.Column[Any]) -> Callable[[Any], Any] | None:
    if isinstance(column.type, sa.JSON):
        return json.dumps
    if isinstance(column.type, sa.DateTime):
        return _sqlite_time
    return None


def _sqlite_time(moment: datetime) -> str:
    """As SQLAlchemy's SQLite DateTime stores it: ``YYYY-MM-DD HH:MM:SS.ffffff`` (UTC)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _message_row(pending: _Pending) -> dict[str, Any]:
    key = pending.key
    assert key is not None
    return {"sending_application": key.sending_application,
            "sending_facility": key.sending_facility, "control_id": key.control_id,
            "received_at": _utc(pending.received_at), "samples": len(pending.samples),
            "alarms": len(pending.alarms)}


def _sqlite_durable(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        mode = cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageError(f"SQLite refused WAL journal mode (got {mode})")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=10000")
        # Checkpoints are run by the store beside the writer (``_checkpoint``), not
        # inside whichever commit makes the WAL cross 1000 pages.
        cursor.execute("PRAGMA wal_autocheckpoint=0")
    finally:
        cursor.close()


def _postgresql_durable(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SHOW synchronous_commit")
        if str(cursor.fetchone()[0]).lower() == "off":
            cursor.execute("SET synchronous_commit TO on")
    finally:
        cursor.close()
    dbapi_connection.commit()


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("datetimes given to the sample store must be timezone-aware")
    return moment.astimezone(UTC)


def _offset_minutes(moment: datetime) -> int | None:
    offset = moment.utcoffset()
    return None if offset is None else int(offset.total_seconds()) // 60


def _row(sample: VitalSample, received_at: datetime, message_id: int | None = None
         ) -> dict[str, Any]:
    return {
        "device_id": sample.device_id,
        "patient_id": sample.patient_id,
        "code": sample.code,
        "code_system": sample.code_system,
        "name": sample.name,
        "vital": sample.vital,
        "value": sample.value,
        "values": list(sample.values) if sample.values is not None else None,
        "sample_rate": sample.sample_rate,
        "unit": sample.unit,
        "loinc": sample.loinc,
        "status": sample.status,
        "text": sample.text,
        "observed_at": _utc(sample.observed_at),
        "observed_offset": _offset_minutes(sample.observed_at),
        "received_at": _utc(received_at),
        "reference_range": sample.reference_range,
        "abnormal_flags": list(sample.abnormal_flags) if sample.abnormal_flags else None,
        "message_id": message_id,
    }


def _alarm_row(alarm: VitalAlarm, received_at: datetime, message_id: int | None
               ) -> dict[str, Any]:
    return {
        "message_id": message_id, "device_id": alarm.device_id,
        "patient_id": alarm.patient_id, "code": alarm.code, "name": alarm.name,
        "priority": alarm.priority, "state": alarm.state, "source": alarm.source,
        "vital": alarm.vital, "text": alarm.text,
        "flags": list(alarm.flags) if alarm.flags else None,
        "observed_at": _utc(alarm.observed_at),
        "observed_offset": _offset_minutes(alarm.observed_at),
        "received_at": _utc(received_at),
    }


def _in_offset(moment: datetime, offset: int | None) -> datetime:
    """A stored UTC instant in the sender's offset (UTC when unknown: older rows)."""
    utc = _as_utc(moment)
    return utc if offset is None else utc.astimezone(_zone(offset))


def _zone(minutes: int) -> tzinfo:
    return UTC if minutes == 0 else timezone(timedelta(minutes=minutes))


def _stored(row: Any) -> StoredSample:
    values = row["values"]
    sample = VitalSample(
        device_id=row["device_id"], code=row["code"], code_system=row["code_system"],
        name=row["name"], observed_at=_in_offset(row["observed_at"], row["observed_offset"]),
        status=row["status"],
        value=row["value"], values=tuple(float(v) for v in values) if values is not None
        else None, sample_rate=row["sample_rate"], unit=row["unit"], loinc=row["loinc"],
        vital=row["vital"], patient_id=row["patient_id"], text=row["text"],
        reference_range=row["reference_range"],
        abnormal_flags=tuple(row["abnormal_flags"] or ()))
    return StoredSample(int(row["id"]), sample, _as_utc(row["received_at"]))


def _stored_alarm(row: Any) -> StoredAlarm:
    alarm = VitalAlarm(
        device_id=row["device_id"], code=row["code"], name=row["name"],
        priority=row["priority"], state=row["state"],
        observed_at=_in_offset(row["observed_at"], row["observed_offset"]),
        source=row["source"], vital=row["vital"], text=row["text"],
        flags=tuple(row["flags"] or ()), patient_id=row["patient_id"])
    return StoredAlarm(int(row["id"]), alarm, _as_utc(row["received_at"]))


def _as_utc(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes (stored as UTC); PostgreSQL aware ones."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
