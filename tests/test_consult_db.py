"""Migrations (alembic upgrade head) on SQLite and on the real PostgreSQL server.

The PostgreSQL tests use a scratch database with a unique name, dropped afterwards. They
FAIL (never skip) when the server is unreachable. CONSULT_TEST_POSTGRES_URL overrides the
server (default: postgresql+psycopg://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from benchmarks.scratch_db import scratch_database
from consult_api.db import make_engine, upgrade
from consult_api.models import Base

POSTGRES_URL = os.environ.get("CONSULT_TEST_POSTGRES_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TABLES = {"hospitals", "departments", "users", "expert_profiles", "consultations",
          "consultation_transitions", "audit_log"}


def scratch_postgres_database() -> contextlib.AbstractContextManager[str]:
    """A fresh, uniquely named database on the test server; dropped on exit."""
    return scratch_database(POSTGRES_URL, "consult_test")


def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'consult.sqlite3'}"
    else:
        with scratch_postgres_database() as url:
            yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    for url in database_url(request.param, tmp_path):
        upgrade(url)
        yield url


def test_migration_creates_every_table(migrated_url: str) -> None:
    engine = make_engine(migrated_url)
    try:
        inspector = sa.inspect(engine)
        assert set(inspector.get_table_names()) >= TABLES
        assert "alembic_version" in inspector.get_table_names()
        columns = {c["name"] for c in inspector.get_columns("consultations")}
        assert {"patient_name", "patient_summary", "state", "room_name"} <= columns
    finally:
        engine.dispose()


def test_migration_matches_the_models(migrated_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = make_engine(migrated_url)
    try:
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_upgrade_is_idempotent(migrated_url: str) -> None:
    upgrade(migrated_url)


def test_sqlite_uses_wal_and_foreign_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'c.sqlite3'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            with pytest.raises(sa.exc.IntegrityError):
                connection.exec_driver_sql(
                    "INSERT INTO departments (hospital_id, name) VALUES (999, 'x')")
    finally:
        engine.dispose()


def test_scratch_database_is_dropped() -> None:
    with scratch_postgres_database() as url:
        name = sa.make_url(url).database
    engine = sa.create_engine(POSTGRES_URL)
    try:
        with engine.connect() as connection:
            found = connection.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                       {"n": name}).scalar()
        assert found is None
    finally:
        engine.dispose()


def test_a_failed_unit_of_work_is_rolled_back(migrated_url: str) -> None:
    from consult_api import records
    from consult_api.db import make_sessionmaker
    from consult_api.models import Hospital

    engine = make_engine(migrated_url)
    factory = make_sessionmaker(engine)

    def half_done(session: sa.orm.Session) -> None:
        records.add_hospital(session, "Half-done Hospital", "county")
        raise RuntimeError("boom")

    try:
        with pytest.raises(RuntimeError):
            records.run_in_session(factory, half_done)
        count = records.run_in_session(factory, lambda s: s.scalar(
            sa.select(sa.func.count()).select_from(Hospital)))
        assert count == 0
    finally:
        engine.dispose()
