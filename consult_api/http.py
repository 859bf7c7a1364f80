"""The HTTP edge shared by every route module: app keys, the error mapping, and the
request helpers (who is asking, the path id, the JSON body, a database call in a thread).

Route modules (``app`` and the ``*_routes`` modules) import from here, never from each other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

from aiohttp import web
from argon2 import PasswordHasher
from sqlalchemy.orm import Session, sessionmaker

from consult_api.db import run_in_session
from consult_api.errors import ConsultError, InvalidRequest, NotFound, Unauthenticated
from consult_api.json_input import check_value, parse_json_object
from consult_api.workflow import Actor

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
T = TypeVar("T")



class RoomTokenMinter(Protocol):
    """What the app needs to mint media-server tokens: ``signaling.tokens.TokenAuthority``
    fits, passed in by the composition root (consult_api does not import the media stack)."""

    def mint(self, *, room: str, role: str, name: str, ttl: int, subject: str | None = None,
             now: float | None = None) -> str: ...


@dataclass(frozen=True)
class Auth:
    """Who is asking, as the auth middleware found it (``session_routes``): the actor, or
    why there is none (or why it may not act: a failed CSRF check), and how it signed in."""

    actor: Actor | None
    failure: ConsultError | None = None
    session_id: str | None = None  # set when signed in with the session cookie
    csrf_token: str | None = None


SESSIONS = web.AppKey("sessions", sessionmaker[Session])
# The service's token secret: the pepper of every stored credential hash.
PEPPER = web.AppKey("pepper", str)
SECURE_COOKIES = web.AppKey("secure_cookies", bool)
PASSWORD_HASHER = web.AppKey("password_hasher", PasswordHasher)
AUTH = web.RequestKey("auth", Auth)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
DATABASE_URL = web.AppKey("database_url", str)
ROOM_TOKENS: web.AppKey[RoomTokenMinter | None] = web.AppKey("room_tokens")
DATA_DIR = web.AppKey("data_dir", Path)
MAX_UPLOAD = web.AppKey("max_upload", int)
RECORDER_TOKEN: web.AppKey[str | None] = web.AppKey("recorder_token")
# The workspace pages' files (web_client/), and the media server's public URL for live pages.
WEB_ROOT: web.AppKey[Path | None] = web.AppKey("web_root")
MEDIA_URL = web.AppKey("media_url", str)

MAX_BODY = 1024 * 1024
ROOM_TOKEN_GRACE = timedelta(hours=1)
ROOM_TOKEN_MIN_TTL = 15 * 60
ROOM_TOKEN_MAX_TTL = 24 * 3600


def utc_now() -> datetime:
    return datetime.now(UTC)


@web.middleware
async def errors_middleware(request: web.Request,
                            handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                            ) -> web.StreamResponse:
    try:
        return await handler(request)
    except ConsultError as exc:
        return web.json_response({"error": exc.message, "code": exc.code}, status=exc.status)
    except web.HTTPException as exc:
        if exc.status == 404:
            return web.json_response({"error": "not found", "code": "not-found"}, status=404)
        if exc.status == 405:
            return web.json_response({"error": "method not allowed", "code": "method-not-allowed"},
                                     status=405)
        if exc.status == 413:
            return web.json_response({"error": "the request body is too large",
                                      "code": "too-large"}, status=413)
        raise
    except Exception:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return web.json_response({"error": "internal error", "code": "internal-error"},
                                 status=500)


def auth_of(request: web.Request) -> Auth:
    """The actor, or raise why there is none (401 ``unauthenticated``, 403 ``csrf-failed``)."""
    found: Auth | None = request.get(AUTH)
    if found is None:
        raise Unauthenticated("sign in, or send an API token")
    if found.failure is not None:
        raise found.failure
    if found.actor is None:
        raise Unauthenticated("sign in, or send an API token")
    return found


def actor_of(request: web.Request) -> Actor:
    """Who is asking: role and hospital as the users table says on this request."""
    actor = auth_of(request).actor
    assert actor is not None
    return actor


def path_id(request: web.Request, what: str = "consultation") -> int:
    """The ``{id}`` of the path; anything but 1-9 ASCII digits is no such thing (404)."""
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise NotFound(f"no such {what}")
    return int(raw)


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object (UTF-8, whatever the Content-Type's charset says);
    anything else, NUL characters, nesting deeper than 32 and out-of-range numbers are a 400
    ``invalid-request`` (``json_input``). Too large a body is a 413."""
    return parse_json_object(await request.read())


def query_text(request: web.Request, name: str, *, max_len: int = 200) -> str | None:
    """A query-string parameter as text (None when absent or empty), refused (400) when it
    is longer than ``max_len`` or holds NUL characters or unpaired surrogates."""
    value = request.query.get(name)
    if not value:
        return None
    if len(value) > max_len:
        raise InvalidRequest(f"the query parameter {name} must be at most {max_len} characters")
    check_value(value, f"the query parameter {name}")
    return value


def query_int(request: web.Request, name: str, *, low: int, high: int) -> int | None:
    """A query-string parameter as an integer from low to high (None when absent or empty)."""
    value = request.query.get(name)
    if not value:
        return None
    if not (value.isascii() and value.lstrip("-").isdigit()) or len(value) > 20 \
            or not low <= int(value) <= high:
        raise InvalidRequest(f"the query parameter {name} must be an integer from {low} to "
                             f"{high}")
    return int(value)


async def in_db(request: web.Request, work: Callable[[Session], T]) -> T:
    return await asyncio.to_thread(run_in_session, request.app[SESSIONS], work)
