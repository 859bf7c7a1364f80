"""Engines, sessions and migrations for the consultation records database.

SQLite (the default: a file in the data directory, WAL, foreign keys on) or PostgreSQL via
psycopg (``postgresql+psycopg://...``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

DEFAULT_DATA_DIR = Path("data")
ALEMBIC_INI = Path(__file__).with_name("alembic.ini")

T = TypeVar("T")


def default_url(data_dir: Path = DEFAULT_DATA_DIR) -> str:
    return f"sqlite:///{data_dir / 'consult.sqlite3'}"


def make_engine(url: str | sa.URL) -> Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, hide_parameters=True,
                                  connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    return sa.create_engine(parsed, hide_parameters=True, pool_pre_ping=True)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def run_in_session(factory: sessionmaker[Session], work: Callable[[Session], T]) -> T:
    """Run ``work`` in one transaction: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        return work(session)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, emit BEGIN (see _sqlite_begin_immediate).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
    finally:
        cursor.close()


def _sqlite_begin_immediate(connection: sa.Connection) -> None:
    """Take the write lock at BEGIN: a read-then-write transaction (a state transition)
    then never fails half way with SQLITE_BUSY; concurrent writers queue (busy_timeout)."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def alembic_config(url: str | sa.URL) -> Config:
    config = Config(str(ALEMBIC_INI))
    rendered = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    # ConfigParser interpolates '%': escape it so passwords with '%' survive.
    config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def upgrade(url: str | sa.URL, revision: str = "head") -> None:
    """Run ``alembic upgrade head`` (or up to ``revision``) against ``url``."""
    command.upgrade(alembic_config(url), revision)
