"""Opus over RTP (RFC 7587): how long one packet plays, from its TOC byte (RFC 6716 3.1)."""

from __future__ import annotations

MAX_PACKET_SAMPLES = 5760  # 120 ms at 48 kHz

_SILK_SAMPLES = (480, 960, 1920, 2880)
_HYBRID_SAMPLES = (480, 960)
_CELT_SAMPLES = (120, 240, 480, 960)


def packet_samples(packet: bytes) -> int:
    """Samples per channel at 48 kHz in one Opus packet; 0 if the packet is invalid."""
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
