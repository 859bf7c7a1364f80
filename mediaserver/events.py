"""Events a room sends to its participants' observers (domain-neutral)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrackInfo:
    id: str
    kind: str
    codec: str


@dataclass(frozen=True)
class StreamInfo:
    """A publication: the tracks one peer connection of one participant sends."""

    id: str
    participant_id: str
    tracks: tuple[TrackInfo, ...]
    state: str = "new"  # the publication's connection state when this was built


@dataclass(frozen=True)
class ParticipantInfo:
    id: str
    name: str
    role: str


@dataclass(frozen=True)
class ParticipantJoined:
    participant: ParticipantInfo


@dataclass(frozen=True)
class ParticipantLeft:
    participant_id: str


@dataclass(frozen=True)
class StreamAdded:
    stream: StreamInfo


@dataclass(frozen=True)
class StreamRemoved:
    stream_id: str
    participant_id: str


@dataclass(frozen=True)
class StreamEnded:
    """Told to the publisher of a stream that ended, whatever ended it.

    ``reason``: ``failed`` (ICE/DTLS failed), ``closed`` (the connection closed: the
    peer closed it, DTLS ended, consent expired, or it never connected in time),
    ``unpublished`` (the publisher asked) or ``left`` (the publisher left the room).
    """

    stream_id: str
    reason: str


@dataclass(frozen=True)
class TransportStateChanged:
    """A participant's publication or subscription changed connection state."""

    participant_id: str
    transport_id: str
    direction: str
    state: str


@dataclass(frozen=True)
class SubscriptionClosed:
    subscription_id: str
    stream_id: str
    reason: str


@dataclass(frozen=True)
class RoomClosed:
    reason: str = "closed"


@dataclass(frozen=True)
class AppEvent:
    """An application event for the room's participants (device readings, control state).

    The media server only delivers it; ``kind`` and ``body`` mean something to the
    application layers (e.g. "vitals", "ptz-state"), never to mediaserver.
    """

    kind: str
    body: Mapping[str, Any]


RoomEvent = (
    AppEvent
    | ParticipantJoined
    | ParticipantLeft
    | StreamAdded
    | StreamRemoved
    | StreamEnded
    | TransportStateChanged
    | SubscriptionClosed
    | RoomClosed
)

__all__ = [
    "AppEvent",
    "ParticipantInfo",
    "ParticipantJoined",
    "ParticipantLeft",
    "RoomClosed",
    "RoomEvent",
    "StreamAdded",
    "StreamEnded",
    "StreamInfo",
    "StreamRemoved",
    "SubscriptionClosed",
    "TrackInfo",
    "TransportStateChanged",
]
