"""A frozen snapshot of this node's counters: rooms, transports, producers, downstreams.

Readers (the operators' route, a metrics exporter) take ``MediaServer.stats()`` and
never walk the live rooms themselves. The snapshot holds no names of people and no
patient data: room names, ids, kinds and counters only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from mediaserver.datagrams import PortCounters
from mediaserver.downstream import DownstreamStats
from mediaserver.seats import Seat
from mediaserver.setup_queue import SetupQueueStats

if TYPE_CHECKING:
    from mediaserver.producer import Producer
    from mediaserver.room import Room
    from mediaserver.transport_factory import MediaTransport


@dataclass(frozen=True, slots=True)
class TransportStats:
    """One peer connection; ``dropped`` is a copy of its media ports' counters."""

    id: str
    direction: str
    state: str
    dropped: PortCounters
    participant: str = ""  # the owner's opaque id


@dataclass(frozen=True, slots=True)
class ProducerStats:
    id: str
    kind: str
    codec: str
    packets_received: int
    keyframe_requests_sent: int
    downstreams: tuple[DownstreamStats, ...]
    participant: str = ""  # the publisher's opaque id
    octets_received: int = 0  # RTP payload bytes
    # Upstream loss recovery (video): sequence numbers NACKed to the publisher (each
    # retry counts), its retransmissions received (and of those, duplicates not
    # forwarded), holes filled, holes given up, keyframes asked for instead of NACKs,
    # and the smoothed NACK round trip.
    nacks_sent: int = 0
    retransmissions_received: int = 0
    retransmissions_unused: int = 0
    packets_recovered: int = 0
    packets_given_up: int = 0
    keyframes_instead_of_nacks: int = 0
    nack_rtt_ms: float | None = None
    # Measured bit rate of each VP8 temporal layer (TID 0, 1, ...) while a layer
    # selector reads the packets; empty when no temporal layers were seen.
    layer_bitrates: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class RoomStats:
    name: str
    participants: int  # services included
    producers: tuple[ProducerStats, ...]
    transports: tuple[TransportStats, ...]
    dropped: PortCounters  # the sum over the room's transports
    publishers: int = 0  # people in publisher seats
    viewers: int = 0  # people in viewer seats
    origin: str | None = None  # a relayed room (cascade): the node it is relayed from


@dataclass(frozen=True, slots=True)
class ServerStats:
    node_id: str
    rooms: tuple[RoomStats, ...]
    # Peer connections being set up, and queued for a slot.
    setup: SetupQueueStats = field(default_factory=SetupQueueStats)

    @property
    def transports(self) -> int:
        """Peer connections (publications and subscriptions) in the open rooms."""
        return sum(len(room.transports) for room in self.rooms)


def server_stats(node_id: str, rooms: Iterable[Room],
                 setup: SetupQueueStats | None = None) -> ServerStats:
    return ServerStats(node_id, tuple(room_stats(room) for room in rooms),
                       setup or SetupQueueStats())


def room_stats(room: Room) -> RoomStats:
    """Transports and producers in participant order, publications before subscriptions."""
    participants = list(room.participants.values())
    transports = tuple(
        transport_stats(transport)
        for participant in participants
        for transport in [*participant.publications.values(),
                          *participant.subscriptions.values()])
    producers = tuple(
        producer_stats(producer, participant.id)
        for participant in participants
        for publication in participant.publications.values()
        for producer in publication.producers)
    dropped = PortCounters()
    for transport in transports:
        dropped.add(transport.dropped)
    seats = [participant.seat for participant in participants]
    return RoomStats(room.name, len(participants), producers, transports, dropped,
                     publishers=seats.count(Seat.PUBLISHER), viewers=seats.count(Seat.VIEWER),
                     origin=room.origin)


def transport_stats(transport: MediaTransport) -> TransportStats:
    return TransportStats(transport.id, transport.direction, transport.state,
                          replace(transport.port_counters), transport.participant_id)


def producer_stats(producer: Producer, participant: str = "") -> ProducerStats:
    recovery = producer.recovery
    rates = producer.layer_rates
    return ProducerStats(producer.id, producer.kind, producer.codec_name,
                         producer.packets_received, producer.keyframe_requests_sent,
                         downstream_stats(producer), participant, producer.octets_received,
                         nacks_sent=recovery.nacks_sent,
                         retransmissions_received=recovery.retransmissions_received,
                         retransmissions_unused=recovery.retransmissions_unused,
                         packets_recovered=recovery.packets_recovered,
                         packets_given_up=recovery.packets_given_up,
                         keyframes_instead_of_nacks=recovery.keyframes_instead,
                         nack_rtt_ms=recovery.rtt_ms,
                         layer_bitrates=tuple(int(rate)
                                              for rate in rates.rates[:rates.highest + 1]))


def downstream_stats(producer: Producer) -> tuple[DownstreamStats, ...]:
    return tuple(downstream.stats() for downstream in producer.downstreams)
