"""The consultation state machine: pure, no I/O, no clock.

requested   -> accepted | scheduled | rejected | cancelled
accepted    -> scheduled | in_session | reported (offline only) | cancelled
scheduled   -> in_session | cancelled
in_session  -> reported
reported    -> closed

Who may do what: coordinators and admins schedule; the assigned expert accepts, rejects,
starts the session and reports; the requesting doctor cancels (before the session) and closes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from consult_api.errors import Forbidden, InvalidTransition

S = TypeVar("S", bound=StrEnum)


class State(StrEnum):
    REQUESTED = "requested"
    ACCEPTED = "accepted"
    SCHEDULED = "scheduled"
    IN_SESSION = "in_session"
    REPORTED = "reported"
    CLOSED = "closed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class Role(StrEnum):
    REQUESTING_DOCTOR = "requesting_doctor"
    EXPERT = "expert"
    COORDINATOR = "coordinator"
    ADMIN = "admin"


class ConsultationType(StrEnum):
    INTERACTIVE = "interactive"
    OFFLINE = "offline"


class Urgency(StrEnum):
    ROUTINE = "routine"
    URGENT = "urgent"
    EMERGENCY = "emergency"


class Party(StrEnum):
    """The part an actor plays in one consultation."""

    REQUESTER = "requester"
    ASSIGNED_EXPERT = "assigned_expert"
    COORDINATOR = "coordinator"


TRANSITIONS: dict[tuple[State, State], Party] = {
    (State.REQUESTED, State.ACCEPTED): Party.ASSIGNED_EXPERT,
    (State.REQUESTED, State.REJECTED): Party.ASSIGNED_EXPERT,
    (State.REQUESTED, State.SCHEDULED): Party.COORDINATOR,
    (State.REQUESTED, State.CANCELLED): Party.REQUESTER,
    (State.ACCEPTED, State.SCHEDULED): Party.COORDINATOR,
    (State.ACCEPTED, State.IN_SESSION): Party.ASSIGNED_EXPERT,
    (State.ACCEPTED, State.REPORTED): Party.ASSIGNED_EXPERT,
    (State.ACCEPTED, State.CANCELLED): Party.REQUESTER,
    (State.SCHEDULED, State.IN_SESSION): Party.ASSIGNED_EXPERT,
    (State.SCHEDULED, State.CANCELLED): Party.REQUESTER,
    (State.IN_SESSION, State.REPORTED): Party.ASSIGNED_EXPERT,
    (State.REPORTED, State.CLOSED): Party.REQUESTER,
}

TERMINAL: frozenset[State] = frozenset({State.CLOSED, State.REJECTED, State.CANCELLED})


@dataclass(frozen=True)
class Actor:
    """Who is asking. Role and hospital come from the users table on every request;
    ``name`` (staff display name) and ``address`` (client address) are for tokens and audit."""

    user_id: int
    role: Role
    hospital_id: int
    name: str = ""
    address: str = ""


@dataclass(frozen=True)
class Facts:
    """What the state machine needs to know about one consultation."""

    state: State
    type: ConsultationType
    requesting_doctor_id: int
    expert_id: int | None


def parties(actor: Actor, facts: Facts) -> frozenset[Party]:
    found: set[Party] = set()
    if actor.role in (Role.COORDINATOR, Role.ADMIN):
        found.add(Party.COORDINATOR)
    if actor.role is Role.REQUESTING_DOCTOR and actor.user_id == facts.requesting_doctor_id:
        found.add(Party.REQUESTER)
    if actor.role is Role.EXPERT and facts.expert_id == actor.user_id:
        found.add(Party.ASSIGNED_EXPERT)
    return frozenset(found)


def check_transition(facts: Facts, to: State, actor: Actor) -> None:
    """Raise InvalidTransition (not a legal move) or Forbidden (not this actor's move)."""
    party = TRANSITIONS.get((facts.state, to))
    if party is None:
        raise InvalidTransition(f"a consultation cannot go from {facts.state} to {to}")
    if (facts.state, to) == (State.ACCEPTED, State.REPORTED) and (
            facts.type is not ConsultationType.OFFLINE):
        raise InvalidTransition("only an offline consultation may be reported without a session")
    if party not in parties(actor, facts):
        raise Forbidden(f"only the {party.replace('_', ' ')} may move a consultation to {to}")


def reachable(transitions: Iterable[tuple[S, S]], state: S,
              check: Callable[[S], None]) -> list[S]:
    """The targets of ``transitions`` from ``state`` that ``check`` lets through (it raises
    InvalidTransition or Forbidden otherwise): the moves a client's menu offers."""
    targets = []
    for (source, to) in transitions:
        if source is not state:
            continue
        try:
            check(to)
        except (InvalidTransition, Forbidden):
            continue
        targets.append(to)
    return targets


def allowed_targets(facts: Facts, actor: Actor) -> list[State]:
    """The states this actor may move the consultation to now (for clients' menus)."""
    return reachable(TRANSITIONS, facts.state, lambda to: check_transition(facts, to, actor))


LIVE_STATES: frozenset[State] = frozenset({State.SCHEDULED, State.IN_SESSION})


def media_role(actor: Actor, facts: Facts) -> str:
    """The media-server role (signaling.tokens.ROLE_GRANTS) of an actor who may read the
    consultation: the requesting side is at the bedside ("ward"), the assigned expert
    consults ("expert"), coordinators and admins watch ("observer")."""
    if facts.state not in LIVE_STATES:
        raise InvalidTransition(f"a {facts.state} consultation has no open live room")
    found = parties(actor, facts)
    if Party.ASSIGNED_EXPERT in found:
        return "expert"
    if actor.role is Role.REQUESTING_DOCTOR:
        return "ward"
    if Party.COORDINATOR in found:
        return "observer"
    raise Forbidden("you have no part in this consultation's live room")
