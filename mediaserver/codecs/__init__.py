"""Codec payload knowledge, in one place: what a forwarder or recorder may know of a packet.

Nothing here decodes media. A ``PayloadParser`` reads a packet's payload descriptor
(and the first bytes of codec data) and returns ``PacketFlags``; a ``LayerSelector``
decides, per consumer, which packets that consumer receives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from mediaserver.keyframes import h264_keyframe_start, vp8_keyframe_start


@dataclass(frozen=True, slots=True)
class PacketFlags:
    """What one RTP payload says about its place in the video stream."""

    keyframe: bool = False  # the first packet of a keyframe: a decoder may start here
    start: bool = False  # the first packet of a frame
    temporal_id: int | None = None  # VP8 TID (None: no temporal layering signalled)
    layer_sync: bool = False  # VP8 Y bit: a switch up to this temporal layer is safe here
    tl0_pic_idx: int | None = None
    picture_id: int | None = None


NO_FLAGS = PacketFlags()
KEYFRAME_START = PacketFlags(keyframe=True, start=True)

PayloadParser = Callable[[bytes], PacketFlags]


class LayerSelector(Protocol):
    """Which packets one consumer receives (temporal and simulcast layers plug in here)."""

    def select(self, flags: PacketFlags) -> bool: ...


class ForwardAll:
    """The default selector: every packet."""

    __slots__ = ()

    def select(self, flags: PacketFlags) -> bool:
        return True


def _flags_from(detector: Callable[[bytes], bool]) -> PayloadParser:
    def parse(payload: bytes) -> PacketFlags:
        return KEYFRAME_START if detector(payload) else NO_FLAGS

    return parse


def payload_parser(codec_name: str) -> PayloadParser | None:
    """The parser for a video codec, or None when packets carry no flags (audio)."""
    name = codec_name.upper()
    if name == "VP8":
        return _flags_from(vp8_keyframe_start)
    if name == "H264":
        return _flags_from(h264_keyframe_start)
    return None


__all__ = ["KEYFRAME_START", "NO_FLAGS", "ForwardAll", "LayerSelector", "PacketFlags",
           "PayloadParser", "payload_parser"]
