"""PacketFlags: what one RTP payload says about its place in a video stream."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PacketFlags:
    """What one RTP payload says about its place in the video stream.

    Built once per video packet on the forwarding path and read by every consumer,
    so packets that say nothing share ``NO_FLAGS`` (and H.264 packets share the other
    constants below): most H.264 packets cost no allocation at all. A VP8 packet with
    a picture id (aiortc and libwebrtc always send one) gets its own instance.
    """

    keyframe: bool = False  # the first packet of a keyframe: a decoder may start here
    # The first packet of a frame. H.264: the packet's first NAL unit may open an access
    # unit, so an IDR slice sent after its parameter sets in their own packet is flagged too.
    start: bool = False
    temporal_id: int | None = None  # VP8 TID (None: no temporal layering signalled)
    layer_sync: bool = False  # VP8 Y bit: a switch up to this temporal layer is safe here
    tl0_pic_idx: int | None = None
    picture_id: int | None = None
    size: tuple[int, int] | None = None  # picture width, height: keyframe starts only
    spatial_id: int = 0  # simulcast: the stream (spatial layer) the packet came on, 0 lowest


NO_FLAGS = PacketFlags()
KEYFRAME_START = PacketFlags(keyframe=True, start=True)
FRAME_START = PacketFlags(start=True)

PayloadParser = Callable[[bytes], PacketFlags]
