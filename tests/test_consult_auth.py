"""The read-access rules."""

from __future__ import annotations

import pytest

from consult_api.auth import can_read, require_role
from consult_api.errors import Forbidden
from consult_api.workflow import Actor, Role

DOCTOR = Actor(user_id=7, role=Role.REQUESTING_DOCTOR, hospital_id=3)


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
