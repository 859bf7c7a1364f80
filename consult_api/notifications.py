"""Notifications for the people concerned by a change, and the matching webhook event.

Every consultation state change, assignment, booking and report publication, and every
referral change, goes through ``consultation_event`` / ``referral_event``: one
``Notification`` row per person concerned (never the person who made the change) and one
webhook event (``webhooks.record``, sent after commit). ``params`` hold ids, states and
codes only (never patient data); pages render ``notify.<kind>`` from the catalogue with them.

Who is concerned: for a consultation, the requesting doctor, the assigned expert, and the
coordinators of the expert's hospital (of every province-level hospital while no expert is
assigned); for a referral, the person who sent it and the coordinators of both hospitals.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from consult_api import webhooks
from consult_api.errors import NotFound
from consult_api.models import Consultation, Hospital, Notification, Referral, User
from consult_api.schemas import iso
from consult_api.workflow import Actor, Role

KINDS = ("consultation.requested", "consultation.state", "consultation.assigned",
         "appointment.booked", "report.published", "referral.requested", "referral.state",
         "referral.note")
MAX_LISTED = 200


def _coordinators(session: Session, hospital_ids: Iterable[int] | None) -> set[int]:
    """Coordinators of these hospitals (None: of every province-level hospital)."""
    query = sa.select(User.id).where(User.role == Role.COORDINATOR.value)
    if hospital_ids is None:
        query = query.join(Hospital, Hospital.id == User.hospital_id).where(
            Hospital.level == "province")
    else:
        query = query.where(User.hospital_id.in_(list(hospital_ids)))
    return set(session.scalars(query))


def _notify(session: Session, kind: str, recipients: set[int | None], actor_id: int,
            params: Mapping[str, Any], now: datetime, *, consultation_id: int | None = None,
            referral_id: int | None = None) -> None:
    assert kind in KINDS, kind
    for user_id in sorted(u for u in recipients if u is not None and u != actor_id):
        session.add(Notification(user_id=user_id, kind=kind, params=dict(params),
                                 consultation_id=consultation_id, referral_id=referral_id,
                                 created_at=now, read_at=None))
    webhooks.record(session, kind, {**params, "actor_id": actor_id}, now)


def consultation_event(session: Session, kind: str, c: Consultation, actor_id: int,
                       now: datetime, params: Mapping[str, Any] | None = None) -> None:
    expert_hospital = None
    if c.expert_id is not None:
        expert = session.get(User, c.expert_id)
        expert_hospital = None if expert is None else expert.hospital_id
    coordinators = _coordinators(session, None if expert_hospital is None
                                 else [expert_hospital])
    recipients: set[int | None] = {c.requesting_doctor_id, c.expert_id, *coordinators}
    _notify(session, kind, recipients, actor_id,
            {"consultation_id": c.id, "state": c.state, **(params or {})}, now,
            consultation_id=c.id)


def report_published(session: Session, c: Consultation, report_id: int, version: int,
                     actor_id: int, now: datetime) -> None:
    consultation_event(session, "report.published", c, actor_id, now,
                       {"report_id": report_id, "version": version})


def referral_event(session: Session, kind: str, r: Referral, actor_id: int, now: datetime,
                   params: Mapping[str, Any] | None = None) -> None:
    recipients: set[int | None] = {
        r.created_by, *_coordinators(session, [r.from_hospital_id, r.to_hospital_id])}
    _notify(session, kind, recipients, actor_id,
            {"referral_id": r.id, "direction": r.direction, "state": r.state,
             **(params or {})}, now, referral_id=r.id)


# --- reading and marking --------------------------------------------------------------------

def notification_json(n: Notification) -> dict[str, Any]:
    return {"id": n.id, "kind": n.kind, "params": n.params,
            "consultation_id": n.consultation_id, "referral_id": n.referral_id,
            "created_at": iso(n.created_at), "read": n.read_at is not None}


def listing(session: Session, actor: Actor, *, unread_only: bool) -> dict[str, Any]:
    """The newest ``MAX_LISTED`` of the actor's notifications and their unread count."""
    query = sa.select(Notification).where(Notification.user_id == actor.user_id)
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    found = session.scalars(query.order_by(Notification.id.desc()).limit(MAX_LISTED))
    unread = session.scalar(sa.select(sa.func.count()).select_from(Notification).where(
        Notification.user_id == actor.user_id, Notification.read_at.is_(None)))
    return {"notifications": [notification_json(n) for n in found], "unread": unread or 0}


def mark_read(session: Session, actor: Actor, notification_id: int,
              now: datetime) -> dict[str, Any]:
    n = session.get(Notification, notification_id)
    if n is None or n.user_id != actor.user_id:
        raise NotFound("no such notification")
    if n.read_at is None:
        n.read_at = now
    return notification_json(n)


def mark_all_read(session: Session, actor: Actor, now: datetime) -> int:
    result = session.execute(sa.update(Notification).where(
        Notification.user_id == actor.user_id, Notification.read_at.is_(None))
        .values(read_at=now))
    return int(getattr(result, "rowcount", 0) or 0)
