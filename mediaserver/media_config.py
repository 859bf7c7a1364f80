"""MediaConfig: what every room of a media server is built with."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiortc import RTCIceServer

from mediaserver.transport_factory import TransportFactory


@dataclass(frozen=True)
class MediaConfig:
    ice_servers: tuple[RTCIceServer, ...] = ()
    ice_addresses: tuple[str, ...] = ("127.0.0.1",)
    keyframe_interval: float = 0.5
    retransmission_buffer: int = 512
    connect_timeout: float = 30.0
    # Per-viewer VP8 temporal layers chosen from the viewer's REMB and loss (False:
    # every viewer gets every packet, as a benchmark's baseline).
    layer_selection: bool = True
    # Seconds a room stays open once its last participant other than a service (the
    # recorder) has left: a bedside whose link dropped rejoins the same room, and its
    # recording goes on in one piece. 0: the room closes at once. The server's
    # configuration sets it (`[media] empty_room_grace`, 60 s by default).
    empty_room_grace: float = 0.0
    # Answer a publisher's simulcast offer (rids): it then sends up to three streams.
    # layer_selection chooses one per viewer; False: the publisher sends one stream.
    simulcast: bool = False
    # Subscriptions of one node being set up at once (from their creation until they are
    # connected, have failed or are closed); later ones wait in arrival order
    # (``setup_queue``). 0: no bound. `[media] setup_concurrency`.
    setup_concurrency: int = 16
    # A new viewer is refused (`server-busy`) while this node's event loop has used more
    # than this share of a core over the last 3 s (``admission``). 0: never refused.
    # `[media] admit_cpu`.
    admit_cpu: float = 0.0
    # How rooms get their transports; None: aiortc peer connections
    # (``transport.AiortcTransports`` over this configuration).
    transports: TransportFactory | None = field(default=None, compare=False)
