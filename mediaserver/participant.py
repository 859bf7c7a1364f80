"""Participant: one member of a room and the transports and readers it owns."""

from __future__ import annotations

import logging

from mediaserver.downstream import Downstream
from mediaserver.events import ParticipantInfo, RoomEvent
from mediaserver.member import RoomMember
from mediaserver.seats import Seat
from mediaserver.transport_factory import (
    MediaTransport,
    PublicationTransport,
    SubscriptionTransport,
)

logger = logging.getLogger(__name__)


class Participant:
    """A browser, a bot or the recorder in a room.

    The media server knows only an opaque id, a display name and a role string;
    what a role may do is decided by the signalling layer's grants. The participant
    owns its publications, subscriptions and readers (downstreams it attached with
    ``Room.attach``); its room decides when they open and close. ``seat`` is the kind
    of seat it takes in its room; None for a service, which takes none.
    """

    def __init__(self, participant_id: str, name: str, role: str, member: RoomMember,
                 seat: Seat = Seat.VIEWER) -> None:
        self.id = participant_id
        self.name = name
        self.role = role
        self.member = member
        self.seat: Seat | None = None if member.service else seat
        self.closed = False
        self.publications: dict[str, PublicationTransport] = {}
        self.subscriptions: dict[str, SubscriptionTransport] = {}
        self.readers: list[Downstream] = []

    @property
    def service(self) -> bool:
        """A service participant (the recorder) does not keep a room alive on its own."""
        return self.member.service

    def info(self) -> ParticipantInfo:
        return ParticipantInfo(id=self.id, name=self.name, role=self.role)

    def notify(self, event: RoomEvent) -> None:
        """Deliver an event; a failing member never disturbs the room."""
        if self.closed:
            return
        try:
            self.member.on_room_event(event)
        except Exception:
            logger.exception("[%s] member failed on %s", self.id, type(event).__name__)

    def transports(self) -> list[MediaTransport]:
        return [*self.subscriptions.values(), *self.publications.values()]

    def subscriptions_to(self, stream_id: str) -> list[SubscriptionTransport]:
        return [s for s in self.subscriptions.values() if s.stream_id == stream_id]

    def close(self) -> list[MediaTransport]:
        """Close what the participant still holds, telling nobody (its room announces what
        it must). Returns the transports it closed. Idempotent."""
        if self.closed:
            return []
        self.closed = True
        readers, self.readers = self.readers, []
        for reader in readers:
            reader.close()
        transports = self.transports()
        self.publications.clear()
        self.subscriptions.clear()
        for transport in transports:
            transport.close()
        return transports
