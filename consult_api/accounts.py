"""Accounts in the database: sign-in state, server-side sessions, API tokens, set-password
links and authenticator (TOTP) enrolment. The caller commits (``records.run_in_session``).

Password hashing is slow on purpose, so it never runs here, inside a transaction (SQLite
takes its write lock at BEGIN): the routes read what they need, hash or verify in a worker
thread, then write the outcome in a second transaction that re-checks what it relies on.
Every random credential is stored as its keyed hash (``passwords.keyed_hash``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
import sqlalchemy as sa
from sqlalchemy.orm import Session

from consult_api.errors import Forbidden, InvalidRequest, NotFound, Unauthenticated
from consult_api.lockout import Failures, after_failure
from consult_api.models import ApiToken, Hospital, PasswordLink, User, UserSession
from consult_api.passwords import keyed_hash, new_api_token, new_secret
from consult_api.workflow import Actor, Role

logger = logging.getLogger(__name__)

IDLE_TIMEOUT = timedelta(minutes=30)
SESSION_LIFETIME = timedelta(hours=12)
# last_seen / last_used_at are written at most this often (not on every request).
TOUCH_EVERY = timedelta(seconds=60)
LINK_LIFETIME = timedelta(hours=72)
API_TOKEN_MAX_TTL = 365 * 24 * 3600
API_TOKEN_MIN_TTL = 60
SESSION = "session"
API_TOKEN = "api-token"
PASSWORD_LINK = "password-link"
SET_PASSWORD_PATH = "/#/set-password/"
USERNAME = re.compile(r"[a-z0-9][a-z0-9._@-]{1,63}")
TOTP_WINDOW = 1  # one 30-second step either side, for clock drift


def utc(value: datetime) -> datetime:
    """SQLite drops the offset: stored times are UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def normalise_username(raw: Any) -> str:
    """Usernames are case-insensitive: stored and compared lower-cased."""
    if not isinstance(raw, str):
        raise InvalidRequest("username must be a string")
    name = raw.strip().lower()
    if not USERNAME.fullmatch(name):
        raise InvalidRequest("username must be 2 to 64 characters: letters, digits and . _ @ -"
                             ", starting with a letter or digit")
    return name


def actor_for(user: User, address: str) -> Actor:
    return Actor(user_id=user.id, role=Role(user.role), hospital_id=user.hospital_id,
                 name=user.display_name, address=address)


def totp_enabled(user: User) -> bool:
    return user.totp_secret is not None and user.totp_enabled_at is not None


def me_json(session: Session, user: User) -> dict[str, Any]:
    hospital = session.get(Hospital, user.hospital_id)
    return {"id": user.id, "username": user.username, "display_name": user.display_name,
            "role": user.role, "hospital_id": user.hospital_id,
            "hospital_name": None if hospital is None else hospital.name,
            "department_id": user.department_id, "language": user.language,
            "totp_enabled": totp_enabled(user)}


def _user(session: Session, user_id: int, *, for_update: bool = False) -> User:
    query = sa.select(User).where(User.id == user_id)
    if for_update:
        query = query.with_for_update()
    user = session.scalars(query).one_or_none()
    if user is None:
        raise NotFound("no such user")
    return user


# --- sign-in --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Credentials:
    """What sign-in needs to know about one account, read before the password is checked."""

    user_id: int
    username: str
    password_hash: str | None
    disabled: bool
    failures: Failures
    totp_secret: str | None  # only when the authenticator is confirmed


def credentials(session: Session, username: str) -> Credentials | None:
    user = session.scalars(sa.select(User).where(User.username == username)).one_or_none()
    if user is None:
        return None
    return Credentials(
        user_id=user.id, username=username, password_hash=user.password_hash,
        disabled=user.disabled,
        failures=Failures(user.failed_logins,
                          None if user.locked_until is None else utc(user.locked_until)),
        totp_secret=user.totp_secret if totp_enabled(user) else None)


def user_credentials(session: Session, user_id: int) -> Credentials:
    user = _user(session, user_id)
    found = None if user.username is None else credentials(session, user.username)
    if found is None:
        return Credentials(user_id=user.id, username="", password_hash=user.password_hash,
                           disabled=user.disabled, failures=Failures(), totp_secret=None)
    return found


def record_failure(session: Session, user_id: int, now: datetime) -> Failures:
    user = _user(session, user_id, for_update=True)
    state = after_failure(Failures(user.failed_logins, None if user.locked_until is None
                                   else utc(user.locked_until)), now)
    user.failed_logins, user.locked_until = state.count, state.locked_until
    return state


def totp_matches(secret: str, code: Any, now: datetime) -> bool:
    if not isinstance(code, str) or not code.strip().isdigit():
        return False
    return pyotp.TOTP(secret).verify(code.strip(), for_time=now, valid_window=TOTP_WINDOW)


@dataclass(frozen=True)
class OpenedSession:
    cookie: str
    csrf_token: str
    me: dict[str, Any]


def open_session(session: Session, pepper: str, user_id: int, now: datetime, address: str,
                 *, previous_cookie: str | None, rehashed: str | None) -> OpenedSession | None:
    """A new session for a sign-in whose password (and code) checked out; None if the
    account was disabled in the meantime. Clears the failure count; replaces the password
    hash when its parameters were out of date; ends the browser's previous session."""
    user = _user(session, user_id, for_update=True)
    if user.disabled:
        return None
    user.failed_logins, user.locked_until, user.last_sign_in_at = 0, None, now
    if rehashed is not None:
        user.password_hash = rehashed
    if previous_cookie:
        previous = session.get(UserSession, keyed_hash(pepper, SESSION, previous_cookie))
        if previous is not None and previous.revoked_at is None:
            previous.revoked_at = now
    cookie, csrf = new_secret(), new_secret()
    session.add(UserSession(id=keyed_hash(pepper, SESSION, cookie), user_id=user.id,
                            csrf_token=csrf, created_at=now, last_seen=now,
                            expires_at=now + SESSION_LIFETIME, address=address[:64]))
    logger.info("user %s signed in", user.id)
    return OpenedSession(cookie, csrf, me_json(session, user))


def resolve_session(session: Session, pepper: str, cookie: str,
                    now: datetime) -> tuple[User, str, str]:
    """(user, session id, CSRF token) of a live session; Unauthenticated otherwise."""
    found = session.get(UserSession, keyed_hash(pepper, SESSION, cookie))
    if (found is None or found.revoked_at is not None or utc(found.expires_at) <= now
            or utc(found.last_seen) + IDLE_TIMEOUT <= now):
        raise Unauthenticated("the session has ended: sign in again")
    user = session.get(User, found.user_id)
    if user is None or user.disabled:
        raise Unauthenticated("the session has ended: sign in again")
    if now - utc(found.last_seen) >= TOUCH_EVERY:
        found.last_seen = now
    return user, found.id, found.csrf_token


def resolve_api_token(session: Session, pepper: str, token: str, now: datetime) -> User:
    found = session.scalars(sa.select(ApiToken).where(
        ApiToken.token_hash == keyed_hash(pepper, API_TOKEN, token))).one_or_none()
    if found is None or found.revoked_at is not None or utc(found.expires_at) <= now:
        raise Unauthenticated("the token is invalid, expired or revoked")
    user = session.get(User, found.user_id)
    if user is None or user.disabled:
        raise Unauthenticated("the token is invalid, expired or revoked")
    if found.last_used_at is None or now - utc(found.last_used_at) >= TOUCH_EVERY:
        found.last_used_at = now
    return user


def close_session(session: Session, session_id: str, now: datetime) -> None:
    found = session.get(UserSession, session_id)
    if found is not None and found.revoked_at is None:
        found.revoked_at = now


def revoke_sessions(session: Session, user_id: int, now: datetime,
                    keep: str | None = None) -> None:
    """End every live session of the user (but ``keep``)."""
    query = (sa.update(UserSession)
             .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
             .values(revoked_at=now))
    if keep is not None:
        query = query.where(UserSession.id != keep)
    session.execute(query)


def set_password(session: Session, user_id: int, password_hash: str, now: datetime,
                 keep_session: str | None = None) -> None:
    """A new password: clears the lockout and ends the user's other sessions."""
    user = _user(session, user_id, for_update=True)
    user.password_hash, user.password_changed_at = password_hash, now
    user.failed_logins, user.locked_until = 0, None
    revoke_sessions(session, user_id, now, keep=keep_session)
    logger.info("user %s: password changed", user_id)


def set_language(session: Session, user_id: int, language: str) -> dict[str, Any]:
    user = _user(session, user_id)
    user.language = language
    return me_json(session, user)


def me(session: Session, user_id: int) -> dict[str, Any]:
    return me_json(session, _user(session, user_id))


# --- set-password links ---------------------------------------------------------------------

def issue_link(session: Session, pepper: str, user_id: int,
               now: datetime) -> tuple[str, datetime]:
    """A one-time set-password link (path and expiry); earlier unused links stop working."""
    session.execute(sa.update(PasswordLink)
                    .where(PasswordLink.user_id == user_id, PasswordLink.used_at.is_(None),
                           PasswordLink.revoked_at.is_(None))
                    .values(revoked_at=now))
    token = new_secret()
    expires = now + LINK_LIFETIME
    session.add(PasswordLink(user_id=user_id, token_hash=keyed_hash(pepper, PASSWORD_LINK, token),
                             created_at=now, expires_at=expires))
    session.flush()
    return SET_PASSWORD_PATH + token, expires


def _live_link(session: Session, pepper: str, token: str, now: datetime,
               *, for_update: bool = False) -> PasswordLink:
    query = sa.select(PasswordLink).where(
        PasswordLink.token_hash == keyed_hash(pepper, PASSWORD_LINK, token))
    if for_update:
        query = query.with_for_update()
    link = session.scalars(query).one_or_none()
    if (link is None or link.used_at is not None or link.revoked_at is not None
            or utc(link.expires_at) <= now):
        raise InvalidRequest("this link is invalid, used or expired; ask an administrator "
                             "for a new one", code="link-invalid")
    user = session.get(User, link.user_id)
    if user is None or user.disabled:
        raise InvalidRequest("this link is invalid, used or expired; ask an administrator "
                             "for a new one", code="link-invalid")
    return link


def link_user(session: Session, pepper: str, token: str, now: datetime) -> tuple[int, str]:
    """(user id, username) of a live link; 400 ``link-invalid`` otherwise."""
    link = _live_link(session, pepper, token, now)
    user = _user(session, link.user_id)
    return user.id, user.username or ""


def redeem_link(session: Session, pepper: str, token: str, password_hash: str,
                now: datetime) -> None:
    """Use the link (once): sets the password and ends the user's sessions."""
    link = _live_link(session, pepper, token, now, for_update=True)
    link.used_at = now
    set_password(session, link.user_id, password_hash, now)


# --- API tokens -----------------------------------------------------------------------------

def issue_api_token(session: Session, pepper: str, user_id: int, label: str, ttl: int,
                    now: datetime) -> tuple[int, str, datetime]:
    """(id, token, expiry): the token is shown once, stored only as its keyed hash."""
    if not API_TOKEN_MIN_TTL <= ttl <= API_TOKEN_MAX_TTL:
        raise InvalidRequest(f"ttl must be from {API_TOKEN_MIN_TTL} to {API_TOKEN_MAX_TTL} "
                             "seconds", code="ttl-too-long")
    if session.get(User, user_id) is None:
        raise InvalidRequest("user_id does not name a user")
    token = new_api_token()
    row = ApiToken(user_id=user_id, label=label, token_hash=keyed_hash(pepper, API_TOKEN, token),
                   created_at=now, expires_at=now + timedelta(seconds=ttl))
    session.add(row)
    session.flush()
    logger.info("API token %s issued for user %s", row.id, user_id)
    return row.id, token, row.expires_at


def api_token_json(row: ApiToken) -> dict[str, Any]:
    return {"id": row.id, "user_id": row.user_id, "label": row.label,
            "created_at": utc(row.created_at).isoformat(),
            "expires_at": utc(row.expires_at).isoformat(), "revoked": row.revoked_at is not None,
            "last_used_at": None if row.last_used_at is None
            else utc(row.last_used_at).isoformat()}


def list_api_tokens(session: Session, actor: Actor) -> list[dict[str, Any]]:
    """Admins see every token; anybody else their own."""
    query = sa.select(ApiToken).order_by(ApiToken.id)
    if actor.role is not Role.ADMIN:
        query = query.where(ApiToken.user_id == actor.user_id)
    return [api_token_json(row) for row in session.scalars(query)]


def revoke_api_token(session: Session, actor: Actor, token_id: int, now: datetime) -> None:
    row = session.get(ApiToken, token_id)
    if row is None or (actor.role is not Role.ADMIN and row.user_id != actor.user_id):
        raise NotFound("no such API token")
    if row.revoked_at is None:
        row.revoked_at = now
        logger.info("API token %s revoked by user %s", token_id, actor.user_id)


# --- authenticator (TOTP) -------------------------------------------------------------------

ISSUER = "huizhen"


def enrol_totp(session: Session, user_id: int) -> tuple[str, str]:
    """A new secret (pending until confirmed with a code) and its otpauth:// URI."""
    user = _user(session, user_id, for_update=True)
    if totp_enabled(user):
        raise InvalidRequest("an authenticator is already enabled: disable it first",
                             code="totp-enabled")
    secret = pyotp.random_base32()
    user.totp_secret, user.totp_enabled_at = secret, None
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.username or f"user-{user.id}",
                                              issuer_name=ISSUER)
    return secret, uri


def confirm_totp(session: Session, user_id: int, code: Any, now: datetime) -> None:
    user = _user(session, user_id, for_update=True)
    if user.totp_secret is None or totp_enabled(user):
        raise InvalidRequest("there is no authenticator waiting for confirmation",
                             code="totp-invalid")
    if not totp_matches(user.totp_secret, code, now):
        raise InvalidRequest("the code is not valid", code="totp-invalid")
    user.totp_enabled_at = now
    logger.info("user %s: authenticator enabled", user_id)


def disable_totp(session: Session, user_id: int, code: Any, now: datetime) -> None:
    user = _user(session, user_id, for_update=True)
    if user.totp_secret is None or not totp_enabled(user):
        raise InvalidRequest("no authenticator is enabled", code="totp-invalid")
    if not totp_matches(user.totp_secret, code, now):
        raise InvalidRequest("the code is not valid", code="totp-invalid")
    user.totp_secret, user.totp_enabled_at = None, None
    logger.info("user %s: authenticator disabled", user_id)


def require_session(via_session: bool) -> None:
    """Account changes a stolen machine token must not make (password, authenticator)."""
    if not via_session:
        raise Forbidden("this needs a signed-in session, not an API token",
                        code="session-required")
