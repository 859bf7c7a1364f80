"""API bearer tokens and the read-access rules."""

from __future__ import annotations

import jwt
import pytest

from consult_api.auth import ApiTokens, can_read, require_role
from consult_api.errors import Forbidden, Unauthenticated
from consult_api.workflow import Actor, Role

SECRET = "s" * 40
DOCTOR = Actor(user_id=7, role=Role.REQUESTING_DOCTOR, hospital_id=3)


def test_round_trip() -> None:
    tokens = ApiTokens(SECRET)
    assert tokens.verify(tokens.mint(DOCTOR)) == DOCTOR
    assert tokens.from_header(f"Bearer {tokens.mint(DOCTOR)}") == DOCTOR


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="32"):
        ApiTokens("short")


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer ", "Bearer not-a-jwt"])
def test_bad_headers(header: str | None) -> None:
    with pytest.raises(Unauthenticated):
        ApiTokens(SECRET).from_header(header)


def test_expired_and_foreign_tokens() -> None:
    with pytest.raises(Unauthenticated, match="expired"):
        ApiTokens(SECRET).verify(ApiTokens(SECRET).mint(DOCTOR, ttl=10, now=1000))
    with pytest.raises(Unauthenticated, match="invalid"):
        ApiTokens(SECRET).verify(ApiTokens("t" * 40).mint(DOCTOR))


def test_malformed_claims() -> None:
    token = jwt.encode({"iss": "huizhen-consult", "aud": "consult-api", "sub": "7",
                        "role": "janitor", "hospital": 3, "exp": 2**33}, SECRET,
                       algorithm="HS256")
    with pytest.raises(Unauthenticated, match="malformed"):
        ApiTokens(SECRET).verify(token)


def test_read_rules() -> None:
    assert can_read(DOCTOR, requesting_hospital_id=3, expert_id=None)
    assert not can_read(DOCTOR, requesting_hospital_id=4, expert_id=None)
    expert = Actor(user_id=9, role=Role.EXPERT, hospital_id=1)
    assert can_read(expert, requesting_hospital_id=3, expert_id=9)
    assert not can_read(expert, requesting_hospital_id=3, expert_id=8)
    assert not can_read(expert, requesting_hospital_id=1, expert_id=None)
    for role in (Role.COORDINATOR, Role.ADMIN):
        assert can_read(Actor(user_id=1, role=role, hospital_id=99), 3, None)


def test_require_role() -> None:
    require_role(DOCTOR, Role.REQUESTING_DOCTOR)
    with pytest.raises(Forbidden):
        require_role(DOCTOR, Role.ADMIN)
