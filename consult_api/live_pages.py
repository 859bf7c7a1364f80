"""Where a person joins a consultation's live room: the media server's page for their
media role, with the room token and their language in the URL fragment (never sent to a
server, never in logs)."""

from __future__ import annotations

from urllib.parse import urlencode

from sqlalchemy.orm import Session

from consult_api.models import User

DEFAULT_LANGUAGE = "zh-CN"
LANGUAGES = ("zh-CN", "en")
# The bedside joins as "ward"; the expert and observers use the specialist page.
PAGES = {"ward": "ward.html"}
DEFAULT_PAGE = "expert.html"


def page_url(media_url: str, role: str, token: str, language: str) -> str:
    """``<media_url>/expert.html#token=…&lang=…`` (``ward.html`` for the bedside)."""
    page = PAGES.get(role, DEFAULT_PAGE)
    lang = language if language in LANGUAGES else DEFAULT_LANGUAGE
    return f"{media_url.rstrip('/')}/{page}#{urlencode({'token': token, 'lang': lang})}"


def user_language(session: Session, user_id: int) -> str:
    """The person's saved language (zh-CN when none is stored)."""
    user = session.get(User, user_id)
    stored = getattr(user, "language", None)
    return stored if isinstance(stored, str) and stored in LANGUAGES else DEFAULT_LANGUAGE
