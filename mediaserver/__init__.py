"""mediaserver: a forwarding WebRTC SFU on aiortc (rooms, participants, producers, consumers).

Domain-neutral: it knows rooms and roles as opaque strings, and imports nothing
from signaling, recorder, devices or consult_api.
"""

from mediaserver.bus import LocalRoomBus, RoomBus
from mediaserver.consumer import Consumer
from mediaserver.directory import LocalRoomDirectory, RoomDirectory, RoomPlacement
from mediaserver.downstream import Downstream, DownstreamStats, Upstream
from mediaserver.errors import (
    ClosedError,
    LimitError,
    MediaServerError,
    NegotiationError,
    NotFoundError,
    RoomFullError,
    ServerBusyError,
)
from mediaserver.latency_probe import LatencyProbe, LatencySummary
from mediaserver.media_config import MediaConfig
from mediaserver.member import RoomMember
from mediaserver.participant import Participant
from mediaserver.producer import PacketSource, Producer
from mediaserver.room import ReaderFactory, Room, RoomLimits
from mediaserver.seats import Seat, SeatLimits
from mediaserver.send_port import SendParameters, SendPort, SendPortListener
from mediaserver.server import MediaServer
from mediaserver.setup_queue import SetupQueue, SetupQueueStats
from mediaserver.stats import ProducerStats, RoomStats, ServerStats, TransportStats
from mediaserver.transport import AiortcTransports, Publication, Subscription, Transport
from mediaserver.transport_factory import (
    MediaTransport,
    PublicationTransport,
    SubscriptionTransport,
    TransportFactory,
)

__all__ = [
    "AiortcTransports",
    "ClosedError",
    "Consumer",
    "Downstream",
    "DownstreamStats",
    "LatencyProbe",
    "LatencySummary",
    "LimitError",
    "LocalRoomBus",
    "LocalRoomDirectory",
    "MediaConfig",
    "MediaServer",
    "MediaServerError",
    "MediaTransport",
    "NegotiationError",
    "NotFoundError",
    "PacketSource",
    "Participant",
    "Producer",
    "ProducerStats",
    "Publication",
    "PublicationTransport",
    "ReaderFactory",
    "Room",
    "RoomBus",
    "RoomDirectory",
    "RoomFullError",
    "RoomLimits",
    "RoomMember",
    "RoomPlacement",
    "RoomStats",
    "Seat",
    "SeatLimits",
    "SendParameters",
    "SendPort",
    "SendPortListener",
    "ServerBusyError",
    "ServerStats",
    "SetupQueue",
    "SetupQueueStats",
    "Subscription",
    "SubscriptionTransport",
    "Transport",
    "TransportFactory",
    "TransportStats",
    "Upstream",
]
