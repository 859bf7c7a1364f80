"""Experts' slots in the database: the overlap rule and booking, used by ``records``
(scheduling at a free time) and ``appointments`` (the calendar API).

Intervals are half-open, ``[start, end)``: a slot ending at 10:00 and one starting at 10:00
do not clash. The overlap check and the insert run with the expert's ``users`` row locked
(``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite every write transaction already holds
the database's write lock from ``BEGIN IMMEDIATE``), so two concurrent requests cannot both
see "no clash" and both insert. Times are stored in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from consult_api.errors import InvalidRequest, InvalidTransition
from consult_api.models import Consultation, ExpertSlot, User
from consult_api.workflow import Role, State

# A consultation in one of these states holds its expert's time.
HOLDING_STATES = (State.SCHEDULED.value, State.IN_SESSION.value)


def overlaps(start: datetime, end: datetime, other_start: datetime,
             other_end: datetime) -> bool:
    """Half-open intervals: touching ends are not an overlap (pure)."""
    return start < other_end and other_start < end


def lock_expert(session: Session, expert_id: int) -> User:
    """The expert's users row, locked until the transaction ends."""
    user = session.scalars(sa.select(User).where(User.id == expert_id)
                           .with_for_update()).one_or_none()
    if user is None or user.role != Role.EXPERT.value:
        raise InvalidRequest("expert_id does not name an expert")
    return user


def clashing(session: Session, expert_id: int, start: datetime,
             end: datetime) -> list[ExpertSlot]:
    return list(session.scalars(sa.select(ExpertSlot).where(
        ExpertSlot.expert_id == expert_id, ExpertSlot.start_at < end,
        ExpertSlot.end_at > start).order_by(ExpertSlot.start_at)))


def add(session: Session, expert_id: int, start: datetime, end: datetime, created_by: int,
        now: datetime, consultation_id: int | None = None) -> ExpertSlot:
    """A new slot; 409 ``slot-conflict`` when it overlaps another of the expert's slots."""
    lock_expert(session, expert_id)
    if clashing(session, expert_id, start, end):
        raise InvalidTransition("this time overlaps another slot of the expert",
                                code="slot-conflict")
    slot = ExpertSlot(expert_id=expert_id, start_at=start, end_at=end,
                      consultation_id=consultation_id, created_by=created_by, created_at=now)
    session.add(slot)
    session.flush()
    return slot


def book_time(session: Session, consultation_id: int, expert_id: int, start: datetime,
              end: datetime, created_by: int, now: datetime) -> ExpertSlot:
    """Book the expert at a freely chosen time (the schedule endpoint).

    A free slot with exactly these times is booked; any other overlap with the expert's
    slots, or with another consultation holding the expert then, is 409 ``slot-conflict``."""
    lock_expert(session, expert_id)
    found = clashing(session, expert_id, start, end)
    held = session.scalar(sa.select(sa.func.count()).select_from(Consultation).where(
        Consultation.expert_id == expert_id, Consultation.id != consultation_id,
        Consultation.state.in_(HOLDING_STATES), Consultation.slot_start < end,
        Consultation.slot_end > start))
    exact = [s for s in found if s.consultation_id is None
             and _same(s.start_at, start) and _same(s.end_at, end)]
    if held or (found and exact != found):
        raise InvalidTransition("the expert is already booked at this time",
                                code="slot-conflict")
    release(session, consultation_id)
    if exact:
        exact[0].consultation_id = consultation_id
        session.flush()
        return exact[0]
    slot = ExpertSlot(expert_id=expert_id, start_at=start, end_at=end,
                      consultation_id=consultation_id, created_by=created_by, created_at=now)
    session.add(slot)
    session.flush()
    return slot


def _same(stored: datetime, wanted: datetime) -> bool:
    """SQLite gives stored times back without their (UTC) offset."""
    return (stored if stored.tzinfo else stored.replace(tzinfo=UTC)) == wanted


def release(session: Session, consultation_id: int) -> None:
    """Free the slot a consultation holds (cancelled, or booked elsewhere)."""
    session.execute(sa.update(ExpertSlot).where(ExpertSlot.consultation_id == consultation_id)
                    .values(consultation_id=None))
