"""Pure parsing and validation of request bodies, and serialisation of records.

Error messages name the field and the rule, never the submitted value (it may be patient data).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from consult_api.errors import InvalidRequest
from consult_api.models import HOSPITAL_LEVELS, Consultation, ConsultationTransition
from consult_api.workflow import ConsultationType, Role, State, Urgency
from contracts.handoff import valid_recording_id

E = TypeVar("E", Urgency, ConsultationType, State, Role)

SEXES = ("female", "male", "other", "unknown")


@dataclass(frozen=True)
class PatientIdentity:
    """Who the patient is (consultations and referrals alike)."""

    name: str
    sex: str
    age: int
    record_number: str | None


@dataclass(frozen=True)
class PatientIn(PatientIdentity):
    summary: str


@dataclass(frozen=True)
class ConsultationIn:
    patient: PatientIn
    question: str
    urgency: Urgency
    type: ConsultationType
    expert_id: int | None


@dataclass(frozen=True)
class TransitionIn:
    to: State
    note: str


@dataclass(frozen=True)
class ScheduleIn:
    start: datetime
    end: datetime
    expert_id: int
    bed_room: str | None = None  # the bed's media room it is held at (its recordings attach)


def _object(body: Any, where: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest(f"{where} must be a JSON object")
    return body


def _text(body: dict[str, Any], field: str, *, max_len: int, required: bool = True) -> str:
    value = body.get(field)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise InvalidRequest(f"{field} must be a non-empty string")
    if len(value) > max_len:
        raise InvalidRequest(f"{field} must be at most {max_len} characters")
    return value


def _int(body: dict[str, Any], field: str, *, low: int, high: int) -> int:
    value = body.get(field)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(f"{field} must be an integer from {low} to {high}")
    return value


def _optional_id(body: dict[str, Any], field: str) -> int | None:
    if body.get(field) is None:
        return None
    return _int(body, field, low=1, high=2**31 - 1)


def _choice(body: dict[str, Any], field: str, kind: type[E]) -> E:
    value = body.get(field)
    try:
        return kind(str(value))
    except ValueError:
        raise InvalidRequest(
            f"{field} must be one of {', '.join(m.value for m in kind)}") from None


# Timestamps outside these years are refused: near datetime's limits (years 1 and 9999)
# converting to UTC or adding an hour of grace would overflow (a 500, not a 400).
TIMESTAMP_YEARS = (1970, 2999)


def _timestamp(body: dict[str, Any], field: str) -> datetime:
    value = body.get(field)
    if not isinstance(value, str) or len(value) > 64:
        raise InvalidRequest(f"{field} must be an ISO 8601 timestamp with a UTC offset")
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise InvalidRequest(f"{field} must carry a UTC offset")
        parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidRequest(f"{field} must be an ISO 8601 timestamp with a UTC offset") from None
    low, high = TIMESTAMP_YEARS
    if not low <= parsed.year <= high:
        raise InvalidRequest(f"{field} must be in the years {low} to {high}")
    return parsed


def parse_patient_identity(body: Any) -> PatientIdentity:
    patient = _object(body, "patient")
    sex = patient.get("sex")
    if sex not in SEXES:
        raise InvalidRequest(f"patient.sex must be one of {', '.join(SEXES)}")
    record = patient.get("record_number")
    if record is not None and (not isinstance(record, str) or len(record) > 100):
        raise InvalidRequest("patient.record_number must be a string of at most 100 characters")
    try:
        return PatientIdentity(name=_text(patient, "name", max_len=200), sex=str(sex),
                               age=_int(patient, "age", low=0, high=150), record_number=record)
    except InvalidRequest as exc:
        raise InvalidRequest(f"patient.{exc.message}") from None


def parse_patient(body: Any) -> PatientIn:
    who = parse_patient_identity(body)
    try:
        summary = _text(_object(body, "patient"), "summary", max_len=20000)
    except InvalidRequest as exc:
        raise InvalidRequest(f"patient.{exc.message}") from None
    return PatientIn(name=who.name, sex=who.sex, age=who.age, record_number=who.record_number,
                     summary=summary)


def parse_consultation(body: Any) -> ConsultationIn:
    data = _object(body, "the request body")
    return ConsultationIn(patient=parse_patient(data.get("patient")),
                          question=_text(data, "question", max_len=20000),
                          urgency=_choice(data, "urgency", Urgency),
                          type=_choice(data, "type", ConsultationType),
                          expert_id=_optional_id(data, "expert_id"))


def parse_transition(body: Any) -> TransitionIn:
    data = _object(body, "the request body")
    return TransitionIn(to=_choice(data, "to", State),
                        note=_text(data, "note", max_len=5000, required=False))


def parse_schedule(body: Any) -> ScheduleIn:
    data = _object(body, "the request body")
    start, end = _timestamp(data, "start"), _timestamp(data, "end")
    if end <= start:
        raise InvalidRequest("end must be after start")
    expert_id = _optional_id(data, "expert_id")
    if expert_id is None:
        raise InvalidRequest("expert_id is required")
    bed_room = _text(data, "bed_room", max_len=100, required=False) or None
    if bed_room is not None and not valid_recording_id(bed_room):
        raise InvalidRequest("bed_room must be a media room name (letters, digits, _ - .)")
    return ScheduleIn(start=start, end=end, expert_id=expert_id, bed_room=bed_room)


def parse_flag(query: Mapping[str, str], name: str) -> bool:
    """A query-string switch: ``1``/``true`` on, ``0``/``false``/absent off."""
    value = query.get(name, "0").strip().lower()
    if value not in ("0", "1", "true", "false", ""):
        raise InvalidRequest(f"{name} must be 1 or 0")
    return value in ("1", "true")


def parse_consultation_filter(query: Mapping[str, str]) -> tuple[State | None, bool]:
    """``?state=&mine=`` of the consultation listing."""
    state = None
    if query.get("state"):
        state = _choice(dict(query), "state", State)
    return state, parse_flag(query, "mine")


def parse_query_time(query: Mapping[str, str], name: str) -> datetime | None:
    """An ISO 8601 time in the query string; a '+' of the offset that arrived unencoded
    (so as a space) is put back."""
    raw = query.get(name)
    if not raw:
        return None
    candidates = [raw, raw.replace(" ", "+")] if " " in raw else [raw]
    for candidate in candidates:
        try:
            return _timestamp({name: candidate}, name)
        except InvalidRequest:
            continue
    raise InvalidRequest(f"{name} must be an ISO 8601 timestamp with a UTC offset")


def iso(value: datetime | None) -> str | None:
    """SQLite drops the offset: stored times are UTC, so a naive value is read as UTC."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def consultation_summary(c: Consultation) -> dict[str, Any]:
    """The record without patient data."""
    return {
        "id": c.id, "requesting_hospital_id": c.requesting_hospital_id,
        "requesting_doctor_id": c.requesting_doctor_id, "expert_id": c.expert_id,
        "question": c.question, "urgency": c.urgency, "type": c.type, "state": c.state,
        "slot": None if c.slot_start is None else {"start": iso(c.slot_start),
                                                   "end": iso(c.slot_end)},
        "room": c.room_name, "created_at": iso(c.created_at), "updated_at": iso(c.updated_at),
    }


def consultation_detail(c: Consultation,
                        transitions: list[ConsultationTransition]) -> dict[str, Any]:
    return {
        **consultation_summary(c),
        "patient": {"name": c.patient_name, "sex": c.patient_sex, "age": c.patient_age,
                    "record_number": c.patient_record_number, "summary": c.patient_summary},
        "transitions": [
            {"from": t.from_state, "to": t.to_state, "actor_id": t.actor_id, "at": iso(t.at),
             "note": t.note} for t in transitions],
    }


@dataclass(frozen=True)
class HospitalIn:
    name: str
    level: str


@dataclass(frozen=True)
class UserIn:
    hospital_id: int
    display_name: str
    role: Role
    department_id: int | None
    specialty: str | None
    availability: str


def parse_hospital(body: Any) -> HospitalIn:
    data = _object(body, "the request body")
    level = data.get("level")
    if level not in HOSPITAL_LEVELS:
        raise InvalidRequest(f"level must be one of {', '.join(HOSPITAL_LEVELS)}")
    return HospitalIn(name=_text(data, "name", max_len=200), level=str(level))


def parse_user(body: Any) -> UserIn:
    data = _object(body, "the request body")
    role = _choice(data, "role", Role)
    specialty = _text(data, "specialty", max_len=200, required=False) or None
    if role is Role.EXPERT and specialty is None:
        raise InvalidRequest("an expert needs a specialty")
    if role is not Role.EXPERT and specialty is not None:
        raise InvalidRequest("only an expert has a specialty")
    hospital_id = _optional_id(data, "hospital_id")
    if hospital_id is None:
        raise InvalidRequest("hospital_id is required")
    return UserIn(hospital_id=hospital_id, display_name=_text(data, "display_name", max_len=200),
                  role=role, department_id=_optional_id(data, "department_id"),
                  specialty=specialty,
                  availability=_text(data, "availability", max_len=2000, required=False))
