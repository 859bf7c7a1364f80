"""Room: participants, their publications and subscriptions, and the events between them."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mediaserver.errors import ClosedError, LimitError, NegotiationError, NotFoundError
from mediaserver.events import (
    AppEvent,
    ParticipantJoined,
    ParticipantLeft,
    RoomClosed,
    RoomEvent,
    StreamAdded,
    StreamEnded,
    StreamInfo,
    StreamRemoved,
    SubscriptionClosed,
    TransportStateChanged,
)
from mediaserver.participant import Observer, Participant
from mediaserver.transport import MediaConfig, Publication, Subscription, Transport

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoomLimits:
    participants: int = 64
    publications_per_participant: int = 4
    subscriptions_per_participant: int = 64


def new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(6)}"


class Room:
    """A live session. ``close()`` closes every participant and transport in it, once."""

    def __init__(self, name: str, config: MediaConfig, limits: RoomLimits | None = None,
                 on_closed: Callable[[Room], None] | None = None) -> None:
        self.name = name
        self.config = config
        self.limits = limits or RoomLimits()
        self.closed = False
        self.participants: dict[str, Participant] = {}
        self._on_closed = on_closed
        self._closing: list[Transport] = []

    # ----------------------------------------------------------------- membership

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedError(f"room {self.name} is closed")

    def join(self, name: str, role: str, observer: Observer,
             participant_id: str | None = None, service: bool = False) -> Participant:
        self._check_open()
        if len(self.participants) >= self.limits.participants:
            raise LimitError(f"the room is full ({self.limits.participants} participants)")
        participant = Participant(participant_id or new_id("p-"), name, role, observer, service)
        if participant.id in self.participants:
            raise LimitError("a participant with this id is already in the room")
        self._broadcast(ParticipantJoined(participant.info()))
        self.participants[participant.id] = participant
        logger.info("[%s] participant %s joined as %s", self.name, participant.id, role)
        return participant

    def leave(self, participant: Participant) -> None:
        """Remove a participant; its streams end and the others are told. Idempotent."""
        if self.participants.get(participant.id) is not participant:
            return
        for publication in list(participant.publications.values()):
            self._end_publication(participant, publication, "left")
        for subscription in list(participant.subscriptions.values()):
            self._track_close(subscription)
        participant.subscriptions.clear()
        participant.close()
        del self.participants[participant.id]
        self._broadcast(ParticipantLeft(participant.id))
        logger.info("[%s] participant %s left", self.name, participant.id)

    def broadcast(self, kind: str, body: Mapping[str, Any], exclude: str | None = None) -> int:
        """Deliver an application event to every participant; returns how many got it."""
        if self.closed:
            return 0
        event = AppEvent(kind, body)
        self._broadcast(event, exclude=exclude)
        return len(self.participants) - (1 if exclude in self.participants else 0)

    @property
    def only_services_left(self) -> bool:
        return all(p.service for p in self.participants.values())

    def streams(self) -> list[StreamInfo]:
        return [
            publication.info()
            for participant in self.participants.values()
            for publication in participant.publications.values()
            if not publication.closed
        ]

    def find_publication(self, stream_id: str) -> Publication:
        for participant in self.participants.values():
            publication = participant.publications.get(stream_id)
            if publication is not None and not publication.closed:
                return publication
        raise NotFoundError("no such stream in this room")

    # ----------------------------------------------------------------- media

    async def publish(self, participant: Participant, offer_sdp: object) -> tuple[Publication, str]:
        self._check_member(participant)
        if len(participant.publications) >= self.limits.publications_per_participant:
            raise LimitError("too many publications for one participant")
        publication = Publication(new_id("s-"), participant.id, self.config,
                                  self._transport_state)
        participant.publications[publication.id] = publication
        try:
            answer = await publication.negotiate(offer_sdp)
        except BaseException:
            participant.publications.pop(publication.id, None)
            self._track_close(publication)
            raise
        if publication.closed or participant.closed:
            raise ClosedError("the publication was closed during negotiation")
        self._broadcast(StreamAdded(publication.info()), exclude=participant.id)
        return publication, answer

    def unpublish(self, participant: Participant, stream_id: str) -> None:
        publication = participant.publications.get(stream_id)
        if publication is None:
            raise NotFoundError("no such publication")
        self._end_publication(participant, publication, "unpublished")

    async def subscribe(self, participant: Participant, stream_id: str
                        ) -> tuple[Subscription, str]:
        self._check_member(participant)
        if len(participant.subscriptions) >= self.limits.subscriptions_per_participant:
            raise LimitError("too many subscriptions for one participant")
        publication = self.find_publication(stream_id)
        subscription = Subscription(new_id("d-"), participant.id, stream_id, self.config,
                                    self._transport_state, self._subscription_lost)
        participant.subscriptions[subscription.id] = subscription
        try:
            offer = await subscription.create_offer(publication.producers)
        except BaseException:
            participant.subscriptions.pop(subscription.id, None)
            self._track_close(subscription)
            raise
        return subscription, offer

    async def answer(self, participant: Participant, subscription_id: str,
                     answer_sdp: object) -> None:
        self._check_member(participant)
        subscription = participant.subscriptions.get(subscription_id)
        if subscription is None:
            raise NotFoundError("no such subscription")
        try:
            await subscription.accept_answer(answer_sdp)
        except NegotiationError:
            # A connection that took a bad answer is not reusable: the subscriber starts over.
            if participant.subscriptions.pop(subscription_id, None) is not None:
                self._track_close(subscription)
            raise

    def unsubscribe(self, participant: Participant, subscription_id: str) -> None:
        subscription = participant.subscriptions.pop(subscription_id, None)
        if subscription is None:
            raise NotFoundError("no such subscription")
        self._track_close(subscription)

    # ----------------------------------------------------------------- internals

    def _check_member(self, participant: Participant) -> None:
        self._check_open()
        if self.participants.get(participant.id) is not participant:
            raise ClosedError("the participant has left the room")

    def _broadcast(self, event: RoomEvent, exclude: str | None = None) -> None:
        for participant in list(self.participants.values()):
            if participant.id != exclude:
                participant.notify(event)

    def _end_publication(self, participant: Participant, publication: Publication,
                         reason: str) -> None:
        if participant.publications.pop(publication.id, None) is None:
            return
        self._track_close(publication)  # closes producers -> consumers -> subscriptions
        self._broadcast(StreamRemoved(publication.id, participant.id), exclude=participant.id)
        # The publisher is told too: its own connection may look fine while the server's ended.
        participant.notify(StreamEnded(publication.id, reason))

    def _track_close(self, transport: Transport) -> None:
        transport.close()
        self._closing.append(transport)
        self._closing = [t for t in self._closing if not t.pc_closed()]

    def _transport_state(self, transport: Transport, state: str) -> None:
        if self.closed:
            return
        participant = self.participants.get(transport.participant_id)
        if participant is None:
            return
        self._broadcast(TransportStateChanged(participant.id, transport.id,
                                              transport.direction, state))
        if state not in ("failed", "closed"):
            return
        if isinstance(transport, Publication) and transport.id in participant.publications:
            self._end_publication(participant, transport, state)
        elif isinstance(transport, Subscription) and transport.id in participant.subscriptions:
            del participant.subscriptions[transport.id]
            self._track_close(transport)
            participant.notify(SubscriptionClosed(transport.id, transport.stream_id, state))

    def _subscription_lost(self, subscription: Subscription) -> None:
        participant = self.participants.get(subscription.participant_id)
        if participant is None or participant.subscriptions.pop(subscription.id, None) is None:
            subscription.close()
            return
        self._track_close(subscription)
        participant.notify(SubscriptionClosed(subscription.id, subscription.stream_id,
                                              "stream-ended"))

    # ----------------------------------------------------------------- lifecycle

    def close(self, reason: str = "closed") -> None:
        """Close every participant and transport, once; later calls do nothing."""
        if self.closed:
            return
        self._broadcast(RoomClosed(reason))
        self.closed = True
        for participant in list(self.participants.values()):
            for transport in [*participant.subscriptions.values(),
                              *participant.publications.values()]:
                self._track_close(transport)
            participant.close()
        self.participants.clear()
        logger.info("[%s] room closed (%s)", self.name, reason)
        if self._on_closed is not None:
            callback, self._on_closed = self._on_closed, None
            callback(self)

    async def wait_closed(self) -> None:
        """Wait until every peer connection closed by this room has finished closing."""
        pending = self._closing
        self._closing = []
        await asyncio.gather(*(t.wait_closed() for t in pending), return_exceptions=True)
