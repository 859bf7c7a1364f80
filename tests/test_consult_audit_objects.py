"""``audit.record``'s ``audit_objects`` rows on SQLite AND PostgreSQL: every listed id is
found again, duplicates of the row's own object are written once, and on PostgreSQL a list
goes to the database as ONE statement (not one INSERT per id: psycopg 3 runs an
executemany that way, which made a coordinator's 2,000-consultation list cost 2,000
statements)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from consult_api import audit, records
from consult_api.db import make_engine, make_sessionmaker
from consult_api.models import AuditLog, AuditObject
from consult_api.workflow import Actor, Role

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@contextmanager
def database(url: str) -> Iterator[tuple[sa.Engine, Actor]]:
    engine = make_engine(url)
    try:
        def seed(s: Session) -> Actor:
            hospital = records.add_hospital(s, "Provincial Hospital", "province")
            user = records.add_user(s, hospital, "Coordinator", Role.COORDINATOR)
            return Actor(user_id=user, role=Role.COORDINATOR, hospital_id=hospital,
                         address="10.0.0.7")

        yield engine, records.run_in_session(make_sessionmaker(engine), seed)
    finally:
        engine.dispose()


def objects_of(engine: sa.Engine, audit_id: int) -> list[tuple[str, int]]:
    with engine.connect() as connection:
        return [(kind, i) for kind, i in connection.execute(
            sa.select(AuditObject.object_type, AuditObject.object_id)
            .where(AuditObject.audit_id == audit_id)
            .order_by(AuditObject.object_type, AuditObject.object_id))]


def test_a_long_list_finds_every_id_again(migrated: str) -> None:
    listed = list(range(2000, 0, -1))  # the order a list returned them in
    with database(migrated) as (engine, actor):
        row_id = records.run_in_session(make_sessionmaker(engine), lambda s: audit.record(
            s, actor, "consultation.list", "consultation", None, ids=listed, now=NOW).id)
        assert objects_of(engine, row_id) == [("consultation", i) for i in range(1, 2001)]
        row = records.run_in_session(make_sessionmaker(engine),
                                     lambda s: s.get(AuditLog, row_id))
        assert row is not None and row.ids == listed and row.object_id is None
        found = records.run_in_session(make_sessionmaker(engine), lambda s: audit.rows_about(
            s, "consultation", 1234))
        assert [(r["id"], r["action"]) for r in found] == [(row_id, "consultation.list")]


def test_scope_and_listed_ids_of_another_type_and_duplicates(migrated: str) -> None:
    with database(migrated) as (engine, actor):
        factory = make_sessionmaker(engine)
        listed = records.run_in_session(factory, lambda s: audit.record(
            s, actor, "material.list", "consultation", 7, ids=[12, 11, 12],
            ids_type="material", now=NOW).id)
        read = records.run_in_session(factory, lambda s: audit.record(
            s, actor, "consultation.list", "consultation", 7, ids=[7, 8], now=NOW).id)
        empty = records.run_in_session(factory, lambda s: audit.record(
            s, actor, "consultation.list", "consultation", None, ids=[], now=NOW).id)
        assert objects_of(engine, listed) == [("consultation", 7), ("material", 11),
                                              ("material", 12)]
        assert objects_of(engine, read) == [("consultation", 7), ("consultation", 8)]
        assert objects_of(engine, empty) == []


def test_on_postgresql_a_list_is_one_statement(migrated: str) -> None:
    statements: list[tuple[str, bool]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any,
             executemany: bool) -> None:
        if "audit_objects" in statement:
            statements.append((statement.split()[0].upper(), executemany))

    with database(migrated) as (engine, actor):
        sa.event.listen(engine, "before_cursor_execute", seen)
        records.run_in_session(make_sessionmaker(engine), lambda s: audit.record(
            s, actor, "consultation.list", "consultation", None, ids=range(1, 501), now=NOW))
        sa.event.remove(engine, "before_cursor_execute", seen)
        with engine.connect() as connection:
            assert connection.execute(sa.select(sa.func.count()).select_from(
                AuditObject)).scalar_one() == 500
    if engine.dialect.name == "postgresql":
        assert statements == [("INSERT", False)]
    else:  # SQLite: in-process, one executemany
        assert statements == [("INSERT", True)]
