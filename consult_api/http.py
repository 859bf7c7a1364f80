"""The HTTP edge shared by every route module: app keys, the error mapping, and the
request helpers (who is asking, the path id, the JSON body, a database call in a thread).

Route modules (``app`` and the ``*_routes`` modules) import from here, never from each other.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

from aiohttp import web
from sqlalchemy.orm import Session, sessionmaker

from consult_api import records
from consult_api.auth import ApiTokens
from consult_api.errors import ConsultError, InvalidRequest, NotFound
from consult_api.workflow import Actor

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
T = TypeVar("T")



class RoomTokenMinter(Protocol):
    """What the app needs to mint media-server tokens: ``signaling.tokens.TokenAuthority``
    fits, passed in by the composition root (consult_api does not import the media stack)."""

    def mint(self, *, room: str, role: str, name: str, ttl: int, subject: str | None = None,
             now: float | None = None) -> str: ...


SESSIONS = web.AppKey("sessions", sessionmaker[Session])
TOKENS = web.AppKey("tokens", ApiTokens)
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


def actor_of(request: web.Request) -> Actor:
    return request.app[TOKENS].from_header(request.headers.get("Authorization"))


def path_id(request: web.Request, what: str = "consultation") -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 9:
        raise NotFound(f"no such {what}")
    return int(raw)


async def json_body(request: web.Request) -> Any:
    try:
        return await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidRequest("the request body must be valid JSON") from None


async def in_db(request: web.Request, work: Callable[[Session], T]) -> T:
    return await asyncio.to_thread(records.run_in_session, request.app[SESSIONS], work)
