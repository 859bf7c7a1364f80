"""SQLAlchemy engines for device data (samples, PTZ audit): SQLite by default, PostgreSQL too.

SQLite runs in WAL mode with ``synchronous=FULL``: a committed transaction survives a
power cut, which is what "acknowledge only after it is stored" needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def create_device_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get durable, concurrent-reader settings."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)
