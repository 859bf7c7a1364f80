"""Opus over RTP (RFC 7587): one packet is one frame; packet durations; the OpusHead header."""

from __future__ import annotations

import struct

from recorder.depacketizer import EncodedFrame, SequenceTracker

CLOCK_RATE = 48000
CHANNELS = 2  # WebRTC always signals opus/48000/2; mono packets decode in a stereo stream
MAX_PACKET_SAMPLES = 5760  # 120 ms

_SILK_SAMPLES = (480, 960, 1920, 2880)
_HYBRID_SAMPLES = (480, 960)
_CELT_SAMPLES = (120, 240, 480, 960)


def packet_samples(packet: bytes) -> int:
    """Samples per channel at 48 kHz in one Opus packet (RFC 6716 section 3.1); 0 if invalid."""
    if not packet:
        return 0
    toc = packet[0]
    config = toc >> 3
    if config < 12:
        per_frame = _SILK_SAMPLES[config % 4]
    elif config < 16:
        per_frame = _HYBRID_SAMPLES[config % 2]
    else:
        per_frame = _CELT_SAMPLES[config % 4]
    code = toc & 0x03
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    elif len(packet) < 2:
        return 0
    else:
        frames = packet[1] & 0x3F
    samples = per_frame * frames
    return samples if 0 < samples <= MAX_PACKET_SAMPLES else 0


def opus_head(channels: int = CHANNELS, pre_skip: int = 0, input_rate: int = CLOCK_RATE) -> bytes:
    """The 19-byte OpusHead identification header (RFC 7845 section 5.1), mapping family 0.

    WebM stores it as the track's CodecPrivate. Pre-skip is 0: RTP packets carry no
    encoder delay information, and 0 keeps audio aligned with its RTP timestamps.
    """
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, input_rate, 0, 0)


class OpusDepacketizer:
    clock_rate = CLOCK_RATE

    def __init__(self) -> None:
        self._seq = SequenceTracker()
        self._loss = False
        self.dropped_frames = 0

    def push(self, seq: int, timestamp: int, marker: bool, payload: bytes,
             arrival: float) -> list[EncodedFrame]:
        if self._seq.gap(seq):
            self._loss = True
        if not payload:
            return []
        samples = packet_samples(payload)
        if not samples:
            self.dropped_frames += 1
            self._loss = True
            return []
        frame = EncodedFrame(timestamp, payload, True, self._loss, arrival, None, samples)
        self._loss = False
        return [frame]

    def flush(self) -> list[EncodedFrame]:
        return []
