"""The read-access rules (pure) and the recorder's service-secret check.

Who is asking comes from the database on every request (``session_routes``: a session
cookie or a revocable API token). Access: coordinators and admins see every consultation;
a requesting doctor sees their own hospital's consultations; an expert sees those assigned
to them.
"""

from __future__ import annotations

import hmac

from consult_api.errors import Forbidden
from consult_api.workflow import Actor, Role


def sees_all(actor: Actor) -> bool:
    return actor.role in (Role.COORDINATOR, Role.ADMIN)


def can_read(actor: Actor, requesting_hospital_id: int, expert_id: int | None) -> bool:
    if sees_all(actor):
        return True
    if actor.role is Role.REQUESTING_DOCTOR:
        return actor.hospital_id == requesting_hospital_id
    return actor.role is Role.EXPERT and expert_id == actor.user_id


def require_read(actor: Actor, requesting_hospital_id: int, expert_id: int | None) -> None:
    if not can_read(actor, requesting_hospital_id, expert_id):
        raise Forbidden("you have no access to this consultation")


def require_role(actor: Actor, *roles: Role) -> None:
    if actor.role not in roles:
        raise Forbidden(f"this action needs one of the roles {', '.join(sorted(roles))}")


def require_write(actor: Actor, requesting_hospital_id: int, expert_id: int | None) -> None:
    """Adding to a consultation (materials): the same parties who may read it."""
    if not can_read(actor, requesting_hospital_id, expert_id):
        raise Forbidden("you have no access to this consultation")


def service_token_matches(header: str | None, expected: str) -> bool:
    """``Authorization: Bearer <expected>`` (a shared service secret), in constant time."""
    scheme, _, token = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(),
                                                              expected.encode())
