"""Two-way referrals in the database: parsing, creating, reading (audited), moving through
``referral_flow`` and adding notes. Every change notifies the parties (``notifications``).

Reads of patient data (the detail view; the listing, which carries the clinical reason)
write audit rows with ``object_type = "referral"``. Messages and logs carry ids only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from consult_api import audit, auth, notifications
from consult_api.errors import Forbidden, InvalidRequest, NotFound
from consult_api.models import Consultation, Department, Hospital, Referral, ReferralEvent
from consult_api.referral_flow import (
    SENDING_ROLES,
    Direction,
    ReferralFacts,
    ReferralState,
    allowed_targets,
    can_read,
    check_transition,
    direction_fits,
)
from consult_api.schemas import (
    PatientIdentity,
    _object,
    _optional_id,
    _text,
    iso,
    parse_patient_identity,
)
from consult_api.workflow import Actor

logger = logging.getLogger(__name__)

MAX_REASON = 5000
MAX_NOTE = 5000
MAX_LISTED = 500
K = TypeVar("K", bound=StrEnum)


@dataclass(frozen=True)
class ReferralIn:
    direction: Direction
    to_hospital_id: int
    to_department_id: int | None
    consultation_id: int | None
    reason: str
    patient: PatientIdentity


@dataclass(frozen=True)
class ReferralMoveIn:
    to: ReferralState
    note: str


# --- pure parsing ------------------------------------------------------------------------------

def _choice(body: Mapping[str, Any], field: str, kind: type[K]) -> K:
    try:
        return kind(str(body.get(field)))
    except ValueError:
        raise InvalidRequest(
            f"{field} must be one of {', '.join(m.value for m in kind)}") from None


def parse_referral(body: Any) -> ReferralIn:
    data = _object(body, "the request body")
    to_hospital_id = _optional_id(data, "to_hospital_id")
    if to_hospital_id is None:
        raise InvalidRequest("to_hospital_id is required")
    return ReferralIn(direction=_choice(data, "direction", Direction),
                      to_hospital_id=to_hospital_id,
                      to_department_id=_optional_id(data, "to_department_id"),
                      consultation_id=_optional_id(data, "consultation_id"),
                      reason=_text(data, "reason", max_len=MAX_REASON),
                      patient=parse_patient_identity(data.get("patient")))


def parse_move(body: Any) -> ReferralMoveIn:
    data = _object(body, "the request body")
    return ReferralMoveIn(to=_choice(data, "to", ReferralState),
                          note=_text(data, "note", max_len=MAX_NOTE, required=False))


def parse_note(body: Any) -> str:
    return _text(_object(body, "the request body"), "text", max_len=MAX_NOTE)


def parse_filter(query: Mapping[str, str]) -> tuple[Direction | None, ReferralState | None]:
    direction = _choice(query, "direction", Direction) if query.get("direction") else None
    state = _choice(query, "state", ReferralState) if query.get("state") else None
    return direction, state


# --- serialisation -----------------------------------------------------------------------------

def _facts(r: Referral) -> ReferralFacts:
    return ReferralFacts(state=ReferralState(r.state), from_hospital_id=r.from_hospital_id,
                         to_hospital_id=r.to_hospital_id)


def referral_summary(r: Referral, actor: Actor, names: Mapping[int, str]) -> dict[str, Any]:
    """Without patient data; ``allowed`` is what this actor may move it to now."""
    return {"id": r.id, "direction": r.direction, "state": r.state,
            "from_hospital_id": r.from_hospital_id,
            "from_hospital": names.get(r.from_hospital_id),
            "to_hospital_id": r.to_hospital_id, "to_hospital": names.get(r.to_hospital_id),
            "to_department_id": r.to_department_id, "consultation_id": r.consultation_id,
            "reason": r.reason, "created_by": r.created_by, "created_at": iso(r.created_at),
            "updated_at": iso(r.updated_at),
            "allowed": [s.value for s in allowed_targets(_facts(r), actor)]}


def event_json(e: ReferralEvent) -> dict[str, Any]:
    return {"id": e.id, "kind": e.kind, "from": e.from_state, "to": e.to_state,
            "actor_id": e.actor_id, "note": e.note, "at": iso(e.at)}


def _names(session: Session, *ids: int) -> dict[int, str]:
    rows = session.execute(sa.select(Hospital.id, Hospital.name)
                           .where(Hospital.id.in_(set(ids))))
    return {hospital_id: name for hospital_id, name in rows}


# --- operations --------------------------------------------------------------------------------

def _load(session: Session, actor: Actor, referral_id: int, *,
          for_update: bool = False) -> Referral:
    query = sa.select(Referral).where(Referral.id == referral_id)
    if for_update:
        query = query.with_for_update()
    r = session.scalars(query).one_or_none()
    if r is None:
        raise NotFound("no such referral")
    if not can_read(actor, _facts(r)):
        raise Forbidden("you have no access to this referral")
    return r


def create(session: Session, actor: Actor, data: ReferralIn, now: datetime) -> dict[str, Any]:
    """Sent by staff of the actor's own hospital (the sending side)."""
    if actor.role not in SENDING_ROLES:
        raise Forbidden("only clinical staff and coordinators send referrals")
    source = session.get(Hospital, actor.hospital_id)
    target = session.get(Hospital, data.to_hospital_id)
    if source is None:
        raise Forbidden("your account has no hospital")
    if target is None or target.id == source.id:
        raise InvalidRequest("to_hospital_id must name another hospital")
    if not direction_fits(data.direction, source.level, target.level):
        raise InvalidRequest(f"a {source.level} to {target.level} referral is not "
                             f"'{data.direction}'", code="referral-direction")
    if data.to_department_id is not None:
        department = session.get(Department, data.to_department_id)
        if department is None or department.hospital_id != target.id:
            raise InvalidRequest("to_department_id does not name a department of that "
                                 "hospital")
    if data.consultation_id is not None:
        c = session.get(Consultation, data.consultation_id)
        if c is None or not auth.can_read(actor, c.requesting_hospital_id, c.expert_id):
            raise InvalidRequest("consultation_id does not name a consultation you may read")
    p = data.patient
    r = Referral(consultation_id=data.consultation_id, direction=data.direction.value,
                 from_hospital_id=source.id, to_hospital_id=target.id,
                 to_department_id=data.to_department_id, created_by=actor.user_id,
                 patient_name=p.name, patient_sex=p.sex, patient_age=p.age,
                 patient_record_number=p.record_number, reason=data.reason,
                 state=ReferralState.REQUESTED.value, created_at=now, updated_at=now)
    session.add(r)
    session.flush()
    session.add(ReferralEvent(referral_id=r.id, kind="transition", from_state=None,
                              to_state=r.state, actor_id=actor.user_id, note="", at=now))
    notifications.referral_event(session, "referral.requested", r, actor.user_id, now)
    logger.info("referral %s (%s): sent by user %s", r.id, r.direction, actor.user_id)
    return referral_summary(r, actor, {source.id: source.name, target.id: target.name})


def listing(session: Session, actor: Actor, direction: Direction | None,
            state: ReferralState | None, now: datetime) -> list[dict[str, Any]]:
    """Referrals sent by or to the actor's hospital; the list is audited (the reason is
    clinical text): one row with the ids returned."""
    query = sa.select(Referral).where(sa.or_(
        Referral.from_hospital_id == actor.hospital_id,
        Referral.to_hospital_id == actor.hospital_id))
    if direction is not None:
        query = query.where(Referral.direction == direction.value)
    if state is not None:
        query = query.where(Referral.state == state.value)
    found = list(session.scalars(query.order_by(Referral.id.desc()).limit(MAX_LISTED)))
    names = _names(session, *(h for r in found for h in (r.from_hospital_id,
                                                         r.to_hospital_id)))
    audit.record(session, actor, "referral.list", "referral", None,
                 ids=[r.id for r in found], now=now)
    return [referral_summary(r, actor, names) for r in found]


def read(session: Session, actor: Actor, referral_id: int, now: datetime) -> dict[str, Any]:
    """The referral with its patient, its events and notes; audited."""
    r = _load(session, actor, referral_id)
    audit.record(session, actor, "referral.read", "referral", r.id, now=now)
    return detail(session, r, actor)


def detail(session: Session, r: Referral, actor: Actor) -> dict[str, Any]:
    events = session.scalars(sa.select(ReferralEvent).where(
        ReferralEvent.referral_id == r.id).order_by(ReferralEvent.id))
    return {**referral_summary(r, actor, _names(session, r.from_hospital_id,
                                                r.to_hospital_id)),
            "patient": {"name": r.patient_name, "sex": r.patient_sex, "age": r.patient_age,
                        "record_number": r.patient_record_number},
            "events": [event_json(e) for e in events]}


def move(session: Session, actor: Actor, referral_id: int, data: ReferralMoveIn,
         now: datetime) -> dict[str, Any]:
    r = _load(session, actor, referral_id, for_update=True)
    check_transition(_facts(r), data.to, actor)
    previous = r.state
    session.add(ReferralEvent(referral_id=r.id, kind="transition", from_state=previous,
                              to_state=data.to.value, actor_id=actor.user_id, note=data.note,
                              at=now))
    r.state = data.to.value
    r.updated_at = now
    notifications.referral_event(session, "referral.state", r, actor.user_id, now,
                                 {"from": previous, "to": data.to.value})
    logger.info("referral %s: %s -> %s by user %s", r.id, previous, data.to, actor.user_id)
    return referral_summary(r, actor, _names(session, r.from_hospital_id, r.to_hospital_id))


def add_note(session: Session, actor: Actor, referral_id: int, text: str,
             now: datetime) -> dict[str, Any]:
    """Any party (staff of either hospital) adds a note, in any state."""
    r = _load(session, actor, referral_id, for_update=True)
    event = ReferralEvent(referral_id=r.id, kind="note", from_state=None, to_state=None,
                          actor_id=actor.user_id, note=text, at=now)
    session.add(event)
    r.updated_at = now
    session.flush()
    notifications.referral_event(session, "referral.note", r, actor.user_id, now,
                                 {"event_id": event.id})
    logger.info("referral %s: note %s by user %s", r.id, event.id, actor.user_id)
    return event_json(event)
