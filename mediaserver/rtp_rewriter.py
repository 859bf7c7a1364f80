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

import collections
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


# How far behind the newest packet a late packet (a publisher retransmission, a reordered
# one) may still be placed in a consumer's sequence space: skipped numbers are remembered
# this far back. At 1.5 Mbit/s that is about three seconds of video.
LATE_WINDOW = 2048


class RtpRewriter:
    """Maps one producer's sequence/timestamp space onto one consumer's.

    ``start`` is called with the first packet forwarded to the consumer (a keyframe
    for video); packets older than that are never forwarded, so the subscriber sees
    a stream that begins at its chosen initial sequence number.

    When a layer selector drops packets, ``skip`` takes each dropped number out of the
    output space: the output stays gap-free, so the subscriber never NACKs what it was
    never meant to get. The skipped numbers of the last ``LATE_WINDOW`` packets are
    remembered: ``sequence`` refuses a late original or a retransmission of one of them,
    and places any other late packet in the slot its number had (counting the numbers
    skipped after it). ``switch_source`` re-anchors the mapping on another stream (a
    simulcast switch) so numbers and timestamps continue where the last packet left off.
    """

    __slots__ = ("_dropped", "_last_ts", "_newest", "_seq_offset", "_start_seq", "_ts_offset",
                 "payload_type", "ssrc", "started")

    def __init__(self, ssrc: int, payload_type: int, initial_seq: int, initial_ts: int) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self._seq_offset = initial_seq & 0xFFFF
        self._ts_offset = initial_ts & 0xFFFFFFFF
        self._start_seq = 0
        self._newest = 0  # the newest input number placed or skipped
        self._last_ts = 0  # the input timestamp of the newest packet placed
        # Skipped input numbers, oldest first, none older than LATE_WINDOW behind _newest.
        self._dropped: collections.deque[int] = collections.deque()
        self.started = False

    def start(self, in_seq: int, in_ts: int) -> None:
        """Anchor the mapping so that (in_seq, in_ts) maps to the initial values."""
        self._seq_offset = (self._seq_offset - in_seq) & 0xFFFF
        self._ts_offset = (self._ts_offset - in_ts) & 0xFFFFFFFF
        self._start_seq = in_seq
        self._newest = (in_seq - 1) & 0xFFFF
        self._last_ts = in_ts
        self.started = True

    def accepts(self, in_seq: int) -> bool:
        """A packet from before the anchor (a late retransmission) is not forwarded."""
        return self.started and seq_newer_or_equal(in_seq, self._start_seq)

    def is_new(self, in_seq: int) -> bool:
        """True when ``in_seq`` is newer than every packet placed or skipped so far."""
        return 0 < ((in_seq - self._newest) & 0xFFFF) < 0x8000

    def skip(self, in_seq: int) -> None:
        """Take a dropped packet out of the output space (only new packets: ``is_new``)."""
        if not self.is_new(in_seq):
            return
        self._newest = in_seq
        self._seq_offset = (self._seq_offset - 1) & 0xFFFF
        dropped = self._dropped
        dropped.append(in_seq)
        while ((in_seq - dropped[0]) & 0xFFFF) > LATE_WINDOW:
            dropped.popleft()

    def sequence(self, in_seq: int, in_ts: int) -> int:
        """The output number of a packet to forward, or -1 when it must not be forwarded:
        before the anchor, skipped, or too late to place."""
        if not self.started:
            return -1
        ahead = (in_seq - self._newest) & 0xFFFF
        if 0 < ahead < 0x8000:  # the usual case: newer than anything so far
            self._newest = in_seq
            self._last_ts = in_ts
            return (in_seq + self._seq_offset) & 0xFFFF
        if not seq_newer_or_equal(in_seq, self._start_seq):
            return -1
        behind = (self._newest - in_seq) & 0xFFFF
        if not self._dropped:
            return (in_seq + self._seq_offset) & 0xFFFF
        if behind > LATE_WINDOW:
            return -1
        later = 0
        for dropped in reversed(self._dropped):
            distance = (self._newest - dropped) & 0xFFFF
            if distance > behind:
                break
            if distance == behind:
                return -1  # the packet was skipped: its slot is gone
            later += 1
        return (in_seq + self._seq_offset + later) & 0xFFFF

    def switch_source(self, in_seq: int, in_ts: int, ts_advance: int) -> None:
        """Continue the output from another input stream (a simulcast layer switch).

        ``in_seq``/``in_ts`` (the new stream's switching packet, a keyframe start) map to
        the number after the last one sent and to the last timestamp plus ``ts_advance``
        (the time since the last frame, in clock-rate units), so the subscriber sees one
        continuous stream.
        """
        last_out_seq = (self._newest + self._seq_offset) & 0xFFFF
        last_out_ts = (self._last_ts + self._ts_offset) & 0xFFFFFFFF
        self._seq_offset = (last_out_seq + 1 - in_seq) & 0xFFFF
        self._ts_offset = (last_out_ts + ts_advance - in_ts) & 0xFFFFFFFF
        self._dropped.clear()
        self._start_seq = in_seq
        self._newest = (in_seq - 1) & 0xFFFF
        self._last_ts = in_ts

    @property
    def last_in_ts(self) -> int:
        """The input timestamp of the newest packet placed (the current source's clock)."""
        return self._last_ts

    def out_seq(self, in_seq: int) -> int:
        return (in_seq + self._seq_offset) & 0xFFFF

    def out_ts(self, in_ts: int) -> int:
        return (in_ts + self._ts_offset) & 0xFFFFFFFF

    def rewrite(
        self, marker: int, in_seq: int, in_ts: int, extensions: bytes, payload: bytes
    ) -> tuple[int, bytes]:
        """Return (out_seq, packet bytes) for one forwarded copy, at a fixed offset."""
        seq = (in_seq + self._seq_offset) & 0xFFFF
        return seq, self.packet(marker, seq, in_ts, extensions, payload)

    def packet(self, marker: int, out_seq: int, in_ts: int, extensions: bytes,
               payload: bytes) -> bytes:
        """The bytes of one forwarded copy numbered ``out_seq`` (from ``sequence``)."""
        header = RTP_HEADER.pack(
            RTP_VERSION_BITS | EXTENSION_BIT if extensions else RTP_VERSION_BITS,
            (marker << 7) | self.payload_type,
            out_seq,
            (in_ts + self._ts_offset) & 0xFFFFFFFF,
            self.ssrc,
        )
        return header + extensions + payload


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
