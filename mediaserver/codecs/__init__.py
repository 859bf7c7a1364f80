"""Codec payload knowledge, in one place: what a forwarder or recorder may know of a packet.

Nothing here decodes media. A ``PayloadParser`` reads a packet's payload descriptor
(and the first bytes of codec data) and returns ``PacketFlags``; a ``LayerSelector``
decides, per consumer, which packets that consumer receives. ``vp8`` and ``h264``
also hold the strict parsers the recorder reassembles frames with.
"""

from __future__ import annotations

from mediaserver.codecs.flags import (
    FRAME_START,
    KEYFRAME_START,
    NO_FLAGS,
    PacketFlags,
    PayloadParser,
)
from mediaserver.codecs.h264 import h264_flags
from mediaserver.codecs.layers import (
    ForwardAll,
    LayerSelector,
    SimulcastSelector,
    TemporalLayerSelector,
)
from mediaserver.codecs.vp8 import PictureIdRewriter, vp8_flags


def payload_parser(codec_name: str) -> PayloadParser | None:
    """The parser for a video codec, or None when packets carry no flags (audio).

    Parsers are pure functions of the payload and never raise: a malformed payload
    gives ``NO_FLAGS``.
    """
    name = codec_name.upper()
    if name == "VP8":
        return vp8_flags
    if name == "H264":
        return h264_flags
    return None


__all__ = ["FRAME_START", "KEYFRAME_START", "NO_FLAGS", "ForwardAll", "LayerSelector",
           "PacketFlags", "PayloadParser", "PictureIdRewriter", "SimulcastSelector",
           "TemporalLayerSelector", "payload_parser"]
