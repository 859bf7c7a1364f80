"""Who may see a recording: a room token for that recording's room (composition root)."""

from __future__ import annotations

from aiohttp import web

from recorder.http import Authorize, CredentialsRejected
from signaling.tokens import TokenAuthority, TokenError

REPLAY_GRANTS = frozenset({"subscribe", "replay"})


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header.startswith("Bearer ") else ""


def recording_authorizer(authority: TokenAuthority) -> Authorize:
    """``authorize(request, room) -> bool`` for the recording routes.

    A token opens the recordings of its own room (or every room, for a "*" token)
    when it may watch that room live (subscribe) or replay it.
    """

    def authorize(request: web.Request, room: str) -> bool:
        try:
            grant = authority.verify(bearer_token(request))
        except TokenError:
            raise CredentialsRejected from None
        return grant.allows_room(room) and bool(grant.grants & REPLAY_GRANTS)

    return authorize
