"""The two-way referral state machine: pure, no I/O, no clock.

requested -> accepted | rejected | cancelled
accepted  -> admitted (the patient arrived) | cancelled
admitted  -> completed (discharged, or returned to the sending hospital)

Who may do what: the sending side (staff of the hospital that sent it) creates and cancels;
the receiving hospital's coordinators (and admins) accept, reject, admit and complete. Staff
of either hospital read the referral and add notes.

``up`` goes from a lower-level hospital to a higher one (county to province); ``down`` goes
back (province to county, e.g. for rehabilitation).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from consult_api.errors import Forbidden, InvalidTransition
from consult_api.models import HOSPITAL_LEVELS
from consult_api.workflow import Actor, Role, reachable


class ReferralState(StrEnum):
    REQUESTED = "requested"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    ADMITTED = "admitted"
    COMPLETED = "completed"


class Direction(StrEnum):
    UP = "up"
    DOWN = "down"


class Side(StrEnum):
    SENDER = "sender"
    RECEIVER = "receiver"


TRANSITIONS: dict[tuple[ReferralState, ReferralState], Side] = {
    (ReferralState.REQUESTED, ReferralState.ACCEPTED): Side.RECEIVER,
    (ReferralState.REQUESTED, ReferralState.REJECTED): Side.RECEIVER,
    (ReferralState.REQUESTED, ReferralState.CANCELLED): Side.SENDER,
    (ReferralState.ACCEPTED, ReferralState.ADMITTED): Side.RECEIVER,
    (ReferralState.ACCEPTED, ReferralState.CANCELLED): Side.SENDER,
    (ReferralState.ADMITTED, ReferralState.COMPLETED): Side.RECEIVER,
}

TERMINAL = frozenset({ReferralState.REJECTED, ReferralState.CANCELLED,
                      ReferralState.COMPLETED})

# Roles that may send a referral for their hospital.
SENDING_ROLES = frozenset({Role.REQUESTING_DOCTOR, Role.EXPERT, Role.COORDINATOR})


@dataclass(frozen=True)
class ReferralFacts:
    state: ReferralState
    from_hospital_id: int
    to_hospital_id: int


def sides(actor: Actor, facts: ReferralFacts) -> frozenset[Side]:
    found: set[Side] = set()
    if actor.hospital_id == facts.from_hospital_id and actor.role in SENDING_ROLES:
        found.add(Side.SENDER)
    if actor.hospital_id == facts.to_hospital_id and actor.role in (Role.COORDINATOR,
                                                                    Role.ADMIN):
        found.add(Side.RECEIVER)
    return frozenset(found)


def can_read(actor: Actor, facts: ReferralFacts) -> bool:
    """Staff of the sending and of the receiving hospital."""
    return actor.hospital_id in (facts.from_hospital_id, facts.to_hospital_id)


def check_transition(facts: ReferralFacts, to: ReferralState, actor: Actor) -> None:
    """Raise InvalidTransition (not a legal move) or Forbidden (not this actor's move)."""
    side = TRANSITIONS.get((facts.state, to))
    if side is None:
        raise InvalidTransition(f"a referral cannot go from {facts.state} to {to}")
    if side not in sides(actor, facts):
        who = ("the sending hospital" if side is Side.SENDER
               else "the receiving hospital's coordinators")
        raise Forbidden(f"only {who} may move a referral to {to}")


def allowed_targets(facts: ReferralFacts, actor: Actor) -> list[ReferralState]:
    return reachable(TRANSITIONS, facts.state, lambda to: check_transition(facts, to, actor))


def direction_fits(direction: Direction, from_level: str, to_level: str) -> bool:
    """``up`` to a higher level (province is the highest), ``down`` to a lower one."""
    rank_from, rank_to = HOSPITAL_LEVELS.index(from_level), HOSPITAL_LEVELS.index(to_level)
    return rank_to < rank_from if direction is Direction.UP else rank_to > rank_from
