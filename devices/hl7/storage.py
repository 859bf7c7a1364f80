"""Durable storage of ``VitalSample``s with SQLAlchemy 2 (SQLite by default, PostgreSQL).

``await store.store(samples)`` returns only once the rows are committed durably, so
it is the ``SampleSink`` an HL7 listener acknowledges after. One transaction per
call (one message): its rows are inserted as one batch. Blocking database work
runs in the store's own worker threads; the event loop never waits on the disk.

Durability:

* SQLite (the default, ``<data_dir>/vitals.sqlite3``): every connection sets
  ``journal_mode=WAL`` and ``synchronous=FULL``, so a commit fsyncs the WAL before
  it returns (survives a power cut, not only a process crash). One worker thread:
  SQLite has one writer at a time anyway.
* PostgreSQL (``postgresql+psycopg://user@host:5432/db``): a commit returns after
  the WAL is flushed when ``synchronous_commit`` is on; a server or role configured
  ``off`` is switched back to ``on`` for the store's sessions.

Errors: ``StorageError`` names the failure by exception types only (e.g.
``IntegrityError: NotNullViolation``) and is not chained to the driver's error, whose
text may quote the failing row; the engine also has ``hide_parameters=True``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from devices.vitals import VitalSample

from .errors import StorageError

logger = logging.getLogger(__name__)

DEFAULT_TABLE = "vital_samples"
DEFAULT_FILE = "vitals.sqlite3"
T = TypeVar("T")


@dataclass(frozen=True)
class StoredSample:
    """A row of the store: its id (increasing in commit order for one writer)."""

    id: int
    sample: VitalSample
    received_at: datetime


def vital_samples_table(metadata: sa.MetaData, name: str = DEFAULT_TABLE,
                        schema: str | None = None) -> sa.Table:
    """The schema. ``observed_at``/``received_at`` are UTC; ``values`` is a JSON array."""
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
        sa.Index(f"ix_{name}_device_observed", "device_id", "observed_at"),
        sa.Index(f"ix_{name}_patient_observed", "patient_id", "observed_at"),
        schema=schema,
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SampleStore:
    """Durable vital-sign sample storage; use as ``async with SampleStore(...) as store``.

    ``url``: a SQLAlchemy URL; None means SQLite in ``data_dir``. ``table`` and
    ``schema`` place the table (the schema must exist). ``workers``: threads doing
    database work (default 1 for SQLite, 4 otherwise).
    """

    def __init__(self, url: str | None = None, *, data_dir: str | os.PathLike[str] = "data",
                 table: str = DEFAULT_TABLE, schema: str | None = None,
                 workers: int | None = None,
                 clock: Callable[[], datetime] = _utc_now) -> None:
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
        self._clock = clock
        self._workers = workers
        self.metadata = sa.MetaData()
        self.table = vital_samples_table(self.metadata, table, schema)
        self._engine: Engine | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise StorageError("the sample store is not open")
        return self._engine

    async def open(self) -> None:
        """Create the engine, the table if missing, and check durability settings."""
        if self._closed:
            raise StorageError("the sample store is closed")
        if self._engine is not None:
            return
        self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="sample-store")
        self._engine = self._create_engine()
        try:
            await self._run(self._create_schema)
        except BaseException:
            await self.close()
            raise
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
                                  pool_size=self._workers, max_overflow=0)
        if self.url.get_backend_name() == "postgresql":
            event.listen(engine, "connect", _postgresql_durable)
        return engine

    def _create_schema(self) -> None:
        self.metadata.create_all(self.engine)

    async def close(self) -> None:
        """Wait for work in progress, then release connections. Idempotent."""
        self._closed = True
        executor, self._executor = self._executor, None
        engine, self._engine = self._engine, None
        if executor is not None:
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

    async def store(self, samples: Sequence[VitalSample]) -> None:
        """Insert ``samples`` in one transaction; returns once it is committed durably.

        A ``SampleSink``. Raises ``StorageError`` (naming the database error's type
        only) when the rows could not be committed.
        """
        if not samples:
            return
        received_at = self._clock()
        rows = [_row(sample, received_at) for sample in samples]
        try:
            await self._run(lambda: self._insert(rows))
        except SQLAlchemyError as exc:
            # Not chained: a database's own message may quote the row ("Failing row
            # contains ..."), patient id included. The exception types say what failed.
            driver_error = getattr(exc, "orig", None)
            kind = type(exc).__name__ + (f": {type(driver_error).__name__}"
                                         if driver_error is not None else "")
            raise StorageError(f"could not store {len(rows)} samples ({kind})") from None

    __call__ = store

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        with self.engine.begin() as connection:
            connection.execute(self.table.insert(), rows)

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


def _sqlite_durable(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        mode = cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageError(f"SQLite refused WAL journal mode (got {mode})")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=10000")
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


def _row(sample: VitalSample, received_at: datetime) -> dict[str, Any]:
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
        "received_at": _utc(received_at),
    }


def _stored(row: Any) -> StoredSample:
    values = row["values"]
    sample = VitalSample(
        device_id=row["device_id"], code=row["code"], code_system=row["code_system"],
        name=row["name"], observed_at=_as_utc(row["observed_at"]), status=row["status"],
        value=row["value"], values=tuple(float(v) for v in values) if values is not None
        else None, sample_rate=row["sample_rate"], unit=row["unit"], loinc=row["loinc"],
        vital=row["vital"], patient_id=row["patient_id"], text=row["text"])
    return StoredSample(int(row["id"]), sample, _as_utc(row["received_at"]))


def _as_utc(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes (stored as UTC); PostgreSQL aware ones."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
