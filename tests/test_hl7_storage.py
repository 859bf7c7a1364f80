"""SampleStore on SQLite and PostgreSQL: durability settings, round trips, atomicity, threads."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from devices.hl7.errors import StorageError
from devices.hl7.storage import SampleStore
from devices.vitals import VitalSample
from tests.test_hl7_fixtures import STORE_KINDS, open_store

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
    assert all(r.sample.observed_at.tzinfo is UTC for r in rows)
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
                "SELECT vital, value, unit, patient_id, observed_at FROM vital_samples"
            ).fetchall() == [("spo2", 97.0, "%", "患者-42", "2024-06-01 11:59:00.000000")]
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
