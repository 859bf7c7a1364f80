"""Room tokens: what a role may hold, and what is refused."""

from __future__ import annotations

import time

import jwt
import pytest

from signaling.tokens import TokenAuthority, TokenError

SECRET = "unit-test-secret-0123456789abcdef-01234"


@pytest.fixture
def authority() -> TokenAuthority:
    return TokenAuthority(SECRET, "huizhen", "huizhen-media")


def test_roundtrip_carries_room_role_and_grants(authority):
    grant = authority.verify(authority.mint(room="bed-7", role="expert", name="Dr. Zhou",
                                            ttl=60, subject="u-42"))
    assert (grant.room, grant.role, grant.name, grant.subject) == ("bed-7", "expert",
                                                                  "Dr. Zhou", "u-42")
    assert grant.grants == {"publish", "subscribe", "ptz"}
    assert grant.allows_room("bed-7") and not grant.allows_room("bed-8")


def test_roles_cannot_be_widened(authority):
    with pytest.raises(ValueError, match="cannot hold"):
        authority.mint(room="r", role="observer", name="x", ttl=60, grants=["publish"])
    with pytest.raises(ValueError, match="unknown role"):
        authority.mint(room="r", role="admin", name="x", ttl=60)
    # A hand-made token claiming more than its role gets only its role's grants.
    forged = jwt.encode({"iss": "huizhen", "aud": "huizhen-media", "sub": "s", "room": "r",
                         "role": "observer", "grants": ["publish", "subscribe"],
                         "iat": int(time.time()), "exp": int(time.time()) + 60},
                        SECRET, algorithm="HS256")
    assert authority.verify(forged).grants == {"subscribe"}


def test_narrowed_grants(authority):
    token = authority.mint(room="r", role="expert", name="x", ttl=60, grants=["subscribe"])
    assert authority.verify(token).grants == {"subscribe"}


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"exp": 1}, "expired"),
        ({"aud": "other"}, "another service"),
        ({"iss": "other"}, "another service"),
        ({"role": "king"}, "no valid room and role"),
        ({"room": ""}, "no valid room and role"),
        ({"grants": "all"}, "grants are malformed"),
    ],
)
def test_refused_tokens(authority, claims, message):
    base = {"iss": "huizhen", "aud": "huizhen-media", "sub": "s", "room": "r", "role": "ward",
            "iat": int(time.time()), "exp": int(time.time()) + 60}
    token = jwt.encode({**base, **claims}, SECRET, algorithm="HS256")
    with pytest.raises(TokenError, match=message):
        authority.verify(token)


def test_unsigned_and_other_algorithms_are_refused(authority):
    none_token = jwt.encode({"sub": "s"}, None, algorithm="none")
    with pytest.raises(TokenError, match="malformed"):
        authority.verify(none_token)
    with pytest.raises(TokenError, match="required"):
        authority.verify(None)
    with pytest.raises(TokenError, match="too long"):
        authority.verify("x" * 5000)
    with pytest.raises(ValueError):
        TokenAuthority("short", "i", "a")
