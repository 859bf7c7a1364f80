"""Rewrite forwarded RTP packets for one consumer (sans-I/O).

A forwarded packet keeps its payload byte for byte; only the header changes: the
consumer's own SSRC and payload type, a sequence number and timestamp shifted by
per-consumer offsets (so every subscriber sees a gap-free stream that starts where
it joined), and the header extensions re-numbered to the IDs that subscriber
negotiated. Building the header with one ``struct.pack`` and concatenating the
payload is the cheapest thing CPython can do per copy; no ``RtpPacket`` objects
are created on the hot path.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_HEADER = struct.Struct("!BBHII")
RTP_VERSION_BITS = 0x80
EXTENSION_BIT = 0x10
PADDING_BIT = 0x20
ONE_BYTE_PROFILE = b"\xbe\xde"

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"


@dataclass(frozen=True)
class ExtensionIds:
    """Header extension IDs one subscriber negotiated (0 or None: not negotiated)."""

    mid: int | None = None
    abs_send_time: int | None = None
    audio_level: int | None = None

    @classmethod
    def from_uris(cls, uri_to_id: dict[str, int]) -> ExtensionIds:
        return cls(
            mid=uri_to_id.get(MID_URI),
            abs_send_time=uri_to_id.get(ABS_SEND_TIME_URI),
            audio_level=uri_to_id.get(AUDIO_LEVEL_URI),
        )


def build_extensions(
    ids: ExtensionIds,
    mid: bytes | None,
    abs_send_time: int | None,
    audio_level: tuple[bool, int] | None,
) -> bytes:
    """Serialise a one-byte-header extension block (RFC 8285), or b"" when empty."""
    out = bytearray()
    if ids.mid and mid:
        if not 1 <= len(mid) <= 16:
            raise ValueError(f"mid must be 1 to 16 bytes, got {len(mid)}")
        out.append((ids.mid << 4) | (len(mid) - 1))
        out += mid
    if ids.abs_send_time and abs_send_time is not None:
        out.append((ids.abs_send_time << 4) | 2)
        out += (abs_send_time & 0xFFFFFF).to_bytes(3, "big")
    if ids.audio_level and audio_level is not None:
        vad, level = audio_level
        out.append(ids.audio_level << 4)
        out.append((0x80 if vad else 0) | (level & 0x7F))
    if not out:
        return b""
    out += bytes(-len(out) % 4)
    return ONE_BYTE_PROFILE + (len(out) // 4).to_bytes(2, "big") + bytes(out)


def padding_bytes(size: int) -> bytes:
    """RTP padding of ``size`` bytes, the last one holding the count (RFC 3550 5.1)."""
    if not 1 <= size <= 255:
        raise ValueError(f"padding size must be 1 to 255, got {size}")
    return bytes(size - 1) + bytes([size])


def seq_newer_or_equal(a: int, b: int) -> bool:
    """True when 16-bit sequence number ``a`` is at or after ``b`` (with wrap-around)."""
    return ((a - b) & 0xFFFF) < 0x8000


class RtpRewriter:
    """Maps one producer's sequence/timestamp space onto one consumer's.

    ``start`` is called with the first packet forwarded to the consumer (a keyframe
    for video); packets older than that are never forwarded, so the subscriber sees
    a stream that begins at its chosen initial sequence number.
    """

    __slots__ = ("_seq_offset", "_start_seq", "_ts_offset", "payload_type", "ssrc", "started")

    def __init__(self, ssrc: int, payload_type: int, initial_seq: int, initial_ts: int) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self._seq_offset = initial_seq & 0xFFFF
        self._ts_offset = initial_ts & 0xFFFFFFFF
        self._start_seq = 0
        self.started = False

    def start(self, in_seq: int, in_ts: int) -> None:
        """Anchor the mapping so that (in_seq, in_ts) maps to the initial values."""
        self._seq_offset = (self._seq_offset - in_seq) & 0xFFFF
        self._ts_offset = (self._ts_offset - in_ts) & 0xFFFFFFFF
        self._start_seq = in_seq
        self.started = True

    def accepts(self, in_seq: int) -> bool:
        """A packet from before the anchor (a late retransmission) is not forwarded."""
        return self.started and seq_newer_or_equal(in_seq, self._start_seq)

    def out_seq(self, in_seq: int) -> int:
        return (in_seq + self._seq_offset) & 0xFFFF

    def out_ts(self, in_ts: int) -> int:
        return (in_ts + self._ts_offset) & 0xFFFFFFFF

    def rewrite(
        self, marker: int, in_seq: int, in_ts: int, extensions: bytes, payload: bytes
    ) -> tuple[int, bytes]:
        """Return (out_seq, packet bytes) for one forwarded copy."""
        seq = (in_seq + self._seq_offset) & 0xFFFF
        header = RTP_HEADER.pack(
            RTP_VERSION_BITS | EXTENSION_BIT if extensions else RTP_VERSION_BITS,
            (marker << 7) | self.payload_type,
            seq,
            (in_ts + self._ts_offset) & 0xFFFFFFFF,
            self.ssrc,
        )
        return seq, header + extensions + payload


def rtp_payload_offset(packet: bytes) -> int:
    """Offset of the payload in a serialised RTP packet (after CSRCs and extensions)."""
    if len(packet) < 12 or packet[0] >> 6 != 2:
        raise ValueError("not an RTP packet")
    offset = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & EXTENSION_BIT:
        if len(packet) < offset + 4:
            raise ValueError("RTP extension header truncated")
        offset += 4 + 4 * int.from_bytes(packet[offset + 2 : offset + 4], "big")
    if offset > len(packet):
        raise ValueError("RTP header longer than packet")
    return offset


def wrap_rtx(packet: bytes, rtx_payload_type: int, rtx_seq: int, rtx_ssrc: int) -> bytes:
    """Wrap a forwarded packet for retransmission on the RTX stream (RFC 4588).

    The RTX payload is the original sequence number followed by the original
    payload; header extensions are kept so the subscriber can still demux by mid.
    """
    offset = rtp_payload_offset(packet)
    original_seq = packet[2:4]
    b0 = packet[0] & ~PADDING_BIT
    payload_end = len(packet)
    if packet[0] & PADDING_BIT:
        payload_end -= packet[-1]
    header = RTP_HEADER.pack(
        b0,
        (packet[1] & 0x80) | rtx_payload_type,
        rtx_seq & 0xFFFF,
        int.from_bytes(packet[4:8], "big"),
        rtx_ssrc,
    )
    return header + packet[12:offset] + original_seq + packet[offset:payload_end]
