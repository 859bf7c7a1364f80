"""VP8 over RTP (RFC 7741): payload descriptors, frame reassembly, keyframe headers."""

from __future__ import annotations

from recorder.depacketizer import EncodedFrame, SequenceTracker
from recorder.errors import DepacketizeError

CLOCK_RATE = 90000
KEYFRAME_START_CODE = b"\x9d\x01\x2a"


def parse_descriptor(payload: bytes) -> tuple[bool, int, int]:
    """(start of partition, partition index, offset of the VP8 data) of one RTP payload."""
    if not payload:
        raise DepacketizeError("empty VP8 payload")
    first = payload[0]
    offset = 1
    if first & 0x80:  # X: extended control bits
        if len(payload) < 2:
            raise DepacketizeError("VP8 descriptor truncated in its extension")
        ext = payload[1]
        offset = 2
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            if len(payload) <= offset:
                raise DepacketizeError("VP8 descriptor truncated in its picture id")
            offset += 2 if payload[offset] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            offset += 1
        if ext & 0x30:  # T and/or K: TID/Y/KEYIDX
            offset += 1
    if offset >= len(payload):
        raise DepacketizeError("VP8 payload carries no data after its descriptor")
    return bool(first & 0x10), first & 0x07, offset


def keyframe_size(frame: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe header (RFC 6386 section 9.1), else None."""
    if len(frame) < 10 or frame[0] & 0x01 or frame[3:6] != KEYFRAME_START_CODE:
        return None
    width = int.from_bytes(frame[6:8], "little") & 0x3FFF
    height = int.from_bytes(frame[8:10], "little") & 0x3FFF
    return (width, height) if width and height else None


class Vp8Depacketizer:
    """Reassembles VP8 frames: packets of one timestamp, from the partition-0 start to the
    marker bit. A frame with a missing packet is dropped, never emitted half."""

    clock_rate = CLOCK_RATE

    def __init__(self) -> None:
        self._seq = SequenceTracker()
        self._timestamp: int | None = None
        self._parts: list[bytes] = []
        self._started = False
        self._broken = False
        self._arrival = 0.0
        self._loss = False
        self.dropped_frames = 0

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
            start, partition, offset = parse_descriptor(payload)
        except DepacketizeError:
            self._broken = True
        else:
            if start and partition == 0:
                if self._parts:
                    self._broken = True  # a second frame start under one timestamp
                self._started = True
            elif not self._started:
                self._broken = True  # the frame's first packet is missing
            self._parts.append(payload[offset:])
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
        self._parts = []
        self._started = False
        self._broken = False
        self._arrival = arrival

    def _finish(self, out: list[EncodedFrame], complete: bool) -> None:
        timestamp, self._timestamp = self._timestamp, None
        assert timestamp is not None
        if not (complete and self._started and not self._broken and self._parts):
            self.dropped_frames += 1
            self._loss = True
            return
        data = b"".join(self._parts)
        keyframe = not data[0] & 0x01
        out.append(EncodedFrame(timestamp, data, keyframe, self._loss, self._arrival,
                                keyframe_size(data) if keyframe else None))
        self._loss = False
