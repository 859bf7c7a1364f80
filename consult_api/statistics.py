"""Consultation statistics: a pure computation over plain rows, plus one query layer.

Counts per requesting doctor, expert, requesting hospital (by id, and as named lists for
the dashboard), diagnosis (of the latest published report: its ICD-10 code when it has
one, else its free text), state, and month; turnaround (request -> scheduled, request ->
reported) in hours, median and p90 (linear interpolation between closest ranks), from the
transition rows, overall and per month. Coordinators and admins see every consultation;
anyone else sees the consultations requested by, or assigned to an expert of, their own
hospital. ``from``/``to`` (dates, inclusive) select consultations by the day they were
requested. Days and months are UTC.

Per month: ``requested`` counts the consultations requested that month, ``reported`` those
first reported that month; the month's turnaround covers the consultations that reached
the state (scheduled, reported) that month, as a dashboard reports "this month's work".
No patient data is read: staff and hospital names only.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from consult_api import auth
from consult_api.errors import InvalidRequest
from consult_api.models import (
    Consultation,
    ConsultationTransition,
    Hospital,
    Icd10Code,
    Report,
    User,
)
from consult_api.workflow import Actor, State


@dataclass(frozen=True)
class ConsultationRow:
    id: int
    requesting_doctor_id: int
    expert_id: int | None
    requesting_hospital_id: int
    requested_at: datetime
    diagnosis: str | None
    diagnosis_code: str | None = None
    state: str = State.REQUESTED.value


@dataclass(frozen=True)
class TransitionRow:
    consultation_id: int
    to_state: str
    at: datetime


@dataclass(frozen=True)
class PublishedRow:
    """One published report version."""

    consultation_id: int
    version: int


@dataclass(frozen=True)
class Directory:
    """Names for the ids and codes in the rows: hospitals, users, ICD-10 codes (zh, en)."""

    hospitals: Mapping[int, str] = field(default_factory=dict)
    users: Mapping[int, str] = field(default_factory=dict)
    codes: Mapping[str, tuple[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Period:
    """Requested on or after ``start`` and on or before ``end`` (UTC days), when given."""

    start: date | None = None
    end: date | None = None


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` quantile, interpolating linearly between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _month(at: datetime) -> str:
    return _utc(at).strftime("%Y-%m")


def _summary(hours: list[float]) -> dict[str, Any]:
    median, p90 = percentile(hours, 0.5), percentile(hours, 0.9)
    return {"count": len(hours),
            "median_hours": None if median is None else round(median, 3),
            "p90_hours": None if p90 is None else round(p90, 3)}


def _counts(values: Iterable[Any]) -> dict[str, int]:
    return {str(k): n for k, n in sorted(Counter(values).items(), key=lambda kv: str(kv[0]))}


def _named(counts: Counter[int], names: Mapping[int, str], id_field: str,
           ) -> list[dict[str, Any]]:
    """Largest first, then by name and id."""
    return [{id_field: key, "name": names.get(key), "count": n}
            for key, n in sorted(counts.items(),
                                 key=lambda kv: (-kv[1], names.get(kv[0]) or "", kv[0]))]


def _by_diagnosis(consultations: Sequence[ConsultationRow],
                  codes: Mapping[str, tuple[str, str]]) -> list[dict[str, Any]]:
    counts: Counter[tuple[str | None, str | None]] = Counter(
        (c.diagnosis_code, None) if c.diagnosis_code else (None, c.diagnosis)
        for c in consultations if c.diagnosis_code or c.diagnosis)
    out = []
    for (code, text), n in sorted(counts.items(),
                                  key=lambda kv: (-kv[1], kv[0][0] or "~", kv[0][1] or "")):
        zh, en = codes.get(code, (None, None)) if code else (None, None)
        out.append({"code": code, "name_zh": zh, "name_en": en, "diagnosis": text,
                    "count": n})
    return out


def compute(consultations: Sequence[ConsultationRow],
            transitions: Iterable[TransitionRow],
            directory: Directory | None = None,
            published: Iterable[PublishedRow] = ()) -> dict[str, Any]:
    """Pure: the statistics document for these consultations (first entry into a state)."""
    names = directory or Directory()
    wanted = {c.id: c for c in consultations}
    first: dict[tuple[int, str], datetime] = {}
    for t in transitions:
        if t.consultation_id in wanted:
            key = (t.consultation_id, t.to_state)
            at = _utc(t.at)
            if key not in first or at < first[key]:
                first[key] = at

    def reached(to: State) -> list[tuple[datetime, float]]:
        """(when the state was first reached, hours since the request) per consultation."""
        out = []
        for c in consultations:
            at = first.get((c.id, to.value))
            if at is not None:
                out.append((at, (at - _utc(c.requested_at)).total_seconds() / 3600))
        return out

    scheduled, reported = reached(State.SCHEDULED), reached(State.REPORTED)
    months = sorted({_month(c.requested_at) for c in consultations}
                    | {_month(at) for at, _ in reported})
    by_month = []
    for month in months:
        by_month.append({
            "month": month,
            "requested": sum(1 for c in consultations if _month(c.requested_at) == month),
            "reported": sum(1 for at, _ in reported if _month(at) == month),
            "turnaround": {
                "request_to_scheduled": _summary([h for at, h in scheduled
                                                  if _month(at) == month]),
                "request_to_reported": _summary([h for at, h in reported
                                                 if _month(at) == month])}})
    versions = [p for p in published if p.consultation_id in wanted]
    states = Counter(c.state for c in consultations)
    return {
        "total": len(consultations),
        "per_requesting_doctor": _counts(c.requesting_doctor_id for c in consultations),
        "per_expert": _counts(c.expert_id for c in consultations if c.expert_id is not None),
        "per_requesting_hospital": _counts(c.requesting_hospital_id for c in consultations),
        "per_diagnosis": _counts(c.diagnosis_code or c.diagnosis for c in consultations
                                 if c.diagnosis_code or c.diagnosis),
        "per_month": _counts(_month(c.requested_at) for c in consultations),
        "turnaround": {"request_to_scheduled": _summary([h for _, h in scheduled]),
                       "request_to_reported": _summary([h for _, h in reported])},
        "by_state": {s.value: states.get(s.value, 0) for s in State},
        "by_hospital": _named(Counter(c.requesting_hospital_id for c in consultations),
                              names.hospitals, "hospital_id"),
        "by_requesting_doctor": _named(Counter(c.requesting_doctor_id for c in consultations),
                                       names.users, "user_id"),
        "by_expert": _named(Counter(c.expert_id for c in consultations
                                    if c.expert_id is not None), names.users, "user_id"),
        "by_diagnosis": _by_diagnosis(consultations, names.codes),
        "by_month": by_month,
        "reports_published": len(versions),
        "amendments_published": sum(1 for p in versions if p.version > 1),
    }


def _date(query: Mapping[str, str], name: str) -> date | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        if len(raw) != 10:
            raise ValueError
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be a date (YYYY-MM-DD)") from None


def parse_period(query: Mapping[str, str]) -> Period:
    period = Period(start=_date(query, "from"), end=_date(query, "to"))
    if period.start and period.end and period.start > period.end:
        raise InvalidRequest("from must not be after to")
    return period


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def load_rows(session: Session, actor: Actor, period: Period = Period(),
              ) -> tuple[list[ConsultationRow], list[TransitionRow], Directory,
                         list[PublishedRow]]:
    """The rows this actor's statistics cover (no patient columns are read)."""
    query = sa.select(Consultation.id, Consultation.requesting_doctor_id,
                      Consultation.expert_id, Consultation.requesting_hospital_id,
                      Consultation.created_at, Consultation.state).order_by(Consultation.id)
    if not auth.sees_all(actor):
        expert = aliased(User)
        query = query.join(expert, expert.id == Consultation.expert_id, isouter=True).where(
            sa.or_(Consultation.requesting_hospital_id == actor.hospital_id,
                   expert.hospital_id == actor.hospital_id))
    if period.start is not None:
        query = query.where(Consultation.created_at >= _midnight(period.start))
    if period.end is not None:
        query = query.where(Consultation.created_at < _midnight(period.end + timedelta(days=1)))
    base = list(session.execute(query))
    ids = [row.id for row in base]
    diagnoses: dict[int, tuple[str | None, str | None]] = {}
    transitions: list[TransitionRow] = []
    published: list[PublishedRow] = []
    if ids:
        for cid, version, diagnosis, code in session.execute(
                sa.select(Report.consultation_id, Report.version, Report.diagnosis,
                          Report.diagnosis_code)
                .where(Report.consultation_id.in_(ids), Report.status == "published")
                .order_by(Report.consultation_id, Report.version)):
            diagnoses[cid] = (diagnosis, code)  # the latest published version wins
            published.append(PublishedRow(consultation_id=cid, version=version))
        transitions = [TransitionRow(consultation_id=t.consultation_id, to_state=t.to_state,
                                     at=t.at) for t in session.execute(
            sa.select(ConsultationTransition.consultation_id, ConsultationTransition.to_state,
                      ConsultationTransition.at)
            .where(ConsultationTransition.consultation_id.in_(ids)))]
    rows = [ConsultationRow(id=r.id, requesting_doctor_id=r.requesting_doctor_id,
                            expert_id=r.expert_id, requesting_hospital_id=r.requesting_hospital_id,
                            requested_at=r.created_at,
                            diagnosis=diagnoses.get(r.id, (None, None))[0],
                            diagnosis_code=diagnoses.get(r.id, (None, None))[1], state=r.state)
            for r in base]
    return rows, transitions, _directory(session, rows), published


def _directory(session: Session, rows: Sequence[ConsultationRow]) -> Directory:
    hospital_ids = {r.requesting_hospital_id for r in rows}
    user_ids = ({r.requesting_doctor_id for r in rows}
                | {r.expert_id for r in rows if r.expert_id is not None})
    codes = {r.diagnosis_code for r in rows if r.diagnosis_code}
    hospitals: dict[int, str] = {}
    users: dict[int, str] = {}
    names: dict[str, tuple[str, str]] = {}
    if hospital_ids:
        hospitals = {hid: name for hid, name in session.execute(
            sa.select(Hospital.id, Hospital.name).where(Hospital.id.in_(hospital_ids)))}
    if user_ids:
        users = {uid: name for uid, name in session.execute(
            sa.select(User.id, User.display_name).where(User.id.in_(user_ids)))}
    if codes:
        names = {code: (zh, en) for code, zh, en in session.execute(
            sa.select(Icd10Code.code, Icd10Code.name_zh, Icd10Code.name_en)
            .where(Icd10Code.code.in_(codes)))}
    return Directory(hospitals=hospitals, users=users, codes=names)


def statistics(session: Session, actor: Actor, period: Period = Period()) -> dict[str, Any]:
    rows, transitions, directory, published = load_rows(session, actor, period)
    return {**compute(rows, transitions, directory, published),
            "period": {"from": None if period.start is None else period.start.isoformat(),
                       "to": None if period.end is None else period.end.isoformat()}}
