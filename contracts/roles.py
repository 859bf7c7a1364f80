"""The role vocabulary: who a participant is, what its token may grant, who steers first.

Signalling checks grants, the PTZ lease ranks roles, the recorder joins as its own
role and the teaching video puts the bedside's camera in the large tile: all of
them read the names here.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType


class Role(StrEnum):
    WARD = "ward"
    """Ward staff at the bedside: the bedside camera and microphone."""
    EXPERT = "expert"
    """A remote expert."""
    OBSERVER = "observer"
    """A trainee who only watches and listens."""
    OPERATOR = "operator"
    """Reads server statistics; never joins a room."""
    RECORDER = "recorder"
    """The server's recorder participant (a service participant, never in a token)."""
    EDGE = "edge"
    """Another media node relaying the room to its own viewers (a cascaded room): a
    service participant whose token that node mints with the shared secret."""


PUBLISH = "publish"
SUBSCRIBE = "subscribe"
PTZ = "ptz"
STATS = "stats"
EDGE = "edge"

ROLE_GRANTS: Mapping[str, frozenset[str]] = MappingProxyType({
    # Ward staff publish the bedside camera and microphone, hear/see the experts, and
    # may take the PTZ camera back from a remote expert at any time.
    Role.WARD.value: frozenset({PUBLISH, SUBSCRIBE, PTZ}),
    # Experts watch the bedside, talk back and steer the PTZ camera.
    Role.EXPERT.value: frozenset({PUBLISH, SUBSCRIBE, PTZ}),
    # Observers (e.g. trainees) may only watch and listen.
    Role.OBSERVER.value: frozenset({SUBSCRIBE}),
    # Operators read server statistics; they never join a room.
    Role.OPERATOR.value: frozenset({STATS}),
    # An edge node subscribes once to each stream and fans it out to its own viewers; it
    # takes no seat. Only a node mints it (never the CLI, never the records service).
    Role.EDGE.value: frozenset({SUBSCRIBE, EDGE}),
})
"""The roles a token may carry, and the most each may be granted."""

TOKEN_ROLES: tuple[str, ...] = tuple(r for r in ROLE_GRANTS if r != Role.EDGE.value)
"""The roles a person's token may carry (``huizhen token``): every one but ``edge``."""

PTZ_RANKS: Mapping[str, int] = MappingProxyType({
    # Staff at the bedside outrank remote experts: they must be able to take the camera
    # back at once (patient privacy, care at the bed).
    Role.WARD.value: 3,
    Role.EXPERT.value: 2,
})
"""Who may hold the PTZ lease, and who takes it over from whom (higher wins)."""

SYSTEM_ROLE = "system"
"""The server itself as the actor of a PTZ command (dead-man stop, departure, closing)."""

RECORDER_ROLE = Role.RECORDER.value
BEDSIDE_ROLE = Role.WARD.value
"""Whose camera is the bedside's: the main picture of a recording's teaching video."""
