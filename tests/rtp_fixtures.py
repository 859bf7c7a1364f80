"""Read the captured RTP fixtures of tests/fixtures/rtp/ (see the README.md there)."""

from __future__ import annotations

import struct
from pathlib import Path

from aiortc.rtp import RtpPacket

FIXTURES = Path(__file__).parent / "fixtures" / "rtp"


def rtp_packets(name: str) -> list[RtpPacket]:
    """The packets of one fixture file: 2-byte big-endian lengths, each before one packet."""
    data = (FIXTURES / name).read_bytes()
    packets, offset = [], 0
    while offset < len(data):
        (size,) = struct.unpack_from("!H", data, offset)
        packets.append(RtpPacket.parse(data[offset + 2:offset + 2 + size]))
        offset += 2 + size
    return packets


def frames_of(packets: list[RtpPacket]) -> list[list[RtpPacket]]:
    """Packets grouped by RTP timestamp, in order."""
    frames: list[list[RtpPacket]] = []
    for packet in packets:
        if frames and frames[-1][0].timestamp == packet.timestamp:
            frames[-1].append(packet)
        else:
            frames.append([packet])
    return frames
