"""TransportFactory: how a room gets its transports, and the shape of what it gets.

A room never builds a peer connection itself: it asks its factory for a
publication (media in) or a subscription (media out). The default factory,
``transport.AiortcTransports``, builds aiortc peer connections; tests pass a fake
one (tests/fakes.py) and the forwarding benchmark a subclass with its latency
probe. ``MediaConfig.transports`` selects the factory.

A transport reports what happens to its connection to its room through the
``StateListener`` it was created with (``connecting``, ``connected``, ``failed``,
``closed``; ``closed`` also when it did not connect in time). A ``close()`` asked by
its owner is never reported back: the room that closes a transport announces it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from mediaserver.datagrams import PortCounters
from mediaserver.events import StreamInfo
from mediaserver.producer import Producer


class MediaTransport(Protocol):
    """One connection of one participant (one peer connection, for aiortc)."""

    @property
    def id(self) -> str: ...

    @property
    def participant_id(self) -> str: ...

    @property
    def direction(self) -> str:
        """``publish`` or ``subscribe``."""

    @property
    def state(self) -> str: ...

    @property
    def closed(self) -> bool: ...

    @property
    def port_counters(self) -> PortCounters:
        """Datagrams its media ports dropped (strangers, malformed, forged)."""

    async def add_remote_candidate(self, candidate: str, mid: str | None) -> None:
        """A candidate the remote peer trickled (``a=candidate`` value) for section ``mid``
        (None: the first); ValueError when it does not parse."""

    def close(self) -> None:
        """The owner's close: media objects first, then the connection. Idempotent;
        never reported to the state listener."""

    async def wait_closed(self) -> None:
        """Until everything the transport held is released (after ``close``)."""


StateListener = Callable[[MediaTransport, str], None]


class PublicationTransport(MediaTransport, Protocol):
    """A participant's published tracks: one producer per incoming track."""

    @property
    def producers(self) -> Sequence[Producer]: ...

    async def negotiate(self, offer_sdp: str) -> str:
        """Apply the publisher's offer, create the producers, return the answer SDP."""

    def info(self) -> StreamInfo: ...


class SubscriptionTransport(MediaTransport, Protocol):
    """One subscriber's copy of one publication: a consumer per producer."""

    @property
    def stream_id(self) -> str: ...

    async def create_offer(self, producers: Sequence[Producer]) -> str:
        """Attach a consumer to each producer and return the server's offer SDP."""

    async def accept_answer(self, answer_sdp: object) -> None:
        """Apply the subscriber's answer; NegotiationError when it cannot be."""

    async def answer_offer(self, producers: Sequence[Producer], offer_sdp: object) -> str:
        """The other way round (WHEP): apply the subscriber's offer, attach a consumer to
        each producer it receives, return the answer SDP; NegotiationError when it cannot."""


class TransportFactory(Protocol):
    def publication(self, transport_id: str, participant_id: str,
                    on_state: StateListener) -> PublicationTransport: ...

    def subscription(self, transport_id: str, participant_id: str, stream_id: str,
                     on_state: StateListener) -> SubscriptionTransport: ...
