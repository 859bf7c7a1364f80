"""The appointments calendar: experts' slots, booking a consultation into a slot, and the
calendar of booked slots.

Coordinators and admins add and remove any expert's slots; an expert manages their own.
Anyone signed in sees when an expert is free or booked; which consultation a booked slot
holds is shown only to those who may read that consultation, and patient names appear in
the calendar only for them (each such entry is audited). Overlap rules: ``slots``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from consult_api import audit, auth, records, slots
from consult_api.errors import Forbidden, InvalidRequest, InvalidTransition, NotFound
from consult_api.models import Consultation, ExpertSlot, Hospital, User
from consult_api.schemas import _object, _optional_id, _timestamp, iso, parse_query_time
from consult_api.workflow import Actor, Role, State, check_transition

MAX_SLOT = timedelta(hours=24)
DEFAULT_RANGE = timedelta(days=31)
MAX_RANGE = timedelta(days=366)


@dataclass(frozen=True)
class SlotIn:
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Range:
    start: datetime
    end: datetime


# --- pure parsing ------------------------------------------------------------------------------

def parse_slot(body: Any) -> SlotIn:
    data = _object(body, "the request body")
    start, end = _timestamp(data, "start"), _timestamp(data, "end")
    if end <= start:
        raise InvalidRequest("end must be after start")
    if end - start > MAX_SLOT:
        raise InvalidRequest("a slot lasts at most 24 hours")
    return SlotIn(start=start, end=end)


def parse_appointment(body: Any) -> int:
    slot_id = _optional_id(_object(body, "the request body"), "slot_id")
    if slot_id is None:
        raise InvalidRequest("slot_id is required")
    return slot_id


def parse_range(query: Mapping[str, str], now: datetime) -> Range:
    """``?from=&to=``: default from now, for 31 days; at most 366 days."""
    start = parse_query_time(query, "from") or now
    end = parse_query_time(query, "to") or start + DEFAULT_RANGE
    if end <= start:
        raise InvalidRequest("to must be after from")
    if end - start > MAX_RANGE:
        raise InvalidRequest("from and to may be at most 366 days apart")
    return Range(start=start, end=end)


def parse_expert_filter(query: Mapping[str, str]) -> int | None:
    raw = query.get("expert_id")
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 9:
        raise InvalidRequest("expert_id must be an integer")
    return int(raw)


def slot_json(slot: ExpertSlot, show_consultation: bool) -> dict[str, Any]:
    return {"id": slot.id, "expert_id": slot.expert_id, "start": iso(slot.start_at),
            "end": iso(slot.end_at),
            "status": "free" if slot.consultation_id is None else "booked",
            "consultation_id": slot.consultation_id if show_consultation else None}


# --- slots -------------------------------------------------------------------------------------

def _expert_or_404(session: Session, expert_id: int) -> User:
    user = session.get(User, expert_id)
    if user is None or user.role != Role.EXPERT.value:
        raise NotFound("no such expert")
    return user


def _may_manage(actor: Actor, expert_id: int) -> None:
    if auth.sees_all(actor) or (actor.role is Role.EXPERT and actor.user_id == expert_id):
        return
    raise Forbidden("only coordinators, admins and the expert manage the expert's slots")


def _readable(actor: Actor, c: Consultation | None) -> bool:
    return c is not None and auth.can_read(actor, c.requesting_hospital_id, c.expert_id)


def create_slot(session: Session, actor: Actor, expert_id: int, data: SlotIn,
                now: datetime) -> dict[str, Any]:
    _may_manage(actor, expert_id)
    _expert_or_404(session, expert_id)
    return slot_json(slots.add(session, expert_id, data.start, data.end, actor.user_id, now),
                     True)


def list_slots(session: Session, actor: Actor, expert_id: int,
               window: Range) -> list[dict[str, Any]]:
    _expert_or_404(session, expert_id)
    rows = session.execute(
        sa.select(ExpertSlot, Consultation)
        .join(Consultation, Consultation.id == ExpertSlot.consultation_id, isouter=True)
        .where(ExpertSlot.expert_id == expert_id, ExpertSlot.start_at < window.end,
               ExpertSlot.end_at > window.start)
        .order_by(ExpertSlot.start_at))
    return [slot_json(slot, _readable(actor, c)) for slot, c in rows]


def delete_slot(session: Session, actor: Actor, slot_id: int) -> None:
    slot = session.scalars(sa.select(ExpertSlot).where(ExpertSlot.id == slot_id)
                           .with_for_update()).one_or_none()
    if slot is None:
        raise NotFound("no such slot")
    _may_manage(actor, slot.expert_id)
    if slot.consultation_id is not None:
        raise InvalidTransition("this slot is booked: cancel or move its consultation first",
                                code="slot-booked")
    session.delete(slot)


# --- booking -----------------------------------------------------------------------------------

def assign(session: Session, actor: Actor, consultation_id: int, slot_id: int,
           now: datetime) -> Consultation:
    """Schedule a consultation into a free slot (coordinators and admins): the slot's
    expert is assigned; a slot booked meanwhile is 409 ``slot-taken``."""
    c = records._load(session, actor, consultation_id, for_update=True)
    check_transition(records._facts(c), State.SCHEDULED, actor)
    slot = session.scalars(sa.select(ExpertSlot).where(ExpertSlot.id == slot_id)
                           .with_for_update()).one_or_none()
    if slot is None:
        raise InvalidRequest("slot_id does not name a slot")
    if slot.consultation_id is not None:
        raise InvalidTransition("this slot is already booked", code="slot-taken")
    slots.release(session, c.id)
    slot.consultation_id = c.id
    session.flush()
    return records.enter_slot(session, actor, c, slot, now)


def calendar(session: Session, actor: Actor, window: Range, expert_id: int | None,
             now: datetime) -> list[dict[str, Any]]:
    """Booked slots in the window with their consultation's state, urgency and requesting
    hospital; the consultation id and patient only for those who may read it (audited)."""
    query = (sa.select(ExpertSlot, Consultation, Hospital)
             .join(Consultation, Consultation.id == ExpertSlot.consultation_id)
             .join(Hospital, Hospital.id == Consultation.requesting_hospital_id)
             .where(ExpertSlot.start_at < window.end, ExpertSlot.end_at > window.start)
             .order_by(ExpertSlot.start_at, ExpertSlot.id))
    if expert_id is not None:
        query = query.where(ExpertSlot.expert_id == expert_id)
    entries = []
    shown: list[int] = []
    for slot, c, hospital in session.execute(query):
        readable = _readable(actor, c)
        entry: dict[str, Any] = {
            "slot_id": slot.id, "expert_id": slot.expert_id, "start": iso(slot.start_at),
            "end": iso(slot.end_at), "consultation_id": c.id if readable else None,
            "state": c.state, "urgency": c.urgency, "type": c.type,
            "requesting_hospital_id": hospital.id, "requesting_hospital": hospital.name,
            "patient": None}
        if readable:
            entry["patient"] = {"name": c.patient_name, "sex": c.patient_sex,
                                "age": c.patient_age}
            shown.append(c.id)
        entries.append(entry)
    if shown:
        audit.record(session, actor, "consultation.calendar", "consultation", None, ids=shown,
                     now=now)
    return entries
