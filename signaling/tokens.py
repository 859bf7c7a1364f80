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

from contracts.roles import ROLE_GRANTS, TOKEN_ROLES

ALGORITHM = "HS256"
ALL_ROOMS = "*"


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
        except (TypeError, ValueError, OverflowError):
            # PyJWT lets e.g. a list or an infinite `exp` through as a bare TypeError.
            raise TokenError("the token's time claims are malformed") from None
        expires_at = _timestamp(claims.get("exp"))
        if expires_at is None or ("iat" in claims and _timestamp(claims["iat"]) is None):
            raise TokenError("the token's time claims are malformed")
        if now is not None and expires_at <= now:
            raise TokenError("the token has expired")
        return _grant(claims, expires_at)


def _timestamp(value: object) -> int | None:
    """A NumericDate claim as whole seconds, or None unless it is a finite JSON number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if value != value or abs(value) > 2**53:
        return None
    return int(value)


def _text_claim(claims: dict[str, object], key: str, max_length: int = 256) -> str | None:
    value = claims.get(key)
    if isinstance(value, str) and 0 < len(value) <= max_length:
        return value
    return None


def _grant(claims: dict[str, object], expires_at: int) -> Grant:
    """Build a Grant from verified claims; every claim of the wrong JSON type is refused."""
    role = claims.get("role")
    if not isinstance(role, str) or role not in ROLE_GRANTS:
        raise TokenError("the token carries no valid room and role (the role must be one of "
                         f"{', '.join(sorted(TOKEN_ROLES))})")
    room = _text_claim(claims, "room", 128)
    if room is None:
        raise TokenError("the token carries no valid room and role (the room must be a "
                         "non-empty string)")
    subject = _text_claim(claims, "sub")
    if subject is None:
        raise TokenError("the token's subject must be a non-empty string")
    name = claims.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 256):
        raise TokenError("the token's name must be a string")
    raw_grants = claims.get("grants", sorted(ROLE_GRANTS[role]))
    if not isinstance(raw_grants, list) or not all(isinstance(g, str) for g in raw_grants):
        raise TokenError("the token's grants are malformed (a list of strings is required)")
    return Grant(
        subject=subject,
        name=name if isinstance(name, str) and name else role,
        room=room,
        role=role,
        # A token can narrow its role's grants, never widen them.
        grants=frozenset(raw_grants) & ROLE_GRANTS[role],
        expires_at=expires_at,
    )
