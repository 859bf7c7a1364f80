"""Playback tickets: short-lived JWTs (HS256, PyJWT) that open the media of ONE recording.

A ``<video>`` element cannot send an Authorization header, so the media routes of
``recorder.http`` are opened by a ticket in an HttpOnly cookie instead. A ticket is a JWT
whose claims are ``sub`` (the recording id), ``exp``, ``aud`` (AUDIENCE), ``typ``
(TICKET_TYPE) and ``jti`` (a nonce). Room tokens (``signaling.tokens``) are JWTs signed
with the same configured secret, so two things keep the kinds apart:

- the ticket key is derived from the secret (HMAC-SHA256 of a fixed label), never the
  secret itself: a room token's signature does not verify as a ticket's, nor the reverse;
- ``aud`` and ``typ`` name a playback ticket, and both are required on verification.

Pure: the time is passed in, and expiry is judged against it (PyJWT's own check against
the wall clock is off).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

import jwt

ALGORITHM = "HS256"
AUDIENCE = "huizhen:recording-playback"
TICKET_TYPE = "playback-ticket"
TICKET_TTL = 600.0
MAX_TICKET_LENGTH = 1024
_KEY_LABEL = b"huizhen recordings playback ticket v1"
_REQUIRED = ["sub", "exp", "aud", "typ"]


class PlaybackTickets:
    """Issues and verifies the tickets of one secret (at least 32 bytes)."""

    def __init__(self, secret: str | bytes, ttl: float = TICKET_TTL) -> None:
        raw = secret.encode() if isinstance(secret, str) else secret
        if len(raw) < 32:
            raise ValueError("the ticket secret must be at least 32 bytes")
        self._key = hmac.new(raw, _KEY_LABEL, hashlib.sha256).digest()
        self.ttl = ttl

    def issue(self, recording_id: str, now: float) -> str:
        claims = {"sub": recording_id, "exp": int(now + self.ttl), "aud": AUDIENCE,
                  "typ": TICKET_TYPE, "jti": secrets.token_urlsafe(9)}
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def verify(self, ticket: str | None, recording_id: str, now: float) -> bool:
        """Whether ``ticket`` is ours, unexpired at ``now`` and for ``recording_id``."""
        return self.recording_of(ticket, now) == recording_id

    def recording_of(self, ticket: str | None, now: float) -> str | None:
        """The recording ``ticket`` opens, if it is ours and unexpired at ``now``."""
        if not isinstance(ticket, str) or not ticket or len(ticket) > MAX_TICKET_LENGTH:
            return None
        claims = self._claims(ticket)
        if claims is None:
            return None
        expires, subject = claims["exp"], claims["sub"]
        if (claims["typ"] != TICKET_TYPE or not isinstance(subject, str)
                or not isinstance(expires, int) or isinstance(expires, bool)
                or expires <= now):
            return None
        return subject

    def _claims(self, ticket: str) -> dict[str, Any] | None:
        try:
            claims: dict[str, Any] = jwt.decode(
                ticket, self._key, algorithms=[ALGORITHM], audience=AUDIENCE,
                options={"require": _REQUIRED, "verify_exp": False})
        except (jwt.PyJWTError, TypeError, ValueError, OverflowError):
            # PyJWT lets some malformed claims through as bare TypeErrors or ValueErrors.
            return None
        return claims
