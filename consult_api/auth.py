"""Bearer JWTs for the API (HS256, PyJWT) and the read-access rules.

Claims: ``sub`` = user id, ``role``, ``hospital`` = hospital id. Access (pure):
coordinators and admins see every consultation; a requesting doctor sees their own
hospital's consultations; an expert sees those assigned to them.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

import jwt

from consult_api.errors import Forbidden, Unauthenticated
from consult_api.workflow import Actor, Role

ALGORITHM = "HS256"
ISSUER = "huizhen-consult"
AUDIENCE = "consult-api"


class ApiTokens:
    """Mints and verifies the API's bearer tokens with one shared secret."""

    def __init__(self, secret: str) -> None:
        if len(secret) < 32:
            raise ValueError("the token secret must be at least 32 characters (RFC 7518 3.2)")
        self._secret = secret

    def mint(self, actor: Actor, *, ttl: int = 3600, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "iss": ISSUER, "aud": AUDIENCE, "sub": str(actor.user_id), "role": actor.role.value,
            "hospital": actor.hospital_id, "iat": issued, "nbf": issued, "exp": issued + ttl,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Actor:
        try:
            claims = jwt.decode(token, self._secret, algorithms=[ALGORITHM], audience=AUDIENCE,
                                issuer=ISSUER, options={"require": ["exp", "sub", "iss", "aud"]})
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("the token has expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated("the token is invalid") from exc
        try:
            return Actor(user_id=int(claims["sub"]), role=Role(claims["role"]),
                         hospital_id=int(claims["hospital"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise Unauthenticated("the token's claims are malformed") from exc

    def from_header(self, header: str | None) -> Actor:
        if not header:
            raise Unauthenticated("a bearer token is required")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
        return self.verify(token.strip())


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
