"""RTP packets in, whole encoded frames out (sans-I/O): the common part of every codec.

A depacketizer sees packets already put in sequence order by ``ReorderBuffer``.
It notices lost packets as jumps in sequence numbers, never emits a frame it
knows to be incomplete, and marks the first frame after a loss with
``after_loss`` so that the caller can wait for the next keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from recorder.errors import DepacketizeError, UnsupportedCodecError


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


class FrameAssembler:
    """The bookkeeping VP8 and H.264 share: packets of one RTP timestamp make a frame,
    the marker bit ends it, a sequence gap or an unparsable payload breaks it, and a
    broken or unfinished frame is counted and dropped, never emitted.

    A codec supplies ``_reset_frame`` (clear its parts), ``_add_payload`` (raise
    DepacketizeError when the payload cannot belong to the frame), ``_frame_ready``
    and ``_emit``; it sets ``_started`` when it sees the frame's first packet.
    """

    clock_rate: int

    def __init__(self) -> None:
        self._seq = SequenceTracker()
        self._timestamp: int | None = None
        self._started = False
        self._broken = False
        self._arrival = 0.0
        self._loss = False
        self.dropped_frames = 0
        self._reset_frame()

    def push(self, seq: int, timestamp: int, marker: bool, payload: bytes,
             arrival: float) -> list[EncodedFrame]:
        gap = self._seq.gap(seq)
        if not payload:  # padding: takes a sequence number, carries no media
            if gap:
                self._loss = True
                self._broken = self._broken or self._timestamp is not None
            return []
        out: list[EncodedFrame] = []
        if gap:
            self._loss = True
        if self._timestamp is not None and timestamp != self._timestamp:
            # The previous frame never saw its marker: complete only if nothing was lost.
            self._finish(out, complete=not gap)
        if self._timestamp is None:
            self._begin(timestamp, arrival)
        elif gap:
            self._broken = True
        try:
            self._add_payload(payload)
        except DepacketizeError:
            self._broken = True
        if marker:
            self._finish(out, complete=True)
        return out

    def flush(self) -> list[EncodedFrame]:
        out: list[EncodedFrame] = []
        if self._timestamp is not None:
            self._finish(out, complete=False)
        return out

    def _begin(self, timestamp: int, arrival: float) -> None:
        self._timestamp = timestamp
        self._started = False
        self._broken = False
        self._arrival = arrival
        self._reset_frame()

    def _finish(self, out: list[EncodedFrame], complete: bool) -> None:
        timestamp, self._timestamp = self._timestamp, None
        assert timestamp is not None
        if not (complete and self._started and not self._broken and self._frame_ready()):
            self._reset_frame()
            self.dropped_frames += 1
            self._loss = True
            return
        out.append(self._emit(timestamp, self._loss, self._arrival))
        self._loss = False

    def _reset_frame(self) -> None:
        raise NotImplementedError

    def _add_payload(self, payload: bytes) -> None:
        raise NotImplementedError

    def _frame_ready(self) -> bool:
        raise NotImplementedError

    def _emit(self, timestamp: int, after_loss: bool, arrival: float) -> EncodedFrame:
        raise NotImplementedError


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
