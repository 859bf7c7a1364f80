"""Room tokens: signed JWTs (HS256, PyJWT) carrying a room, a role and its grants.

PyJWT is used rather than hand-rolled HMAC: it checks signature, expiry,
not-before, issuer and audience in one vetted place.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"
ALL_ROOMS = "*"

ROLE_GRANTS: dict[str, frozenset[str]] = {
    # Ward staff publish the bedside camera and microphone, hear/see the experts, and
    # may take the PTZ camera back from a remote expert at any time.
    "ward": frozenset({"publish", "subscribe", "ptz"}),
    # Experts watch the bedside, talk back and (later) steer the PTZ camera.
    "expert": frozenset({"publish", "subscribe", "ptz"}),
    # Observers (e.g. trainees) may only watch and listen.
    "observer": frozenset({"subscribe"}),
    # Operators read server statistics; they never join a room.
    "operator": frozenset({"stats"}),
}


class TokenError(Exception):
    """A token is missing, malformed, expired, or not ours. ``message`` is safe to show."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Grant:
    subject: str
    name: str
    room: str
    role: str
    grants: frozenset[str]
    expires_at: int

    def allows(self, grant: str) -> bool:
        return grant in self.grants

    def allows_room(self, room: str) -> bool:
        return self.room == room or self.room == ALL_ROOMS


class TokenAuthority:
    """Mints and verifies room tokens with one shared secret."""

    def __init__(self, secret: str, issuer: str, audience: str) -> None:
        if len(secret) < 32:
            raise ValueError("the token secret must be at least 32 characters (RFC 7518 3.2)")
        self._secret = secret
        self.issuer = issuer
        self.audience = audience

    def mint(self, *, room: str, role: str, name: str, ttl: int, subject: str | None = None,
             grants: Iterable[str] | None = None, now: float | None = None) -> str:
        if role not in ROLE_GRANTS:
            raise ValueError(f"unknown role {role!r}; choose one of {sorted(ROLE_GRANTS)}")
        allowed = ROLE_GRANTS[role]
        chosen = allowed if grants is None else frozenset(grants)
        if not chosen <= allowed:
            raise ValueError(f"role {role} cannot hold {sorted(chosen - allowed)}")
        if not room:
            raise ValueError("a token needs a room")
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject or f"u-{secrets.token_hex(6)}",
            "name": name,
            "room": room,
            "role": role,
            "grants": sorted(chosen),
            "iat": issued,
            "nbf": issued - 5,
            "exp": issued + ttl,
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: object, now: float | None = None) -> Grant:
        if not isinstance(token, str) or not token:
            raise TokenError("a token is required")
        if len(token) > 4096:
            raise TokenError("the token is too long")
        options = {"require": ["exp", "iat", "sub", "iss", "aud"]}
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=[ALGORITHM], audience=self.audience,
                issuer=self.issuer, options=options,  # type: ignore[arg-type]
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("the token has expired") from None
        except (jwt.InvalidAudienceError, jwt.InvalidIssuerError):
            raise TokenError("the token was issued for another service") from None
        except jwt.InvalidSignatureError:
            raise TokenError("the token's signature is not valid here") from None
        except jwt.PyJWTError:
            raise TokenError("the token is malformed") from None
        if now is not None and claims["exp"] <= now:
            raise TokenError("the token has expired")
        role = claims.get("role")
        room = claims.get("room")
        if role not in ROLE_GRANTS or not isinstance(room, str) or not room:
            raise TokenError("the token carries no valid room and role")
        raw_grants = claims.get("grants", sorted(ROLE_GRANTS[role]))
        if not isinstance(raw_grants, list) or not all(isinstance(g, str) for g in raw_grants):
            raise TokenError("the token's grants are malformed")
        name = claims.get("name")
        return Grant(
            subject=str(claims["sub"]),
            name=name if isinstance(name, str) and name else role,
            room=room,
            role=role,
            # A token can narrow its role's grants, never widen them.
            grants=frozenset(raw_grants) & ROLE_GRANTS[role],
            expires_at=int(claims["exp"]),
        )
