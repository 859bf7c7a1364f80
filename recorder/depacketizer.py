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


class PartialFrame(Protocol):
    """The packets of one video frame so far, in one codec."""

    def add(self, payload: bytes) -> None: ...  # ValueError: the packet cannot belong here

    def encoded(self, timestamp: int, after_loss: bool, arrival: float) -> EncodedFrame | None:
        ...  # None: the frame is unfinished


def gap(last: int | None, seq: int) -> bool:
    """True when ``seq`` does not follow ``last`` (a packet was lost in between)."""
    return last is not None and seq != (last + 1) & 0xFFFF


class FrameAssembler:
    """Packets of one RTP timestamp make a frame, the marker bit ends it, a sequence
    gap or an unparsable payload breaks it, and a broken or unfinished frame is
    counted and dropped, never emitted. ``new_frame`` supplies the codec's part."""

    clock_rate = 90000

    def __init__(self, new_frame: Callable[[], PartialFrame]) -> None:
        self._new_frame = new_frame
        self._last: int | None = None
        self._frame: PartialFrame | None = None
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
        encoded = None
        if complete and not self._broken:
            encoded = frame.encoded(self._timestamp, self._loss, self._arrival)
        if encoded is None:
            self.dropped_frames += 1
        else:
            out.append(encoded)
        self._loss = encoded is None


class Vp8Frame:
    """A VP8 frame (RFC 7741): from the partition-0 start packet to the marker."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def add(self, payload: bytes) -> None:
        descriptor = vp8.Vp8Descriptor.parse(payload)
        if descriptor.frame_start == bool(self.parts):
            raise ValueError("a second frame start" if self.parts else "the frame start is lost")
        self.parts.append(payload[descriptor.offset:])

    def encoded(self, timestamp: int, after_loss: bool, arrival: float) -> EncodedFrame | None:
        if not self.parts:
            return None
        data = b"".join(self.parts)
        keyframe = vp8.is_keyframe(data)
        size = vp8.keyframe_size(data) if keyframe else None
        return EncodedFrame(timestamp, data, keyframe, after_loss, arrival, size)


class Vp8Depacketizer(FrameAssembler):
    def __init__(self) -> None:
        super().__init__(Vp8Frame)


class H264Frame:
    """An H.264 access unit (RFC 6184 mode 1) in Annex B; an IDR picture sent without
    parameter sets gets the latest ones seen, so every keyframe decodes on its own."""

    def __init__(self, params: H264Depacketizer) -> None:
        self.params = params
        self.nals: list[bytes] = []
        self.fragment: bytearray | None = None

    def add(self, payload: bytes) -> None:
        part = h264.H264Payload.parse(payload)
        if part.fragment is None:
            if self.fragment is not None:
                self.fragment = None
                raise ValueError("FU-A interrupted before its end fragment")
            for nal in part.units:
                self._add_nal(nal)
            return
        if part.first_fragment == (self.fragment is not None):  # a second start or a lost one
            self.fragment = None
            raise ValueError("FU-A fragments out of order")
        fragment = self.fragment = bytearray() if self.fragment is None else self.fragment
        fragment += part.fragment
        if part.last_fragment:
            self.fragment = None
            self._add_nal(bytes(fragment))

    def _add_nal(self, nal: bytes) -> None:
        if not self.nals and not h264.starts_access_unit(nal):
            raise ValueError("the access unit's first packets are lost")
        self.nals.append(nal)

    def encoded(self, timestamp: int, after_loss: bool, arrival: float) -> EncodedFrame | None:
        if self.fragment is not None or not self.nals:
            return None
        nals, params = self.nals, self.params
        types = {h264.nal_type(nal): nal for nal in nals}  # the last NAL unit of each type
        params.sps = types.get(h264.NAL_SPS, params.sps)
        params.pps = types.get(h264.NAL_PPS, params.pps)
        keyframe, size = h264.NAL_IDR in types, None
        if keyframe and h264.NAL_SPS not in types:
            if params.sps is None or params.pps is None:
                keyframe = False  # no parameter sets yet: not decodable on its own
            else:
                nals = [params.sps, params.pps, *nals]
        if keyframe and params.sps is not None:
            try:
                size = h264.sps_size(params.sps)
            except ValueError:
                keyframe = False
        data = b"".join(h264.START_CODE + nal for nal in nals)
        return EncodedFrame(timestamp, data, keyframe, after_loss, arrival, size)


class H264Depacketizer(FrameAssembler):
    def __init__(self) -> None:
        self.sps: bytes | None = None
        self.pps: bytes | None = None
        super().__init__(lambda: H264Frame(self))


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
