"""Synchronous record operations on one Session: the I/O around the pure cores.

Each function validates and decides with the pure modules (``workflow``, ``auth``), then
reads or writes. Reads of patient data add an audit row (``audit.record``) in the same
transaction.
The caller commits (``run_in_session``, from ``consult_api.db``, re-exported here).
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from consult_api import audit, auth, notifications, slots
from consult_api.db import run_in_session as run_in_session  # re-exported for callers
from consult_api.errors import InvalidRequest, InvalidTransition, NotFound
from consult_api.models import (
    HOSPITAL_LEVELS,
    Consultation,
    ConsultationTransition,
    Department,
    ExpertProfile,
    ExpertSlot,
    Hospital,
    User,
)
from consult_api.schemas import (
    ConsultationIn,
    HospitalIn,
    ScheduleIn,
    TransitionIn,
    UserIn,
    iso,
)
from consult_api.workflow import (
    Actor,
    ConsultationType,
    Facts,
    Role,
    State,
    check_transition,
    media_role,
)

logger = logging.getLogger(__name__)


# --- directory: hospitals, departments, users, expert profiles -------------------------------

def add_hospital(session: Session, name: str, level: str) -> int:
    if level not in HOSPITAL_LEVELS:
        raise InvalidRequest(f"level must be one of {', '.join(HOSPITAL_LEVELS)}")
    hospital = Hospital(name=name, level=level)
    session.add(hospital)
    session.flush()
    return hospital.id


def add_department(session: Session, hospital_id: int, name: str) -> int:
    department = Department(hospital_id=hospital_id, name=name)
    session.add(department)
    session.flush()
    return department.id


def add_user(session: Session, hospital_id: int, display_name: str, role: Role,
             department_id: int | None = None) -> int:
    user = User(hospital_id=hospital_id, department_id=department_id,
                display_name=display_name, role=role.value)
    session.add(user)
    session.flush()
    return user.id


def add_expert_profile(session: Session, user_id: int, specialty: str,
                       availability: str = "") -> int:
    profile = ExpertProfile(user_id=user_id, specialty=specialty, availability=availability)
    session.add(profile)
    session.flush()
    return profile.id


def create_hospital(session: Session, actor: Actor, data: HospitalIn) -> int:
    auth.require_role(actor, Role.ADMIN)
    return add_hospital(session, data.name, data.level)


def create_user(session: Session, actor: Actor, data: UserIn) -> int:
    auth.require_role(actor, Role.ADMIN)
    if session.get(Hospital, data.hospital_id) is None:
        raise InvalidRequest("hospital_id does not name a hospital")
    if data.department_id is not None:
        department = session.get(Department, data.department_id)
        if department is None or department.hospital_id != data.hospital_id:
            raise InvalidRequest("department_id does not name a department of that hospital")
    user_id = add_user(session, data.hospital_id, data.display_name, data.role,
                       data.department_id)
    if data.specialty is not None:
        add_expert_profile(session, user_id, data.specialty, data.availability)
    logger.info("user %s (%s) created by admin %s", user_id, data.role, actor.user_id)
    return user_id


def list_experts(session: Session) -> list[dict[str, Any]]:
    """Experts with their profiles and departments, for requesters and coordinators
    choosing one."""
    rows = session.execute(
        sa.select(User, ExpertProfile, Hospital, Department)
        .join(ExpertProfile, ExpertProfile.user_id == User.id, isouter=True)
        .join(Hospital, Hospital.id == User.hospital_id)
        .join(Department, Department.id == User.department_id, isouter=True)
        .where(User.role == Role.EXPERT.value).order_by(User.id))
    return [{"id": user.id, "display_name": user.display_name, "hospital_id": hospital.id,
             "hospital": hospital.name, "hospital_level": hospital.level,
             "specialty": None if profile is None else profile.specialty,
             "availability": None if profile is None else profile.availability,
             "department_id": None if department is None else department.id,
             "department": None if department is None else department.name}
            for user, profile, hospital, department in rows]


# --- consultations ----------------------------------------------------------------------------

def _expert(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None or user.role != Role.EXPERT.value:
        raise InvalidRequest("expert_id does not name an expert")
    return user


def _facts(c: Consultation) -> Facts:
    return Facts(state=State(c.state), type=ConsultationType(c.type),
                 requesting_doctor_id=c.requesting_doctor_id, expert_id=c.expert_id)


def _load(session: Session, actor: Actor, consultation_id: int, *,
          for_update: bool = False) -> Consultation:
    query = sa.select(Consultation).where(Consultation.id == consultation_id)
    if for_update:
        query = query.with_for_update()
    c = session.scalars(query).one_or_none()
    if c is None:
        raise NotFound(f"no consultation {consultation_id}")
    auth.require_read(actor, c.requesting_hospital_id, c.expert_id)
    return c


def _record_transition(session: Session, c: Consultation, to: State, actor: Actor,
                       note: str, now: datetime) -> None:
    """Every state change goes through here: history row, notifications and webhook, and
    a cancelled consultation gives its expert's slot back."""
    previous = c.state
    session.add(ConsultationTransition(consultation_id=c.id, from_state=c.state,
                                       to_state=to.value, actor_id=actor.user_id, at=now,
                                       note=note))
    c.state = to.value
    c.updated_at = now
    if to is State.CANCELLED:
        slots.release(session, c.id)
    notifications.consultation_event(session, "consultation.state", c, actor.user_id, now,
                                     {"from": previous, "to": to.value})


def create_consultation(session: Session, actor: Actor, data: ConsultationIn,
                        now: datetime) -> int:
    auth.require_role(actor, Role.REQUESTING_DOCTOR)
    if data.expert_id is not None:
        _expert(session, data.expert_id)
    p = data.patient
    c = Consultation(
        requesting_hospital_id=actor.hospital_id, requesting_doctor_id=actor.user_id,
        expert_id=data.expert_id, patient_name=p.name, patient_sex=p.sex,
        patient_age=p.age, patient_record_number=p.record_number, patient_summary=p.summary,
        question=data.question, urgency=data.urgency.value, type=data.type.value,
        state=State.REQUESTED.value, created_at=now, updated_at=now)
    session.add(c)
    session.flush()
    session.add(ConsultationTransition(consultation_id=c.id, from_state=None,
                                       to_state=State.REQUESTED.value, actor_id=actor.user_id,
                                       at=now, note=""))
    notifications.consultation_event(session, "consultation.requested", c, actor.user_id, now,
                                     {"urgency": c.urgency})
    logger.info("consultation %s: requested by user %s", c.id, actor.user_id)
    return c.id


LIST_LIMIT = 100
LIST_MAX_LIMIT = 200
ID_MAX = 2**31 - 1  # the largest id (PostgreSQL INTEGER)


def list_consultations(session: Session, actor: Actor, now: datetime, *,
                       state: State | None = None, mine: bool = False,
                       limit: int = LIST_LIMIT, before_id: int | None = None,
                       ) -> list[Consultation]:
    """The consultations this actor may see, newest first, one page of at most ``limit``
    (the next page: ``before_id`` = the last id of this one), as summaries without the
    patient columns. A province's whole history is never sent (nor audited) at once.

    ``state`` filters (the coordinators' incoming queue is ``requested``); ``mine`` keeps a
    requesting doctor's own requests and an expert's assignments (their worklist).
    The question is clinical text, so the list is audited: one row with the ids returned.
    """
    query = sa.select(Consultation).order_by(Consultation.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(Consultation.id < before_id)
    if actor.role is Role.REQUESTING_DOCTOR:
        query = query.where(Consultation.requesting_hospital_id == actor.hospital_id)
        if mine:
            query = query.where(Consultation.requesting_doctor_id == actor.user_id)
    elif actor.role is Role.EXPERT:
        query = query.where(Consultation.expert_id == actor.user_id)
    if state is not None:
        query = query.where(Consultation.state == state.value)
    found = list(session.scalars(query))
    audit.record(session, actor, "consultation.list", "consultation", None,
                 ids=[c.id for c in found], now=now)
    return found


def read_consultation(session: Session, actor: Actor, consultation_id: int,
                      now: datetime) -> tuple[Consultation, list[ConsultationTransition]]:
    """The full record with patient data; writes an audit row."""
    c = _load(session, actor, consultation_id)
    audit.record(session, actor, "consultation.read", "consultation", c.id, now=now)
    transitions = list(session.scalars(
        sa.select(ConsultationTransition)
        .where(ConsultationTransition.consultation_id == c.id)
        .order_by(ConsultationTransition.id)))
    return c, transitions


def transition(session: Session, actor: Actor, consultation_id: int, data: TransitionIn,
               now: datetime) -> Consultation:
    c = _load(session, actor, consultation_id, for_update=True)
    if data.to is State.SCHEDULED:
        raise InvalidRequest("use the schedule endpoint to schedule a consultation")
    check_transition(_facts(c), data.to, actor)
    logger.info("consultation %s: %s -> %s by user %s", c.id, c.state, data.to, actor.user_id)
    _record_transition(session, c, data.to, actor, data.note, now)
    return c


def schedule(session: Session, actor: Actor, consultation_id: int, data: ScheduleIn,
             now: datetime) -> Consultation:
    """Schedule at a freely chosen time: refused (409 ``slot-conflict``) when the expert is
    booked then; the booking is recorded as the expert's slot."""
    c = _load(session, actor, consultation_id, for_update=True)
    check_transition(_facts(c), State.SCHEDULED, actor)
    _expert(session, data.expert_id)
    slot = slots.book_time(session, c.id, data.expert_id, data.start, data.end,
                           actor.user_id, now)
    if data.bed_room is not None:
        c.bed_room = data.bed_room  # the bed room's recordings in the slot attach to it
    return enter_slot(session, actor, c, slot, now)


def enter_slot(session: Session, actor: Actor, c: Consultation, slot: ExpertSlot,
               now: datetime) -> Consultation:
    """Move a consultation (locked, its transition checked) into a slot booked for it:
    expert, times, a live room, the ``scheduled`` transition, notifications."""
    assigned = c.expert_id != slot.expert_id
    c.expert_id = slot.expert_id
    c.slot_start, c.slot_end = slot.start_at, slot.end_at
    c.room_name = f"consult-{c.id}-{secrets.token_hex(4)}"
    logger.info("consultation %s: scheduled into slot %s by user %s", c.id, slot.id,
                actor.user_id)
    _record_transition(session, c, State.SCHEDULED, actor, "", now)
    if assigned:
        expert = session.get_one(User, slot.expert_id)  # staff name, never patient data
        notifications.consultation_event(session, "consultation.assigned", c, actor.user_id,
                                          now, {"expert_id": slot.expert_id,
                                                "expert_name": expert.display_name})
    notifications.consultation_event(session, "appointment.booked", c, actor.user_id, now,
                                     {"slot_id": slot.id, "expert_id": slot.expert_id,
                                      "start": iso(slot.start_at), "end": iso(slot.end_at)})
    return c


def live_room(session: Session, actor: Actor, consultation_id: int,
              now: datetime) -> tuple[str, str, datetime]:
    """(room name, media role, slot end) for an actor joining the live session; audited."""
    c = _load(session, actor, consultation_id)
    role = media_role(actor, _facts(c))
    if c.room_name is None or c.slot_end is None:
        raise InvalidTransition("this consultation has no live room: schedule it first")
    audit.record(session, actor, "consultation.room_token", "consultation", c.id, now=now)
    end = c.slot_end if c.slot_end.tzinfo else c.slot_end.replace(tzinfo=UTC)
    return c.room_name, role, end
