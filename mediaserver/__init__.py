"""mediaserver: a forwarding WebRTC SFU on aiortc (rooms, participants, producers, consumers).

Domain-neutral: it knows rooms and roles as opaque strings, and imports nothing
from signaling, recorder, devices or consult_api.
"""

from mediaserver.bus import LocalRoomBus, RoomBus
from mediaserver.consumer import Consumer
from mediaserver.directory import LocalRoomDirectory, RoomDirectory, RoomPlacement
from mediaserver.errors import (
    ClosedError,
    LimitError,
    MediaServerError,
    NegotiationError,
    NotFoundError,
)
from mediaserver.latency_probe import LatencyProbe, LatencySummary
from mediaserver.participant import Participant
from mediaserver.producer import PacketSink, Producer
from mediaserver.room import Room, RoomLimits
from mediaserver.server import MediaServer
from mediaserver.stats import ProducerStats, RoomStats, ServerStats, TransportStats
from mediaserver.transport import MediaConfig, Publication, Subscription, Transport

__all__ = [
    "ClosedError",
    "Consumer",
    "LatencyProbe",
    "LatencySummary",
    "LimitError",
    "LocalRoomBus",
    "LocalRoomDirectory",
    "MediaConfig",
    "MediaServer",
    "MediaServerError",
    "NegotiationError",
    "NotFoundError",
    "PacketSink",
    "Participant",
    "Producer",
    "ProducerStats",
    "Publication",
    "Room",
    "RoomBus",
    "RoomDirectory",
    "RoomLimits",
    "RoomPlacement",
    "RoomStats",
    "ServerStats",
    "Subscription",
    "Transport",
    "TransportStats",
]
