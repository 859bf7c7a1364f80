"""RTP packets in, whole encoded frames out (sans-I/O), for VP8, H.264 and Opus.

A depacketizer sees packets already put in sequence order by ``ReorderBuffer``.
It notices lost packets as jumps in sequence numbers, never emits a frame it
knows to be incomplete, and marks the first frame after a loss with
``after_loss`` so that the caller can wait for the next keyframe. Payloads are
read with ``mediaserver.codecs``; only the frame bookkeeping lives here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from mediaserver.codecs import h264, opus, vp8
from mediaserver.codecs.frame import FrameBuilder
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


def gap(last: int | None, seq: int) -> bool:
    """True when ``seq`` does not follow ``last`` (a packet was lost in between)."""
    return last is not None and seq != (last + 1) & 0xFFFF


class FrameAssembler:
    """Packets of one RTP timestamp make a frame, the marker bit ends it, a sequence
    gap or an unparsable payload breaks it, and a broken or unfinished frame is
    counted and dropped, never emitted. ``new_frame`` gives the codec's builder."""

    clock_rate = 90000

    def __init__(self, new_frame: Callable[[], FrameBuilder]) -> None:
        self._new_frame = new_frame
        self._last: int | None = None
        self._frame: FrameBuilder | None = None
        self._timestamp = 0
        self._broken = self._loss = False
        self._arrival = 0.0
        self.dropped_frames = 0

    def push(self, seq: int, timestamp: int, marker: bool, payload: bytes,
             arrival: float) -> list[EncodedFrame]:
        lost, self._last = gap(self._last, seq), seq
        self._loss = self._loss or lost
        if not payload:  # padding: takes a sequence number, carries no media
            self._broken = self._broken or (lost and self._frame is not None)
            return []
        out: list[EncodedFrame] = []
        if self._frame is not None and timestamp != self._timestamp:
            # The previous frame never saw its marker: complete only if nothing was lost.
            self._finish(out, complete=not lost)
        if self._frame is None:
            self._frame, self._timestamp, self._arrival = self._new_frame(), timestamp, arrival
            self._broken = False
        elif lost:
            self._broken = True
        try:
            self._frame.add(payload)
        except ValueError:
            self._broken = True
        if marker:
            self._finish(out, complete=True)
        return out

    def flush(self) -> list[EncodedFrame]:
        out: list[EncodedFrame] = []
        if self._frame is not None:
            self._finish(out, complete=False)
        return out

    def _finish(self, out: list[EncodedFrame], complete: bool) -> None:
        frame, self._frame = self._frame, None
        assert frame is not None
        coded = frame.finish() if complete and not self._broken else None
        if coded is None:
            self.dropped_frames += 1
        else:
            out.append(EncodedFrame(self._timestamp, coded.data, coded.keyframe, self._loss,
                                    self._arrival, coded.size))
        self._loss = coded is None


class Vp8Depacketizer(FrameAssembler):
    def __init__(self) -> None:
        super().__init__(vp8.Vp8FrameBuilder)


class H264Depacketizer(FrameAssembler):
    def __init__(self) -> None:
        self.params = h264.ParameterSets()
        super().__init__(lambda: h264.H264FrameBuilder(self.params))


class OpusDepacketizer:
    """Opus (RFC 7587): one packet is one frame, its duration read from its TOC byte."""

    clock_rate = 48000

    def __init__(self) -> None:
        self._last: int | None = None
        self._loss = False
        self.dropped_frames = 0

    def push(self, seq: int, timestamp: int, marker: bool, payload: bytes,
             arrival: float) -> list[EncodedFrame]:
        self._loss, self._last = gap(self._last, seq) or self._loss, seq
        if not payload:
            return []
        samples = opus.packet_samples(payload)
        if not samples:
            self.dropped_frames += 1
            self._loss = True
            return []
        frame = EncodedFrame(timestamp, payload, True, self._loss, arrival, None, samples)
        self._loss = False
        return [frame]

    def flush(self) -> list[EncodedFrame]:
        return []


def depacketizer_for(codec_name: str) -> Depacketizer:
    """A fresh depacketizer for a producer's codec (VP8, H264 or opus)."""
    factories: dict[str, Callable[[], Depacketizer]] = {
        "VP8": Vp8Depacketizer, "H264": H264Depacketizer, "OPUS": OpusDepacketizer}
    factory = factories.get(codec_name.upper())
    if factory is None:
        raise UnsupportedCodecError(f"no remuxing support for {codec_name!r}")
    return factory()
