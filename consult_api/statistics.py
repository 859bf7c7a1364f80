"""Consultation statistics: a pure computation over plain rows, plus one query layer.

Counts per requesting doctor, expert, requesting hospital, diagnosis (of the latest
published report) and month of request; turnaround (request -> scheduled, request ->
reported) in hours, median and p90 (linear interpolation between closest ranks), from the
transition rows. Coordinators and admins see every consultation; anyone else sees the
consultations requested by, or assigned to an expert of, their own hospital.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from consult_api import auth
from consult_api.models import Consultation, ConsultationTransition, Report, User
from consult_api.workflow import Actor, State


@dataclass(frozen=True)
class ConsultationRow:
    id: int
    requesting_doctor_id: int
    expert_id: int | None
    requesting_hospital_id: int
    requested_at: datetime
    diagnosis: str | None


@dataclass(frozen=True)
class TransitionRow:
    consultation_id: int
    to_state: str
    at: datetime


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


def _summary(hours: list[float]) -> dict[str, Any]:
    median, p90 = percentile(hours, 0.5), percentile(hours, 0.9)
    return {"count": len(hours),
            "median_hours": None if median is None else round(median, 3),
            "p90_hours": None if p90 is None else round(p90, 3)}


def _counts(values: Iterable[Any]) -> dict[str, int]:
    return {str(k): n for k, n in sorted(Counter(values).items(), key=lambda kv: str(kv[0]))}


def compute(consultations: Sequence[ConsultationRow],
            transitions: Iterable[TransitionRow]) -> dict[str, Any]:
    """Pure: the statistics document for these consultations (first entry into a state)."""
    wanted = {c.id: c for c in consultations}
    first: dict[tuple[int, str], datetime] = {}
    for t in transitions:
        if t.consultation_id in wanted:
            key = (t.consultation_id, t.to_state)
            at = _utc(t.at)
            if key not in first or at < first[key]:
                first[key] = at

    def hours(to: State) -> list[float]:
        out = []
        for c in consultations:
            reached = first.get((c.id, to.value))
            if reached is not None:
                out.append((reached - _utc(c.requested_at)).total_seconds() / 3600)
        return out

    return {
        "total": len(consultations),
        "per_requesting_doctor": _counts(c.requesting_doctor_id for c in consultations),
        "per_expert": _counts(c.expert_id for c in consultations if c.expert_id is not None),
        "per_requesting_hospital": _counts(c.requesting_hospital_id for c in consultations),
        "per_diagnosis": _counts(c.diagnosis for c in consultations if c.diagnosis),
        "per_month": _counts(_utc(c.requested_at).strftime("%Y-%m") for c in consultations),
        "turnaround": {"request_to_scheduled": _summary(hours(State.SCHEDULED)),
                       "request_to_reported": _summary(hours(State.REPORTED))},
    }


def load_rows(session: Session, actor: Actor,
              ) -> tuple[list[ConsultationRow], list[TransitionRow]]:
    """The rows this actor's statistics cover (no patient columns are read)."""
    query = sa.select(Consultation.id, Consultation.requesting_doctor_id,
                      Consultation.expert_id, Consultation.requesting_hospital_id,
                      Consultation.created_at).order_by(Consultation.id)
    if not auth.sees_all(actor):
        expert = aliased(User)
        query = query.join(expert, expert.id == Consultation.expert_id, isouter=True).where(
            sa.or_(Consultation.requesting_hospital_id == actor.hospital_id,
                   expert.hospital_id == actor.hospital_id))
    base = list(session.execute(query))
    ids = [row.id for row in base]
    diagnoses: dict[int, str | None] = {}
    transitions: list[TransitionRow] = []
    if ids:
        for cid, diagnosis in session.execute(
                sa.select(Report.consultation_id, Report.diagnosis)
                .where(Report.consultation_id.in_(ids), Report.status == "published")
                .order_by(Report.consultation_id, Report.version)):
            diagnoses[cid] = diagnosis  # the latest published version wins
        transitions = [TransitionRow(consultation_id=t.consultation_id, to_state=t.to_state,
                                     at=t.at) for t in session.execute(
            sa.select(ConsultationTransition.consultation_id, ConsultationTransition.to_state,
                      ConsultationTransition.at)
            .where(ConsultationTransition.consultation_id.in_(ids)))]
    rows = [ConsultationRow(id=r.id, requesting_doctor_id=r.requesting_doctor_id,
                            expert_id=r.expert_id, requesting_hospital_id=r.requesting_hospital_id,
                            requested_at=r.created_at, diagnosis=diagnoses.get(r.id))
            for r in base]
    return rows, transitions


def statistics(session: Session, actor: Actor) -> dict[str, Any]:
    return compute(*load_rows(session, actor))
