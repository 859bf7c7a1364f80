"""VP8 over RTP (RFC 7741): payload descriptors, frame reassembly, keyframe headers."""

from __future__ import annotations

from recorder.depacketizer import EncodedFrame, FrameAssembler
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


class Vp8Depacketizer(FrameAssembler):
    """Reassembles VP8 frames: packets of one timestamp, from the partition-0 start to the
    marker bit. A frame with a missing packet is dropped, never emitted half."""

    clock_rate = CLOCK_RATE

    def _reset_frame(self) -> None:
        self._parts: list[bytes] = []

    def _add_payload(self, payload: bytes) -> None:
        start, partition, offset = parse_descriptor(payload)
        if start and partition == 0:
            if self._parts:
                self._broken = True  # a second frame start under one timestamp
            self._started = True
        elif not self._started:
            self._broken = True  # the frame's first packet is missing
        self._parts.append(payload[offset:])

    def _frame_ready(self) -> bool:
        return bool(self._parts)

    def _emit(self, timestamp: int, after_loss: bool, arrival: float) -> EncodedFrame:
        data = b"".join(self._parts)
        keyframe = not data[0] & 0x01
        return EncodedFrame(timestamp, data, keyframe, after_loss, arrival,
                            keyframe_size(data) if keyframe else None)
