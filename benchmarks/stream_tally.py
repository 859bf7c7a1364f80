"""What a light viewer learns from the SRTP datagrams it receives (sans-I/O).

SRTP encrypts the RTP payload only: the 12-byte header (sequence number, marker bit,
SSRC) is plaintext. ``StreamTally`` counts a viewer's stream from those headers
alone, one call per datagram and no decryption: packets, payload bytes, frames
(marker bits), losses (sequence gaps, 16-bit wraparound included), reordered and
duplicated packets, packets of another SSRC, RTCP. It picks the few datagrams worth
decrypting; ``SampleCheck`` decrypts those with the session's SRTP key (pylibsrtp)
and checks that they are the expected VP8 stream: a valid payload descriptor, and
the keyframe header's picture size.

Which datagrams are sampled: the stream's first packet (the server starts a viewer's
video at a keyframe, so it must be a keyframe start), every ``sample_every``-th
packet, and the first packet of every frame of at least ``big_frame_packets``
packets (keyframes are several times larger than the other frames, so this catches
the keyframes without decrypting the rest). libsrtp guesses the rollover counter
from the previous packet it authenticated, so the samples must be less than 2**15
sequence numbers apart, which they are.
"""

from __future__ import annotations

import struct

import pylibsrtp

from mediaserver.codecs.vp8 import Vp8Descriptor, keyframe_size

RTP_HEADER = struct.Struct("!BBH4xI")  # V/P/X/CC, M/PT, sequence number, (timestamp), SSRC
SEQUENCE_MOD = 1 << 16
HALF = 1 << 15
# Missing sequence numbers remembered (to tell a late packet from a duplicate):
# at most this far behind the highest one received.
REORDER_WINDOW = 1024
SRTP_TAG_LENGTHS = {
    pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80: 10,
    pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32: 4,
    pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM: 16,
    pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM: 16,
}


def is_rtcp(datagram: bytes) -> bool:
    """RFC 5761 demultiplexing: RTCP packet types 192-223 sit where RTP has M/PT."""
    return 192 <= datagram[1] <= 223


def rtp_header_length(packet: bytes) -> int:
    """Fixed header, CSRCs and header extension; ValueError when ``packet`` is shorter."""
    if len(packet) < 12:
        raise ValueError("shorter than an RTP header")
    length = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:
        if len(packet) < length + 4:
            raise ValueError("RTP header extension truncated")
        length += 4 + 4 * int.from_bytes(packet[length + 2:length + 4], "big")
    if len(packet) < length:
        raise ValueError("RTP header longer than the packet")
    return length


class StreamTally:
    """Counts one SSRC's SRTP stream from plaintext headers; picks datagrams to sample.

    ``feed`` takes every SRTP/SRTCP datagram (first byte 128-191) and returns the
    datagram to decrypt now, if any. ``packets`` counts distinct sequence numbers;
    ``lost`` is expected minus received, where expected spans the first to the highest
    sequence number (RFC 3550 appendix A.3).
    """

    __slots__ = ("_frame_first", "_frame_packets", "_missing", "_next_sequence",
                 "_until_sample", "base", "big_frame_packets", "bytes", "duplicates",
                 "foreign", "frames", "highest", "late", "overhead", "packets", "reordered",
                 "rtcp", "sample_every", "ssrc")

    def __init__(self, ssrc: int, overhead: int = 10, sample_every: int = 100,
                 big_frame_packets: int = 15) -> None:
        self.ssrc = ssrc
        self.overhead = overhead  # SRTP authentication tag after the payload
        self.sample_every = sample_every
        self.big_frame_packets = big_frame_packets
        self.packets = 0
        self.bytes = 0  # RTP payload bytes (padding included)
        self.frames = 0
        self.duplicates = 0
        self.reordered = 0
        self.late = 0  # older than the first packet, or than the reorder window
        self.foreign = 0  # RTP of another SSRC
        self.rtcp = 0
        self.base: int | None = None  # extended sequence numbers
        self.highest = -1
        self._next_sequence = -1  # 16-bit sequence number that continues the stream
        self._missing: set[int] = set()
        self._until_sample = 1
        self._frame_first: bytes | None = None
        self._frame_packets = 0

    @property
    def expected(self) -> int:
        return 0 if self.base is None else self.highest - self.base + 1

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.packets)

    def feed(self, datagram: bytes) -> bytes | None:
        """Count one datagram; returns a datagram of this stream to decrypt, or None."""
        if len(datagram) < 12:
            self.foreign += 1
            return None
        first, second, sequence, ssrc = RTP_HEADER.unpack_from(datagram)
        if 192 <= second <= 223:
            self.rtcp += 1
            return None
        if ssrc != self.ssrc:
            self.foreign += 1
            return None
        if sequence == self._next_sequence:
            self._next_sequence = (sequence + 1) & 0xFFFF
            self.highest += 1
        elif not self._out_of_order(sequence):
            return None
        self.packets += 1
        header = 12 + 4 * (first & 0x0F)
        if first & 0x10 and len(datagram) >= header + 4:  # X: a header extension
            header += 4 + 4 * ((datagram[header + 2] << 8) | datagram[header + 3])
        self.bytes += max(0, len(datagram) - header - self.overhead)
        return self._frame(datagram, second & 0x80)

    def _out_of_order(self, sequence: int) -> bool:
        """A packet other than the next one: True when it is new (first, after a gap,
        or a late one filling a gap), False for a duplicate or a too-late packet."""
        if self.base is None:
            self.base = self.highest = sequence
            self._next_sequence = (sequence + 1) & 0xFFFF
            return True
        delta = (sequence - self.highest) % SEQUENCE_MOD
        if 0 < delta < HALF:  # ahead: delta - 1 packets missing
            self._missing.update(range(max(self.highest + 1, self.highest + delta - REORDER_WINDOW),
                                       self.highest + delta))
            self.highest += delta
            self._next_sequence = (sequence + 1) & 0xFFFF
            if len(self._missing) > 2 * REORDER_WINDOW:
                floor = self.highest - REORDER_WINDOW
                self._missing = {s for s in self._missing if s > floor}
            return True
        extended = self.highest - (SEQUENCE_MOD - delta) % SEQUENCE_MOD
        if extended in self._missing:
            self._missing.discard(extended)
            self.reordered += 1
            return True
        if extended < self.base or extended <= self.highest - REORDER_WINDOW:
            self.late += 1
        else:
            self.duplicates += 1
        return False

    def _frame(self, datagram: bytes, marker: int) -> bytes | None:
        """Frame accounting and the choice of sample, for a new packet of the stream."""
        if self._frame_packets == 0:
            self._frame_first = datagram
        self._frame_packets += 1
        self._until_sample -= 1
        sample = None
        if self._until_sample == 0:
            self._until_sample = self.sample_every
            sample = datagram
            if datagram is self._frame_first:
                self._frame_first = None  # sampled already
        if marker:
            self.frames += 1
            if self._frame_packets >= self.big_frame_packets and self._frame_first is not None:
                sample = self._frame_first
            self._frame_packets = 0
            self._frame_first = None
        return sample

    def as_json(self) -> dict[str, int]:
        return {"packets": self.packets, "bytes": self.bytes, "frames": self.frames,
                "expected": self.expected, "lost": self.lost, "duplicates": self.duplicates,
                "reordered": self.reordered, "late": self.late, "foreign": self.foreign,
                "rtcp": self.rtcp}


class SampleCheck:
    """Decrypts sampled SRTP datagrams with the session's receive key and checks the VP8.

    ``key`` is the SRTP master key and salt, ``profile`` a ``pylibsrtp.Policy``
    profile; ``size`` the picture size every keyframe must have (None: any). The
    first datagram checked must be a keyframe start. A wrong key fails every sample.
    """

    def __init__(self, key: bytes, profile: int, size: tuple[int, int] | None) -> None:
        policy = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                                  srtp_profile=profile)
        policy.window_size = 1024
        self._session = pylibsrtp.Session(policy)
        self.size = size
        self.checked = 0
        self.failed = 0
        self.keyframes = 0
        self.first_problem: str | None = None

    def check(self, datagram: bytes) -> str | None:
        """Decrypt and check one datagram; returns what is wrong with it, or None."""
        first = self.checked == 0
        self.checked += 1
        try:
            packet = self._session.unprotect(datagram)
        except pylibsrtp.Error:
            problem: str | None = "SRTP authentication failed"
        else:
            problem = self._vp8_problem(packet, first)
        if problem is not None:
            self.failed += 1
            if self.first_problem is None:
                self.first_problem = problem
        return problem

    def _vp8_problem(self, packet: bytes, first: bool) -> str | None:
        try:
            payload = packet[rtp_header_length(packet):]
            if packet[0] & 0x20 and payload:  # P: padding length in the last byte
                payload = payload[:len(payload) - payload[-1]]
            descriptor = Vp8Descriptor.parse(payload)
        except ValueError as exc:
            return f"not VP8: {exc}"
        keyframe = descriptor.frame_start and not payload[descriptor.offset] & 0x01
        if first and not keyframe:
            return "the stream does not start at a keyframe"
        if not keyframe:
            return None
        size = keyframe_size(payload[descriptor.offset:descriptor.offset + 10])
        if size is None:
            return "keyframe without a valid VP8 keyframe header"
        if self.size is not None and size != self.size:
            return f"keyframe of {size[0]}x{size[1]}, not {self.size[0]}x{self.size[1]}"
        self.keyframes += 1
        return None

    def as_json(self) -> dict[str, object]:
        return {"samples": self.checked, "sampleFailures": self.failed,
                "keyframesVerified": self.keyframes, "firstProblem": self.first_problem}
