"""Room: participants, their publications and subscriptions, and the events between them.

Close flows downward: ``Room.close()`` closes each participant, which closes its
transports, whose producers tell their downstreams ``producer_closed()``; nothing
below calls back up. The room itself announces every change (``RoomClosed`` first
and nothing after it), and closes itself when its last non-service participant
leaves and nobody else joins within ``MediaConfig.empty_room_grace``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from mediaserver.admission import LoadAdmission
from mediaserver.downstream import Downstream
from mediaserver.errors import (
    ClosedError,
    LimitError,
    NegotiationError,
    NotFoundError,
    RoomFullError,
    ServerBusyError,
    TooManyPendingError,
    TooManyPublicationsError,
    TooManySubscriptionsError,
)
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
from mediaserver.layer_follower import follow_layers
from mediaserver.media_config import MediaConfig
from mediaserver.member import RoomMember
from mediaserver.participant import Participant
from mediaserver.sdp_check import check_sdp
from mediaserver.seats import Seat, SeatLimits, full_seat
from mediaserver.setup_queue import SetupQueue, SetupSlot
from mediaserver.transport import AiortcTransports
from mediaserver.transport_factory import (
    MediaTransport,
    PublicationTransport,
    SubscriptionTransport,
    TransportFactory,
)

logger = logging.getLogger(__name__)


class AttachedTrack(Protocol):
    """One track as ``Room.attach`` gives it to a reader factory: the ``Producer``
    itself, or (a simulcast producer) the ``FollowedTrack`` of the layer follower
    between them. The reader's upstream: it asks it for keyframes and detaches from it."""

    @property
    def id(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def codec_name(self) -> str: ...

    @property
    def codec_parameters(self) -> dict[str, object]: ...

    def request_keyframe(self) -> None: ...

    def remove_downstream(self, downstream: Downstream) -> None: ...


# Builds the reader of one track for ``Room.attach`` (None: not this track).
ReaderFactory = Callable[[AttachedTrack], Downstream | None]


@dataclass(frozen=True)
class RoomLimits:
    """What one room and one participant may hold (see PROTOCOL.md, "Limits").

    ``seats``: people who may publish, and people who only receive, in one room;
    services (the recorder) take no seat."""

    seats: SeatLimits = field(default_factory=SeatLimits)
    publications_per_participant: int = 4
    subscriptions_per_participant: int = 32
    # Subscriptions offered but not answered yet, per participant, and how long an
    # offer waits for its answer before the subscription is closed.
    pending_per_participant: int = 4
    answer_timeout: float = 15.0


def sees(viewer: Participant, subject: Participant) -> bool:
    """Whether ``viewer`` is told of ``subject`` joining, leaving and its connections.

    Viewers are not told of other viewers: in a teaching broadcast watched by hundreds,
    every join told to every viewer made joins cost the square of the room (a room of
    250 queued ~1,000 events per socket, and closed even the publisher's socket); and a
    county doctor watching need not see who else watches. Publishers (ward, experts)
    and services (the recorder's timeline) see everyone."""
    return (viewer is subject or subject.seat is not Seat.VIEWER
            or viewer.seat is not Seat.VIEWER)


def new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(6)}"


class Room:
    """A live session. ``close()`` closes every participant and transport in it, once.

    After ``close()``, ``join``, ``publish``, ``subscribe``, ``answer``, ``unpublish``,
    ``unsubscribe`` and ``attach`` raise ``ClosedError``; ``leave``, ``close`` and
    ``broadcast`` do nothing.
    """

    def __init__(self, name: str, config: MediaConfig, limits: RoomLimits | None = None,
                 on_closed: Callable[[Room], None] | None = None,
                 setup: SetupQueue | None = None, origin: str | None = None,
                 admission: LoadAdmission | None = None) -> None:
        self.name = name
        # The node's load: a new viewer is refused while it is too busy (None: never).
        self._admission = admission
        # A relayed room (cascade): the id of the node where the room lives, which this
        # node mirrors for its own viewers; None: the room lives here. A relayed room is
        # never placed on this node, and its streams come in through ``relay``.
        self.origin = origin
        self.config = config
        self.limits = limits or RoomLimits()
        self.closed = False
        self.participants: dict[str, Participant] = {}
        self._transports: TransportFactory = config.transports or AiortcTransports(config)
        self._on_closed = on_closed
        # Transports still releasing (their tasks end by themselves; see wait_closed).
        self._closing: set[asyncio.Task[None]] = set()
        # Subscriptions whose offer waits for an answer: id -> the answer-timeout timer.
        self._pending: dict[str, asyncio.TimerHandle] = {}
        self._offering: set[str] = set()
        """Subscriptions whose offer is being made (then pending, or abandoned)."""
        # Runs while the room is empty (services aside): it closes the room when it fires.
        self._grace: asyncio.TimerHandle | None = None
        # The node's bound on peer connections being set up at once (its MediaServer's);
        # each subscription holds a slot until it is connected, has failed or is closed.
        self._setup = setup or SetupQueue(config.setup_concurrency)
        self._slots: dict[str, SetupSlot] = {}
        # Subscriptions waiting for a set-up slot, per participant id.
        self._queued: dict[str, int] = {}

    # ----------------------------------------------------------------- membership

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedError(f"room {self.name} is closed")

    def join(self, name: str, role: str, member: RoomMember,
             participant_id: str | None = None, *, seat: Seat = Seat.VIEWER,
             replacing: str | None = None) -> Participant:
        """Admit a member in a ``seat`` (a service takes none). ``replacing``: the id of a
        participant this one replaces at once (the same person rejoining), whose seat
        is counted free. RoomFullError when every seat of the kind is taken."""
        self._check_open()
        if not member.service:
            self._check_seat(seat, replacing)
        participant = Participant(participant_id or new_id("p-"), name, role, member, seat)
        if participant.id in self.participants:
            raise LimitError("a participant with this id is already in the room")
        self._announce(participant, ParticipantJoined(participant.info()))
        self.participants[participant.id] = participant
        if not participant.service and self._grace is not None:
            self._grace.cancel()  # someone is back within the grace: the same room goes on
            self._grace = None
            logger.info("[%s] occupied again; the room stays open", self.name)
        logger.info("[%s] participant %s joined as %s", self.name, participant.id, role)
        return participant

    def _check_seat(self, seat: Seat, replacing: str | None) -> None:
        # A viewer coming back (replacing its own lost participant) adds no load.
        if (seat is Seat.VIEWER and replacing is None and self._admission is not None
                and not self._admission.admits()):
            logger.info("[%s] viewer refused: this node's event loop is at %.0f %% of a "
                        "core (limit %.0f %%)", self.name, 100 * self._admission.share,
                        100 * self._admission.limit)
            raise ServerBusyError("this media server is at capacity: try again later")
        taken = (p.seat for p in self.participants.values() if p.id != replacing)
        if full_seat(self.limits.seats, seat, taken):
            seats = self.limits.seats.of(seat)
            logger.info("[%s] join refused: all %d %s seats are taken", self.name, seats,
                        seat.value)
            raise RoomFullError(seat.limit_name, seats)

    def leave(self, participant: Participant) -> None:
        """Remove a participant; its streams end and the others are told. Idempotent.

        When the last participant that is not a service leaves, the room closes
        (reason ``empty``) after ``MediaConfig.empty_room_grace`` seconds unless someone
        joins meanwhile; until then it stays open as it is (its services, e.g. the
        recorder, stay in it), so a person whose link dropped comes back to it.
        """
        if self.participants.get(participant.id) is not participant:
            return
        for publication in list(participant.publications.values()):
            self._end_publication(participant, publication, "left")
        for subscription in list(participant.subscriptions.values()):
            del participant.subscriptions[subscription.id]
            self._close_transport(subscription)
        self._release_later(participant.close())
        del self.participants[participant.id]
        self._announce(participant, ParticipantLeft(participant.id))
        logger.info("[%s] participant %s left", self.name, participant.id)
        if not participant.service and self.only_services_left:
            self._emptied()

    def broadcast(self, kind: str, body: Mapping[str, Any], exclude: str | None = None) -> int:
        """Deliver an application event to every participant; returns how many got it."""
        if self.closed:
            return 0
        event = AppEvent(kind, body)
        self._broadcast(event, exclude=exclude)
        return len(self.participants) - (1 if exclude in self.participants else 0)

    @property
    def in_grace(self) -> bool:
        """Empty (services aside) and waiting out its grace before it closes."""
        return self._grace is not None

    def _emptied(self) -> None:
        grace = self.config.empty_room_grace
        if grace <= 0:
            self.close("empty")
            return
        if self._grace is None:
            logger.info("[%s] empty; closing in %.0f s unless someone joins", self.name, grace)
            self._grace = asyncio.get_running_loop().call_later(grace, self._grace_ended)

    def _grace_ended(self) -> None:
        self._grace = None
        if self.only_services_left:
            self.close("empty")

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

    def find_publication(self, stream_id: str) -> PublicationTransport:
        for participant in self.participants.values():
            publication = participant.publications.get(stream_id)
            if publication is not None and not publication.closed:
                return publication
        raise NotFoundError("no such stream in this room")

    # ----------------------------------------------------------------- media

    async def publish(self, participant: Participant, offer_sdp: object
                      ) -> tuple[PublicationTransport, str]:
        return await self._publish(participant, offer_sdp, new_id("s-"))

    async def relay(self, participant: Participant, stream_id: str, offer_sdp: object
                    ) -> tuple[PublicationTransport, str]:
        """A relayed room's stream (cascade): the origin node's offer of its stream
        ``stream_id`` to this node is answered as a publisher's offer would be, so the
        stream keeps its id and its packets reach this room's producers (never decoded).
        ``participant`` stands for the stream's publisher on the origin."""
        if self.origin is None:
            raise LimitError("only a relayed room takes relayed streams")
        if any(stream_id in p.publications for p in self.participants.values()):
            raise LimitError("a stream with this id is already in the room")
        return await self._publish(participant, offer_sdp, stream_id)

    async def _publish(self, participant: Participant, offer_sdp: object, stream_id: str
                       ) -> tuple[PublicationTransport, str]:
        self._check_member(participant)
        if len(participant.publications) >= self.limits.publications_per_participant:
            raise TooManyPublicationsError(
                f"at most {self.limits.publications_per_participant} publications per participant")
        offer = check_sdp(offer_sdp, "offer")  # before any peer connection exists
        publication = self._transports.publication(stream_id, participant.id,
                                                   self._transport_state)
        participant.publications[publication.id] = publication
        try:
            answer = await publication.negotiate(offer)
        except BaseException:
            if participant.publications.pop(publication.id, None) is not None:
                self._close_transport(publication)
            raise
        if publication.closed or participant.closed:
            raise ClosedError("the publication was closed during negotiation")
        self._broadcast(StreamAdded(publication.info()), exclude=participant.id)
        return publication, answer

    def unpublish(self, participant: Participant, stream_id: str) -> None:
        self._check_member(participant)
        publication = participant.publications.get(stream_id)
        if publication is None:
            raise NotFoundError("no such publication")
        self._end_publication(participant, publication, "unpublished")

    async def subscribe(self, participant: Participant, stream_id: str
                        ) -> tuple[SubscriptionTransport, str]:
        """Offer ``stream_id`` to ``participant``. Waits for a set-up slot of the node
        first (in arrival order); the subscription holds it until it is connected."""
        self._check_subscription_limits(participant)
        if self.pending_count(participant) >= self.limits.pending_per_participant:
            raise TooManyPendingError(
                f"at most {self.limits.pending_per_participant} subscriptions may wait for "
                "their answer; answer or unsubscribe first")
        self.find_publication(stream_id)  # fail fast, before waiting in the queue
        subscription, publication = await self._open_subscription(participant, stream_id)
        # Unanswered from here on: while its offer is made too (a client sending several
        # subscribes at once would otherwise have them all past the bound).
        self._offering.add(subscription.id)
        try:
            offer = await subscription.create_offer(publication.producers)
        except BaseException:
            self._abandon(participant, subscription)
            raise
        finally:
            self._offering.discard(subscription.id)
        if subscription.closed or participant.subscriptions.get(subscription.id) is None:
            raise ClosedError("the subscription was closed during negotiation")
        self._pending[subscription.id] = asyncio.get_running_loop().call_later(
            self.limits.answer_timeout, self._answer_timed_out, participant.id, subscription.id)
        return subscription, offer

    async def subscribe_offer(self, participant: Participant, stream_id: str,
                              offer_sdp: object) -> tuple[SubscriptionTransport, str]:
        """Subscribe with the subscriber's own offer (WHEP); returns the answer SDP.

        The same limits and set-up queue as ``subscribe``; nothing waits for an answer
        afterwards.
        """
        self._check_subscription_limits(participant)
        self.find_publication(stream_id)
        offer = check_sdp(offer_sdp, "offer")  # before any peer connection exists
        subscription, publication = await self._open_subscription(participant, stream_id)
        try:
            answer = await subscription.answer_offer(publication.producers, offer)
        except BaseException:
            self._abandon(participant, subscription)
            raise
        if subscription.closed or participant.subscriptions.get(subscription.id) is None:
            raise ClosedError("the subscription was closed during negotiation")
        return subscription, answer

    def pending_count(self, participant: Participant) -> int:
        """How many of ``participant``'s subscriptions wait for their answer or for a
        set-up slot."""
        answers = sum(1 for sid in participant.subscriptions
                      if sid in self._pending or sid in self._offering)
        return answers + self.queued_count(participant)

    def queued_count(self, participant: Participant) -> int:
        """How many of ``participant``'s subscriptions wait for a set-up slot."""
        return self._queued.get(participant.id, 0)

    def _check_subscription_limits(self, participant: Participant) -> None:
        self._check_member(participant)
        held = len(participant.subscriptions) + self.queued_count(participant)
        if held >= self.limits.subscriptions_per_participant:
            raise TooManySubscriptionsError(
                f"at most {self.limits.subscriptions_per_participant} subscriptions "
                "per participant")

    async def _wait_for_slot(self, participant: Participant) -> SetupSlot:
        self._queued[participant.id] = self.queued_count(participant) + 1
        try:
            return await self._setup.acquire()
        finally:
            left = self._queued.pop(participant.id) - 1
            if left:
                self._queued[participant.id] = left

    async def _open_subscription(self, participant: Participant, stream_id: str
                                 ) -> tuple[SubscriptionTransport, PublicationTransport]:
        """Wait for a set-up slot, then make ``participant``'s subscription to ``stream_id``
        (still a member, the stream still there); the subscription holds the slot."""
        slot = await self._wait_for_slot(participant)
        try:
            self._check_member(participant)
            publication = self.find_publication(stream_id)
            subscription = self._transports.subscription(new_id("d-"), participant.id,
                                                         stream_id, self._transport_state)
        except BaseException:
            slot.release()
            raise
        self._slots[subscription.id] = slot
        participant.subscriptions[subscription.id] = subscription
        return subscription, publication

    def _abandon(self, participant: Participant, subscription: SubscriptionTransport) -> None:
        """A subscription whose negotiation failed: closed, its slot given back."""
        if participant.subscriptions.pop(subscription.id, None) is not None:
            self._close_transport(subscription)
        self._release_slot(subscription.id)

    def _release_slot(self, transport_id: str) -> None:
        slot = self._slots.pop(transport_id, None)
        if slot is not None:
            slot.release()

    async def answer(self, participant: Participant, subscription_id: str,
                     answer_sdp: object) -> None:
        self._check_member(participant)
        subscription = participant.subscriptions.get(subscription_id)
        if subscription is None:
            raise NotFoundError("no such subscription")
        try:
            if subscription_id in self._pending:
                check_sdp(answer_sdp, "answer")
            await subscription.accept_answer(answer_sdp)
        except NegotiationError:
            # A connection that took a bad answer is not reusable: the subscriber starts over.
            if participant.subscriptions.pop(subscription_id, None) is not None:
                self._close_transport(subscription)
            raise
        self._stop_pending(subscription_id)

    def unsubscribe(self, participant: Participant, subscription_id: str) -> None:
        self._check_member(participant)
        subscription = participant.subscriptions.pop(subscription_id, None)
        if subscription is None:
            raise NotFoundError("no such subscription")
        self._close_transport(subscription)

    def attach(self, participant: Participant, stream_id: str,
               make_reader: ReaderFactory) -> list[Downstream]:
        """Give a reader built by ``make_reader`` every packet of each track of a stream.

        The in-process way to receive media (the recorder): each reader is an ordinary
        downstream of its producer, owned by ``participant`` (closed when it leaves),
        told ``producer_closed()`` when its track ends. A keyframe is asked for, so
        video readers start cleanly. Raises ClosedError (room closed, not a member)
        or NotFoundError (no such stream).

        A simulcast producer's reader gets one continuous stream that follows the
        highest stream the publisher sends (``layer_follower``): it is handed the
        follower's ``FollowedTrack``, not the producer, so its keyframe requests reach
        the stream it is given.
        """
        self._check_member(participant)
        publication = self.find_publication(stream_id)
        participant.readers = [r for r in participant.readers if not r.closed]  # ended tracks
        readers = []
        for producer in publication.producers:
            if producer.closed:
                continue
            if producer.spatial_layers and producer.kind == "video":
                reader = follow_layers(producer, make_reader)  # asks for its own keyframe
            else:
                reader = make_reader(producer)
                if reader is not None:
                    producer.add_downstream(reader)
                    producer.request_keyframe()
            if reader is None:
                continue
            participant.readers.append(reader)
            readers.append(reader)
        return readers

    # ----------------------------------------------------------------- internals

    def _check_member(self, participant: Participant) -> None:
        self._check_open()
        if self.participants.get(participant.id) is not participant:
            raise ClosedError("the participant has left the room")

    def _broadcast(self, event: RoomEvent, exclude: str | None = None) -> None:
        for participant in list(self.participants.values()):
            if participant.id != exclude:
                participant.notify(event)

    def _announce(self, subject: Participant | str, event: RoomEvent,
                  exclude: str | None = None) -> None:
        """Tell the room about participant ``subject`` (joined, left, a connection's
        state): everyone but ``exclude``, except that news of a viewer reaches the viewer
        itself, the publishers and the services, not the other viewers (``sees``)."""
        about = self.participants.get(subject) if isinstance(subject, str) else subject
        for participant in list(self.participants.values()):
            if participant.id != exclude and (about is None or sees(participant, about)):
                participant.notify(event)

    def visible_to(self, participant: Participant) -> list[Participant]:
        """The others ``participant`` is told about (its `joined` list)."""
        return [other for other in self.participants.values()
                if other is not participant and sees(participant, other)]

    def _end_publication(self, participant: Participant, publication: PublicationTransport,
                         reason: str) -> None:
        """End a stream: its subscriptions, then its producers (their downstreams are
        told), then the announcements."""
        if participant.publications.pop(publication.id, None) is None:
            return
        for subscriber in list(self.participants.values()):
            for subscription in subscriber.subscriptions_to(publication.id):
                del subscriber.subscriptions[subscription.id]
                self._close_transport(subscription)
                subscriber.notify(SubscriptionClosed(subscription.id, publication.id,
                                                     "stream-ended"))
        self._close_transport(publication)
        self._broadcast(StreamRemoved(publication.id, participant.id), exclude=participant.id)
        # The publisher is told too: its own connection may look fine while the server's ended.
        participant.notify(StreamEnded(publication.id, reason))

    def _close_transport(self, transport: MediaTransport) -> None:
        """Close a transport the room took from its participant, and announce it closed."""
        self._stop_pending(transport.id)
        self._release_slot(transport.id)
        was_open = not transport.closed
        transport.close()
        self._release_later([transport])
        if was_open:
            self._announce(transport.participant_id, TransportStateChanged(
                transport.participant_id, transport.id, transport.direction, "closed"))

    def _release_later(self, transports: list[MediaTransport]) -> None:
        # Each task holds its transport only until the transport is released.
        loop = asyncio.get_running_loop()
        for transport in transports:
            task = loop.create_task(transport.wait_closed())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _stop_pending(self, subscription_id: str) -> None:
        timer = self._pending.pop(subscription_id, None)
        if timer is not None:
            timer.cancel()

    def _answer_timed_out(self, participant_id: str, subscription_id: str) -> None:
        self._pending.pop(subscription_id, None)
        participant = self.participants.get(participant_id)
        if participant is None:
            return
        subscription = participant.subscriptions.pop(subscription_id, None)
        if subscription is None:
            return
        logger.info("[%s] subscription %s of %s was not answered in time", self.name,
                    subscription_id, participant_id)
        self._close_transport(subscription)
        participant.notify(SubscriptionClosed(subscription.id, subscription.stream_id,
                                              "answer-timeout"))

    def _transport_state(self, transport: MediaTransport, state: str) -> None:
        """A transport reports its connection's state (its own news, never a close we asked)."""
        if state in ("connected", "failed", "closed"):
            self._release_slot(transport.id)  # its set-up is over
        if self.closed:
            return
        participant = self.participants.get(transport.participant_id)
        if participant is None:
            return
        self._announce(participant.id, TransportStateChanged(participant.id, transport.id,
                                                             transport.direction, state))
        if state not in ("failed", "closed"):
            return
        publication = participant.publications.get(transport.id)
        subscription = participant.subscriptions.get(transport.id)
        if publication is transport:
            self._end_publication(participant, publication, state)
        elif subscription is transport:
            del participant.subscriptions[subscription.id]
            self._close_transport(subscription)
            participant.notify(SubscriptionClosed(subscription.id, subscription.stream_id,
                                                  state))

    # ----------------------------------------------------------------- lifecycle

    def close(self, reason: str = "closed") -> None:
        """Announce ``RoomClosed``, then close every participant and transport, once,
        without any further event; later calls do nothing."""
        if self.closed:
            return
        self._broadcast(RoomClosed(reason))
        self.closed = True
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        for timer in self._pending.values():
            timer.cancel()
        self._pending.clear()
        for transport_id in list(self._slots):
            self._release_slot(transport_id)
        participants = list(self.participants.values())
        self.participants.clear()
        for participant in participants:
            self._release_later(participant.close())
        logger.info("[%s] room closed (%s)", self.name, reason)
        if self._on_closed is not None:
            callback, self._on_closed = self._on_closed, None
            callback(self)

    async def wait_closed(self) -> None:
        """Wait until every transport closed by this room has been released."""
        await asyncio.gather(*list(self._closing), return_exceptions=True)
