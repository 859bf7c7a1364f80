"""SampleStore on SQLite and PostgreSQL: durability settings, round trips, atomicity, threads."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from devices.hl7.errors import StorageError
from devices.hl7.storage import MessageKey, SampleStore
from devices.vitals import VitalAlarm, VitalSample
from tests.test_hl7_fixtures import PG_URL, STORE_KINDS, open_store, postgres_schema

BEIJING = timezone(timedelta(hours=8))
RECEIVED = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)


def sample(**overrides: Any) -> VitalSample:
    fields: dict[str, Any] = {
        "device_id": "080019FFFE0B4020", "code": "150456", "code_system": "MDC",
        "name": "MDC_PULS_OXIM_SAT_O2", "observed_at": datetime(2024, 6, 1, 19, 59, tzinfo=BEIJING),
        "value": 97.0, "unit": "%", "loinc": "59408-5", "vital": "spo2", "patient_id": "患者-42",
    }
    fields.update(overrides)
    return VitalSample(**fields)


@pytest.fixture(params=STORE_KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SampleStore]:
    async with open_store(request.param, tmp_path, clock=lambda: RECEIVED) as opened:
        yield opened


async def test_round_trip_of_every_field(store: SampleStore) -> None:
    wave = sample(code="150452", name="MDC_PULS_OXIM_PLETH", value=None, unit="1", loinc=None,
                  vital="pleth", values=tuple(float(i) / 4 for i in range(500)),
                  sample_rate=100.0, status="F")
    text = sample(code="0", code_system="99VENDOR", name="探头", value=None, unit=None,
                  loinc=None, vital=None, text="探头脱落\n淺東", patient_id=None)
    await store.store([sample(), wave, text])
    rows = await store.samples_since()
    assert [r.sample for r in rows] == [
        sample(observed_at=datetime(2024, 6, 1, 11, 59, tzinfo=UTC)),
        wave.__class__(**{**wave.__dict__, "observed_at": datetime(2024, 6, 1, 11, 59,
                                                                    tzinfo=UTC)}),
        text.__class__(**{**text.__dict__, "observed_at": datetime(2024, 6, 1, 11, 59,
                                                                    tzinfo=UTC)}),
    ]
    # The sender's offset comes back (+08:00 in, +08:00 out), and the instant is the same.
    assert all(r.sample.observed_at.utcoffset() == timedelta(hours=8) for r in rows)
    assert rows[0].sample.observed_at.isoformat() == "2024-06-01T19:59:00+08:00"
    assert all(r.received_at == RECEIVED for r in rows)
    assert rows[0].id < rows[1].id < rows[2].id


async def test_queries(store: SampleStore) -> None:
    base = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    await store.store([sample(observed_at=base + timedelta(minutes=i), value=float(i),
                              device_id=f"DEV{i % 2}") for i in range(6)])
    await store.store([sample(vital="hr", code="147842", observed_at=base)])
    since = await store.samples_since(base + timedelta(minutes=4))
    assert [r.sample.value for r in since] == [4.0, 5.0]
    assert [r.sample.value for r in await store.samples_since(device_id="DEV1")] == [1, 3, 5]
    assert [r.sample.code for r in await store.samples_since(vital="hr")] == ["147842"]
    first = await store.samples_since(limit=3)
    rest = await store.samples_since(after_id=first[-1].id)
    assert len(first) == 3 and len(rest) == 4
    assert len(await store.samples_since(patient_id="患者-42")) == 7


async def test_one_message_is_one_transaction(store: SampleStore) -> None:
    bad = sample(code=None)  # violates NOT NULL: the whole batch must be rolled back
    with pytest.raises(StorageError, match=r"could not store 3 samples \(IntegrityError") as info:
        await store.store([sample(), sample(), bad])
    assert "患者" not in str(info.value) and info.value.__cause__ is None
    assert await store.samples_since() == []
    await store.store([sample()])
    assert len(await store.samples_since()) == 1


async def test_nothing_to_store(store: SampleStore) -> None:
    await store.store([])
    assert await store.samples_since() == []


async def test_database_work_runs_in_the_store_thread(store: SampleStore) -> None:
    threads: list[str] = []
    event.listen(store.engine, "before_cursor_execute",
                 lambda *args: threads.append(threading.current_thread().name))
    await store.store([sample()])
    await store.samples_since()
    assert threads and all(name.startswith("sample-store") for name in threads)
    assert threading.current_thread().name not in threads


async def test_sqlite_is_durable(tmp_path: Path) -> None:
    async with SampleStore(data_dir=tmp_path / "data") as store:
        assert await store.durability() == {"journal_mode": "wal", "synchronous": "FULL"}
        await store.store([sample()])
        # An independent connection sees the committed row, and the file is in WAL mode.
        connection = sqlite3.connect(tmp_path / "data" / "vitals.sqlite3")
        try:
            assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert connection.execute(
                "SELECT vital, value, unit, patient_id, observed_at, observed_offset "
                "FROM vital_samples").fetchall() == [
                ("spo2", 97.0, "%", "患者-42", "2024-06-01 11:59:00.000000", 480)]
        finally:
            connection.close()


async def test_postgresql_commits_synchronously(tmp_path: Path) -> None:
    async with open_store("postgresql", tmp_path) as store:
        assert await store.durability() == {"synchronous_commit": "on"}


def test_in_memory_sqlite_is_refused() -> None:
    with pytest.raises(ValueError, match="in-memory"):
        SampleStore("sqlite://")


async def test_lifecycle(tmp_path: Path) -> None:
    store = SampleStore(data_dir=tmp_path)
    with pytest.raises(StorageError, match="not open"):
        await store.store([sample()])
    await store.open()
    await store.open()  # idempotent
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        await store.store([sample()])
    with pytest.raises(StorageError, match="closed"):
        await store.open()


async def test_reopen_keeps_rows(tmp_path: Path) -> None:
    async with SampleStore(data_dir=tmp_path) as store:
        await store.store([sample()])
    async with SampleStore(data_dir=tmp_path) as store:
        assert len(await store.samples_since()) == 1


def alarm(**overrides: Any) -> VitalAlarm:
    fields: dict[str, Any] = {
        "device_id": "080019FFFE0B4020", "code": "150456", "name": "MDC_PULS_OXIM_SAT_O2",
        "priority": "high", "state": "active",
        "observed_at": datetime(2024, 6, 1, 19, 59, tzinfo=BEIJING), "source": "obx-8",
        "vital": "spo2", "flags": ("LL",), "patient_id": "患者-42",
    }
    fields.update(overrides)
    return VitalAlarm(**fields)


async def test_reference_range_flags_and_alarms_are_stored(store: SampleStore) -> None:
    flagged = sample(value=82.0, reference_range="90-100", abnormal_flags=("LL", "A"))
    key = MessageKey("VSP^080019FFFE134535^EUI-64", "GE Healthcare", "ALRM0001")
    committed = await store.store_message(key, [flagged, sample()], [alarm()])
    assert committed.new and committed.batch >= 1
    rows = [r.sample for r in await store.samples_since()]
    assert rows == [flagged, sample()]
    assert (rows[0].reference_range, rows[0].abnormal_flags) == ("90-100", ("LL", "A"))
    assert (rows[1].reference_range, rows[1].abnormal_flags) == (None, ())
    alarms = await store.alarms_since()
    assert [a.alarm for a in alarms] == [alarm()]
    assert alarms[0].alarm.observed_at.utcoffset() == timedelta(hours=8)
    assert alarms[0].received_at == RECEIVED


async def test_a_message_is_stored_once_per_sender_and_control_id(store: SampleStore) -> None:
    key = MessageKey("VSP", "GE Healthcare", "DUP00001")
    first = await store.store_message(key, [sample()], [alarm()])
    again = await store.store_message(key, [sample()], [alarm()])
    # The same control id from another sender (application or facility) is another message.
    other_app = await store.store_message(MessageKey("VSP2", "GE Healthcare", "DUP00001"),
                                          [sample()])
    other_facility = await store.store_message(MessageKey("VSP", "ICU", "DUP00001"),
                                               [sample()])
    assert (first.new, again.new, other_app.new, other_facility.new) == (True, False, True,
                                                                           True)
    assert len(await store.samples_since()) == 3
    assert len(await store.alarms_since()) == 1
    assert await store.message_count() == 3


async def test_group_commit_takes_concurrent_messages_in_one_transaction(
        store: SampleStore) -> None:
    keys = [MessageKey("VSP", "GE", f"GRP{i:05d}") for i in range(50)]
    # Submitted together (and one resend inside the same batch): few commits, one row set each.
    results = await asyncio.gather(*(store.store_message(k, [sample(value=float(i))])
                                     for i, k in enumerate([*keys, keys[7]])))
    assert [r.new for r in results] == [True] * 50 + [False]
    assert len({r.batch for r in results}) < 10
    assert store.stats.commits < 10 and store.stats.largest_batch > 5
    assert sorted(r.sample.value or 0 for r in await store.samples_since()) == [
        float(i) for i in range(50)]


async def test_a_bad_message_in_a_batch_fails_alone(store: SampleStore) -> None:
    good = [store.store_message(MessageKey("VSP", "GE", f"OK{i}"), [sample()]) for i in range(5)]
    bad = store.store_message(MessageKey("VSP", "GE", "BAD"), [sample(code=None)])
    results = await asyncio.gather(*good, bad, return_exceptions=True)
    assert [isinstance(r, StorageError) for r in results] == [False] * 5 + [True]
    assert "患者" not in str(results[-1])
    assert len(await store.samples_since()) == 5
    assert await store.message_count() == 5


OLD_SCHEMA = {
    "sqlite": """CREATE TABLE vital_samples (
        id INTEGER NOT NULL PRIMARY KEY, device_id TEXT NOT NULL, patient_id TEXT,
        code TEXT NOT NULL, code_system TEXT NOT NULL, name TEXT NOT NULL, vital TEXT,
        value FLOAT, "values" JSON, sample_rate FLOAT, unit TEXT, loinc TEXT,
        status TEXT NOT NULL, text TEXT, observed_at DATETIME NOT NULL,
        received_at DATETIME NOT NULL)""",
    "postgresql": """CREATE TABLE {schema}.vital_samples (
        id BIGSERIAL PRIMARY KEY, device_id TEXT NOT NULL, patient_id TEXT,
        code TEXT NOT NULL, code_system TEXT NOT NULL, name TEXT NOT NULL, vital TEXT,
        value DOUBLE PRECISION, "values" JSON, sample_rate DOUBLE PRECISION, unit TEXT,
        loinc TEXT, status TEXT NOT NULL, text TEXT,
        observed_at TIMESTAMP WITH TIME ZONE NOT NULL,
        received_at TIMESTAMP WITH TIME ZONE NOT NULL)""",
}


def _old_database(kind: str, tmp_path: Path, schema: str | None) -> str:
    """A database as the previous version created it, with one row: its URL."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'vitals.sqlite3'}"
        target = "vital_samples"
    else:
        url, target = PG_URL, f"{schema}.vital_samples"
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(OLD_SCHEMA[kind].format(schema=schema))
            connection.exec_driver_sql(
                f"INSERT INTO {target} (device_id, code, code_system, name, status, value, "
                "observed_at, received_at) VALUES ('D1', '150456', 'MDC', 'SPO2', 'R', 95, "
                "'2024-06-01 11:00:00.000000', '2024-06-01 11:00:00.000000')")
    finally:
        engine.dispose()
    return url


@pytest.mark.parametrize("kind", STORE_KINDS)
async def test_a_database_made_by_the_old_schema_is_upgraded(kind: str, tmp_path: Path) -> None:
    """The table as the previous version created it (no offset, OBX-7/8 or message columns,
    no messages or alarms tables) with a row in it: opening adds what is missing."""
    with contextlib.ExitStack() as stack:
        schema = stack.enter_context(postgres_schema()) if kind == "postgresql" else None
        url = _old_database(kind, tmp_path, schema)
        async with SampleStore(url, schema=schema) as store:
            await store.store_message(MessageKey("VSP", "GE", "UPG00001"),
                                      [sample(reference_range="90-100", abnormal_flags=("N",))],
                                      [alarm()])
            rows = await store.samples_since()
            assert [r.sample.value for r in rows] == [95.0, 97.0]
            assert rows[0].sample.observed_at == datetime(2024, 6, 1, 11, tzinfo=UTC)
            assert rows[1].sample.observed_at.utcoffset() == timedelta(hours=8)
            assert rows[1].sample.reference_range == "90-100"
            assert len(await store.alarms_since()) == 1
            assert await store.message_count() == 1
        async with SampleStore(url, schema=schema) as store:  # a second open changes nothing
            assert len(await store.samples_since()) == 2
