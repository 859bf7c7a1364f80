"""Participant: one member of a room and the transports it owns."""

from __future__ import annotations

import logging
from collections.abc import Callable

from mediaserver.events import ParticipantInfo, RoomEvent
from mediaserver.transport import Publication, Subscription

logger = logging.getLogger(__name__)

Observer = Callable[[RoomEvent], None]


class Participant:
    """A browser, a bot or (later) a recorder in a room.

    The media server knows only an opaque id, a display name and a role string;
    what a role may do is decided by the signalling layer's grants.
    """

    def __init__(self, participant_id: str, name: str, role: str, observer: Observer,
                 service: bool = False) -> None:
        self.id = participant_id
        self.name = name
        self.role = role
        # A service participant (the recorder) does not keep a room alive on its own.
        self.service = service
        self.closed = False
        self.publications: dict[str, Publication] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self._observer = observer

    def info(self) -> ParticipantInfo:
        return ParticipantInfo(id=self.id, name=self.name, role=self.role)

    def notify(self, event: RoomEvent) -> None:
        """Deliver an event; a failing observer never disturbs the room."""
        if self.closed:
            return
        try:
            self._observer(event)
        except Exception:
            logger.exception("[%s] observer failed on %s", self.id, type(event).__name__)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for transport in [*self.subscriptions.values(), *self.publications.values()]:
            transport.close()
