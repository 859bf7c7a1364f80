"""The PTZ audit trail: who steered which room's camera, when, and how (one row a command).

``outcome`` says what the camera actually did, never what was merely asked:
``acknowledged`` (it accepted the command), then for home and preset recall a second
row ``completed``, ``cancelled`` or ``error: CODE``; ``offline`` (nothing was sent, or
it was not acknowledged); ``error: CODE`` (the camera refused: ``NOT_EXECUTABLE``,
``SYNTAX``, ``MALFORMED_REPLY``...); ``denied: ...`` (the lease rules refused);
``lease`` (a lease change that needed no camera command); ``nothing sent`` (a zero
move while nothing moved). Repeats of a running move add no row."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
)

metadata = MetaData()

ptz_audit = Table(
    "ptz_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("room", String(128), nullable=False, index=True),
    Column("participant_id", String(64), nullable=False),
    Column("subject", String(128), nullable=False),
    Column("role", String(32), nullable=False),
    Column("action", String(32), nullable=False),
    Column("params", JSON, nullable=False),
    Column("outcome", String(128), nullable=False),
)


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    room: str
    participant_id: str
    subject: str
    role: str
    action: str
    params: dict[str, Any]
    outcome: str


class PtzAudit:
    """Writes audit rows on one worker thread, in order, without blocking the event loop."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ptz-audit")
        metadata.create_all(engine)

    async def record(self, entry: AuditEntry) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._insert, entry)

    def _insert(self, entry: AuditEntry) -> None:
        with self._engine.begin() as connection:
            connection.execute(insert(ptz_audit).values(
                at=entry.at, room=entry.room, participant_id=entry.participant_id,
                subject=entry.subject, role=entry.role, action=entry.action,
                params=json.loads(json.dumps(entry.params)), outcome=entry.outcome,
            ))

    def entries(self, room: str) -> list[AuditEntry]:
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(ptz_audit).where(ptz_audit.c.room == room).order_by(ptz_audit.c.id))
            return [AuditEntry(
                at=row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC), room=row.room,
                participant_id=row.participant_id, subject=row.subject, role=row.role,
                action=row.action, params=dict(row.params), outcome=row.outcome,
            ) for row in rows]

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def now_utc() -> datetime:
    return datetime.now(UTC)
