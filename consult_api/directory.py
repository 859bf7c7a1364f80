"""The people and places admins manage: user accounts (create with a set-password link,
change, disable, reset), hospitals and departments. The caller commits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from consult_api import accounts, auth, records
from consult_api.errors import InvalidRequest, InvalidTransition, NotFound
from consult_api.models import Department, Hospital, User
from consult_api.schemas import UserIn
from consult_api.workflow import Actor, Role

logger = logging.getLogger(__name__)

MAX_LISTED = 500


@dataclass(frozen=True)
class UserChange:
    """A PATCH of a user: only the fields given change (``department_id`` may become null)."""

    display_name: str | None = None
    role: Role | None = None
    hospital_id: int | None = None
    department_id: int | None = None
    department_given: bool = False
    disabled: bool | None = None


def user_json(user: User) -> dict[str, Any]:
    return {"id": user.id, "username": user.username, "display_name": user.display_name,
            "role": user.role, "hospital_id": user.hospital_id,
            "department_id": user.department_id, "disabled": user.disabled,
            "last_sign_in": None if user.last_sign_in_at is None
            else accounts.utc(user.last_sign_in_at).isoformat()}


def _username_free(session: Session, username: str, user_id: int | None = None) -> None:
    taken = session.scalar(sa.select(User.id).where(User.username == username))
    if taken is not None and taken != user_id:
        raise InvalidTransition("this username is taken", code="username-taken")


def create_user(session: Session, pepper: str, actor: Actor, data: UserIn,
                username: str | None, now: datetime) -> dict[str, Any]:
    """A new person; with a username, also their one-time set-password link."""
    auth.require_role(actor, Role.ADMIN)
    if username is not None:
        _username_free(session, username)
    user_id = records.create_user(session, actor, data)
    if username is None:
        return {"id": user_id, "set_password_url": None, "link_expires_at": None}
    session.get_one(User, user_id).username = username
    try:
        session.flush()
    except sa.exc.IntegrityError:  # taken by a concurrent request
        raise InvalidTransition("this username is taken", code="username-taken") from None
    url, expires = accounts.issue_link(session, pepper, user_id, now)
    return {"id": user_id, "set_password_url": url, "link_expires_at": expires.isoformat()}


def list_users(session: Session, actor: Actor, hospital_id: int | None, role: Role | None,
               text: str | None) -> list[dict[str, Any]]:
    auth.require_role(actor, Role.ADMIN)
    query = sa.select(User).order_by(User.id).limit(MAX_LISTED)
    if hospital_id is not None:
        query = query.where(User.hospital_id == hospital_id)
    if role is not None:
        query = query.where(User.role == role.value)
    if text:
        pattern = "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%")\
            .replace("_", "\\_") + "%"
        query = query.where(sa.or_(sa.func.lower(User.display_name).like(pattern, escape="\\"),
                                   User.username.like(pattern, escape="\\")))
    return [user_json(u) for u in session.scalars(query)]


def _department_of(session: Session, department_id: int, hospital_id: int) -> None:
    department = session.get(Department, department_id)
    if department is None or department.hospital_id != hospital_id:
        raise InvalidRequest("department_id does not name a department of that hospital")


def change_user(session: Session, actor: Actor, user_id: int, change: UserChange,
                now: datetime) -> dict[str, Any]:
    auth.require_role(actor, Role.ADMIN)
    user = session.scalars(sa.select(User).where(User.id == user_id).with_for_update())\
        .one_or_none()
    if user is None:
        raise NotFound("no such user")
    if user.id == actor.user_id and (change.disabled or (
            change.role is not None and change.role is not Role.ADMIN)):
        raise InvalidRequest("admins cannot disable themselves or give up their own role",
                             code="self-change")
    if change.hospital_id is not None and change.hospital_id != user.hospital_id:
        if session.get(Hospital, change.hospital_id) is None:
            raise InvalidRequest("hospital_id does not name a hospital")
        user.hospital_id = change.hospital_id
        if not change.department_given:
            user.department_id = None  # departments belong to one hospital
    if change.department_given:
        if change.department_id is not None:
            _department_of(session, change.department_id, user.hospital_id)
        user.department_id = change.department_id
    if change.display_name is not None:
        user.display_name = change.display_name
    if change.role is not None:
        user.role = change.role.value
    if change.disabled is not None and change.disabled != user.disabled:
        user.disabled = change.disabled
        if change.disabled:
            accounts.revoke_sessions(session, user.id, now)
    logger.info("user %s changed by admin %s", user.id, actor.user_id)
    return user_json(user)


def reset_user(session: Session, pepper: str, actor: Actor, user_id: int,
               now: datetime) -> dict[str, Any]:
    """A new set-password link. The old password, the authenticator and every session end
    (the usual reasons: a forgotten password, a lost phone, a suspected compromise)."""
    auth.require_role(actor, Role.ADMIN)
    user = session.scalars(sa.select(User).where(User.id == user_id).with_for_update())\
        .one_or_none()
    if user is None:
        raise NotFound("no such user")
    if user.username is None:
        raise InvalidRequest("give the user a username before resetting their password")
    user.password_hash, user.totp_secret, user.totp_enabled_at = None, None, None
    user.failed_logins, user.locked_until = 0, None
    accounts.revoke_sessions(session, user.id, now)
    url, expires = accounts.issue_link(session, pepper, user.id, now)
    logger.info("user %s: password reset by admin %s", user.id, actor.user_id)
    return {"set_password_url": url, "link_expires_at": expires.isoformat()}


def list_hospitals(session: Session) -> list[dict[str, Any]]:
    return [{"id": h.id, "name": h.name, "level": h.level}
            for h in session.scalars(sa.select(Hospital).order_by(Hospital.id))]


def list_departments(session: Session, hospital_id: int | None) -> list[dict[str, Any]]:
    query = sa.select(Department).order_by(Department.id)
    if hospital_id is not None:
        query = query.where(Department.hospital_id == hospital_id)
    return [{"id": d.id, "hospital_id": d.hospital_id, "name": d.name}
            for d in session.scalars(query)]


def create_department(session: Session, actor: Actor, hospital_id: int, name: str) -> int:
    auth.require_role(actor, Role.ADMIN)
    if session.get(Hospital, hospital_id) is None:
        raise InvalidRequest("hospital_id does not name a hospital")
    return records.add_department(session, hospital_id, name)
