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
    # Answer a publisher's simulcast offer (rids): it then sends up to three streams.
    # layer_selection chooses one per viewer; False: the publisher sends one stream.
    simulcast: bool = True
    # How rooms get their transports; None: aiortc peer connections
    # (``transport.AiortcTransports`` over this configuration).
    transports: TransportFactory | None = field(default=None, compare=False)
