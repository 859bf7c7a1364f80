"""RTP packets in, whole encoded frames out (sans-I/O): the common part of every codec.

A depacketizer sees packets already put in sequence order by ``ReorderBuffer``.
It notices lost packets as jumps in sequence numbers, never emits a frame it
knows to be incomplete, and marks the first frame after a loss with
``after_loss`` so that the caller can wait for the next keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from recorder.errors import UnsupportedCodecError


@dataclass(frozen=True)
class EncodedFrame:
    timestamp: int  # RTP timestamp (32 bits)
    data: bytes  # VP8 frame, H.264 access unit in Annex B, or one Opus packet
    keyframe: bool
    after_loss: bool  # packets (or whole frames) were lost since the previous frame
    arrival: float  # wall-clock arrival of the frame's first packet (Unix seconds)
    size: tuple[int, int] | None = None  # picture width, height (video keyframes)
    duration: int = 0  # in RTP clock units when the payload says so (Opus), else 0


class Depacketizer(Protocol):
    clock_rate: int
    dropped_frames: int  # frames known to be incomplete, never emitted

    def push(self, seq: int, timestamp: int, marker: bool, payload: bytes,
             arrival: float) -> list[EncodedFrame]: ...

    def flush(self) -> list[EncodedFrame]: ...


class SequenceTracker:
    """Notices gaps in consecutive sequence numbers."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: int | None = None

    def gap(self, seq: int) -> bool:
        last, self.last = self.last, seq
        return last is not None and seq != (last + 1) & 0xFFFF


def depacketizer_for(codec_name: str) -> Depacketizer:
    """A fresh depacketizer for a producer's codec (VP8, H264 or opus)."""
    from recorder.h264 import H264Depacketizer
    from recorder.opus import OpusDepacketizer
    from recorder.vp8 import Vp8Depacketizer

    name = codec_name.upper()
    if name == "VP8":
        return Vp8Depacketizer()
    if name == "H264":
        return H264Depacketizer()
    if name == "OPUS":
        return OpusDepacketizer()
    raise UnsupportedCodecError(f"no remuxing support for {codec_name!r}")
