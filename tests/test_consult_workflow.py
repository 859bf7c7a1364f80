"""The consultation state machine: every allowed transition, and refused ones."""

from __future__ import annotations

import pytest

from consult_api.errors import Forbidden, InvalidTransition
from consult_api.workflow import (
    TRANSITIONS,
    Actor,
    ConsultationType,
    Facts,
    Party,
    Role,
    State,
    allowed_targets,
    check_transition,
    media_role,
)

REQUESTER = Actor(user_id=1, role=Role.REQUESTING_DOCTOR, hospital_id=10)
COLLEAGUE = Actor(user_id=2, role=Role.REQUESTING_DOCTOR, hospital_id=10)
EXPERT = Actor(user_id=3, role=Role.EXPERT, hospital_id=20)
OTHER_EXPERT = Actor(user_id=4, role=Role.EXPERT, hospital_id=20)
COORDINATOR = Actor(user_id=5, role=Role.COORDINATOR, hospital_id=20)
ADMIN = Actor(user_id=6, role=Role.ADMIN, hospital_id=20)

ACTOR_FOR = {Party.REQUESTER: REQUESTER, Party.ASSIGNED_EXPERT: EXPERT,
             Party.COORDINATOR: COORDINATOR}


def facts(state: State, kind: ConsultationType = ConsultationType.OFFLINE) -> Facts:
    return Facts(state=state, type=kind, requesting_doctor_id=1, expert_id=3)


@pytest.mark.parametrize(("source", "to"), sorted(TRANSITIONS))
def test_every_allowed_transition_passes_for_its_party(source: State, to: State) -> None:
    check_transition(facts(source), to, ACTOR_FOR[TRANSITIONS[(source, to)]])


@pytest.mark.parametrize(("source", "to"), sorted(TRANSITIONS))
def test_every_allowed_transition_is_refused_to_an_unrelated_doctor(source: State,
                                                                     to: State) -> None:
    with pytest.raises(Forbidden):
        check_transition(facts(source), to, COLLEAGUE)


def test_admin_may_schedule_like_a_coordinator() -> None:
    check_transition(facts(State.REQUESTED), State.SCHEDULED, ADMIN)
    check_transition(facts(State.ACCEPTED), State.SCHEDULED, ADMIN)


@pytest.mark.parametrize(("source", "to"), [
    (State.REQUESTED, State.IN_SESSION),
    (State.REQUESTED, State.REPORTED),
    (State.REQUESTED, State.CLOSED),
    (State.SCHEDULED, State.REPORTED),
    (State.IN_SESSION, State.CANCELLED),
    (State.IN_SESSION, State.CLOSED),
    (State.REPORTED, State.CANCELLED),
    (State.CLOSED, State.REQUESTED),
    (State.CANCELLED, State.ACCEPTED),
    (State.REJECTED, State.ACCEPTED),
    (State.ACCEPTED, State.ACCEPTED),
])
def test_invalid_transitions_are_refused_whoever_asks(source: State, to: State) -> None:
    for actor in (REQUESTER, EXPERT, COORDINATOR, ADMIN):
        with pytest.raises(InvalidTransition, match=f"from {source} to {to}"):
            check_transition(facts(source), to, actor)


def test_only_offline_consultations_skip_the_session() -> None:
    check_transition(facts(State.ACCEPTED, ConsultationType.OFFLINE), State.REPORTED, EXPERT)
    with pytest.raises(InvalidTransition, match="offline"):
        check_transition(facts(State.ACCEPTED, ConsultationType.INTERACTIVE), State.REPORTED,
                         EXPERT)


@pytest.mark.parametrize(("actor", "source", "to"), [
    (OTHER_EXPERT, State.REQUESTED, State.ACCEPTED),   # not the assigned expert
    (COORDINATOR, State.REQUESTED, State.ACCEPTED),
    (REQUESTER, State.SCHEDULED, State.IN_SESSION),
    (EXPERT, State.REQUESTED, State.CANCELLED),       # the requester cancels
    (EXPERT, State.REPORTED, State.CLOSED),           # the requester closes
    (REQUESTER, State.REQUESTED, State.SCHEDULED),    # coordinators schedule
    (EXPERT, State.ACCEPTED, State.SCHEDULED),
    (COORDINATOR, State.IN_SESSION, State.REPORTED),
])
def test_wrong_party_is_forbidden(actor: Actor, source: State, to: State) -> None:
    with pytest.raises(Forbidden, match="only the"):
        check_transition(facts(source), to, actor)


def test_no_expert_assigned_means_nobody_accepts() -> None:
    unassigned = Facts(state=State.REQUESTED, type=ConsultationType.INTERACTIVE,
                       requesting_doctor_id=1, expert_id=None)
    with pytest.raises(Forbidden):
        check_transition(unassigned, State.ACCEPTED, EXPERT)


def test_allowed_targets_per_actor() -> None:
    assert allowed_targets(facts(State.REQUESTED), EXPERT) == [State.ACCEPTED, State.REJECTED]
    assert allowed_targets(facts(State.REQUESTED), REQUESTER) == [State.CANCELLED]
    assert allowed_targets(facts(State.REQUESTED), COORDINATOR) == [State.SCHEDULED]
    assert allowed_targets(facts(State.CLOSED), REQUESTER) == []


def test_media_roles() -> None:
    live = facts(State.SCHEDULED)
    assert media_role(REQUESTER, live) == "ward"
    assert media_role(COLLEAGUE, live) == "ward"   # same hospital: read access checked before
    assert media_role(EXPERT, live) == "expert"
    assert media_role(COORDINATOR, live) == "observer"
    assert media_role(EXPERT, facts(State.IN_SESSION)) == "expert"
    with pytest.raises(Forbidden):
        media_role(OTHER_EXPERT, live)
    for state in (State.REQUESTED, State.ACCEPTED, State.REPORTED, State.CLOSED):
        with pytest.raises(InvalidTransition, match="no open live room"):
            media_role(REQUESTER, facts(state))
