"""benchmarks/stream_tally.py and benchmarks/light_viewers.py: the load generator's viewers.

The pure counter and sample check on crafted packets (real SRTP from pylibsrtp), then
light viewers against the real server with a real aiortc publisher.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import replace
from typing import Any

import pylibsrtp
import pytest
from aiortc import RTCPeerConnection

from benchmarks.light_viewers import (
    LightViewer,
    SocketPoller,
    SrtpKeys,
    drain,
    srtp_receive_keys,
    video_ssrc,
)
from benchmarks.stream_tally import SampleCheck, StreamTally, is_rtcp, rtp_header_length
from huizhen.testpattern import PatternVideoTrack
from signaling.client import SignalingClient
from tests.conftest import make_settings, serving
from tests.peers import prefer_codec, wait_for

SSRC = 0x11223344
TAG = b"\xaa" * 10  # stands in for the SRTP authentication tag
KEY = bytes(range(30))  # AES-128 master key (16) and salt (14)
PROFILE = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
# VP8 payload descriptor with S=1, PID=0 and a keyframe header (RFC 6386 9.1).
KEYFRAME_640 = b"\x10" + b"\x50\x42\x00\x9d\x01\x2a\x80\x02\xe0\x01" + b"\x00" * 40
KEYFRAME_320 = b"\x10" + b"\x50\x42\x00\x9d\x01\x2a\x40\x01\xf0\x00" + b"\x00" * 40
INTERFRAME = b"\x10" + b"\x51\x42\x00" + b"\x00" * 40  # P bit set: not a keyframe
CONTINUATION = b"\x00" + b"\x00" * 40  # S=0


def rtp(sequence: int, marker: bool = False, payload: bytes = b"\x00" * 20,
        ssrc: int = SSRC, extension: bytes = b"") -> bytes:
    first = 0x90 if extension else 0x80
    header = struct.pack("!BBHII", first, (0x80 if marker else 0) | 96, sequence & 0xFFFF,
                         1000, ssrc)
    if extension:
        header += struct.pack("!HH", 0xBEDE, len(extension) // 4) + extension
    return header + payload


def feed(tally: StreamTally, sequences: list[int]) -> None:
    for sequence in sequences:
        tally.feed(rtp(sequence) + TAG)


# --------------------------------------------------------------------------- StreamTally


def test_in_order_packets_counted_with_frames_and_payload_bytes() -> None:
    tally = StreamTally(SSRC)
    for sequence in range(100, 110):
        tally.feed(rtp(sequence, marker=sequence % 5 == 4, payload=b"x" * 30) + TAG)
    assert (tally.packets, tally.expected, tally.lost, tally.frames) == (10, 10, 0, 2)
    assert tally.bytes == 300  # the header and the SRTP tag are not payload


def test_header_extension_is_not_payload() -> None:
    tally = StreamTally(SSRC)
    tally.feed(rtp(1, payload=b"x" * 30, extension=b"\x10\x01\x00\x00") + TAG)
    assert tally.bytes == 30


def test_sequence_wraps_around_without_loss() -> None:
    tally = StreamTally(SSRC)
    feed(tally, [65533, 65534, 65535, 0, 1, 2])
    assert (tally.packets, tally.expected, tally.lost) == (6, 6, 0)
    assert tally.highest - tally.base == 5  # type: ignore[operator]


def test_gap_across_the_wrap_is_loss() -> None:
    tally = StreamTally(SSRC)
    feed(tally, [65534, 1, 2])
    assert (tally.packets, tally.expected, tally.lost) == (3, 5, 2)


def test_reordered_packet_fills_its_gap() -> None:
    tally = StreamTally(SSRC)
    feed(tally, [1, 2, 4, 5, 3, 6])
    assert (tally.packets, tally.lost, tally.reordered, tally.duplicates) == (6, 0, 1, 0)


def test_reordered_across_the_wrap() -> None:
    tally = StreamTally(SSRC)
    feed(tally, [65534, 0, 65535, 1])
    assert (tally.packets, tally.lost, tally.reordered) == (4, 0, 1)


def test_duplicates_are_not_counted_twice() -> None:
    tally = StreamTally(SSRC)
    feed(tally, [7, 8, 8, 9, 7, 9])
    assert (tally.packets, tally.expected, tally.duplicates, tally.lost) == (3, 3, 3, 0)


def test_packet_older_than_the_first_is_late() -> None:
    tally = StreamTally(SSRC)
    feed(tally, [10, 11, 9])
    assert (tally.packets, tally.late, tally.duplicates, tally.expected) == (2, 1, 0, 2)


def test_long_gap_is_loss_and_old_gaps_are_forgotten() -> None:
    tally = StreamTally(SSRC)
    feed(tally, [0, 5000, 5001])
    assert (tally.packets, tally.expected, tally.lost) == (3, 5002, 4999)
    feed(tally, [10])  # far behind the reorder window: too late to fill its gap
    assert (tally.packets, tally.late) == (3, 1)


def test_other_ssrc_and_rtcp_are_counted_apart() -> None:
    tally = StreamTally(SSRC)
    sender_report = struct.pack("!BBHI", 0x80, 200, 6, 0x55) + b"\x00" * 20
    assert is_rtcp(sender_report)
    tally.feed(rtp(1) + TAG)
    tally.feed(rtp(2, ssrc=SSRC + 1) + TAG)
    tally.feed(sender_report)
    tally.feed(b"\x80\x60")  # shorter than a header
    assert (tally.packets, tally.foreign, tally.rtcp) == (1, 2, 1)


def test_samples_the_first_every_nth_and_big_frame_starts() -> None:
    tally = StreamTally(SSRC, sample_every=10, big_frame_packets=4)
    sampled = []
    packets = [rtp(s, marker=s in (3, 9, 10, 30)) + TAG for s in range(40)]
    for index, packet in enumerate(packets):
        sample = tally.feed(packet)
        if sample is not None:
            sampled.append(packets.index(sample) if sample in packets else -1)
            assert sampled[-1] <= index
    # 0: the first (it also starts a 4-packet frame: not sampled twice), 10 and 20: the
    # 10th ones, 4: start of the 6-packet frame 4-9, 11: start of the frame 11-30 (its
    # end replaces the 1-in-10 sample that fell on 30).
    assert sampled == [0, 4, 10, 20, 11]


# --------------------------------------------------------------------------- SampleCheck


def protector(key: bytes = KEY) -> Any:
    policy = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                              srtp_profile=PROFILE)
    return pylibsrtp.Session(policy)


def test_right_key_decrypts_and_validates_the_keyframe_size() -> None:
    tx = protector()
    check = SampleCheck(KEY, PROFILE, (640, 480))
    assert check.check(tx.protect(rtp(1, payload=KEYFRAME_640))) is None
    assert check.check(tx.protect(rtp(2, payload=CONTINUATION))) is None
    assert check.check(tx.protect(rtp(300, payload=INTERFRAME))) is None
    assert (check.checked, check.failed, check.keyframes) == (3, 0, 1)


def test_wrong_key_fails_every_sample() -> None:
    tx = protector()
    wrong = bytes([KEY[0] ^ 1]) + KEY[1:]
    check = SampleCheck(wrong, PROFILE, (640, 480))
    for sequence in (1, 2, 3):
        assert check.check(tx.protect(rtp(sequence, payload=KEYFRAME_640))) == \
            "SRTP authentication failed"
    assert (check.checked, check.failed, check.keyframes) == (3, 3, 0)


def test_stream_must_start_at_a_keyframe_of_the_expected_size() -> None:
    tx = protector()
    check = SampleCheck(KEY, PROFILE, (640, 480))
    assert check.check(tx.protect(rtp(1, payload=INTERFRAME))) == \
        "the stream does not start at a keyframe"
    assert check.check(tx.protect(rtp(2, payload=KEYFRAME_320))) == \
        "keyframe of 320x240, not 640x480"
    assert check.check(tx.protect(rtp(3, payload=b"\x90"))) is not None  # truncated descriptor
    assert check.failed == 3 and check.first_problem == "the stream does not start at a keyframe"


def test_rtp_header_length_reads_csrcs_and_extensions() -> None:
    assert rtp_header_length(rtp(1, extension=b"\x10\x01\x00\x00")) == 20
    with_csrc = b"\x82" + rtp(1)[1:12] + b"\x00" * 8 + b"payload"
    assert rtp_header_length(with_csrc) == 20
    with pytest.raises(ValueError):
        rtp_header_length(rtp(1, extension=b"\x10\x01\x00\x00")[:18])


# --------------------------------------------------------------------------- the socket


async def test_poller_drains_srtp_to_the_tally_and_the_rest_to_ice() -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    sender.bind(("127.0.0.1", 0))
    receiver.setblocking(False)
    tally = StreamTally(SSRC, sample_every=3)
    to_ice: list[tuple[bytes, Any]] = []
    sampled: list[bytes] = []
    stun = b"\x00\x01\x00\x00" + b"\x21\x12\xa4\x42" + b"\x00" * 12
    poller = SocketPoller(0.005)
    try:
        poller.add(receiver, lambda: drain(receiver.recvfrom, lambda d, a: to_ice.append((d, a)),
                                           tally.feed, sampled.append))
        for sequence in range(5):
            sender.sendto(rtp(sequence, marker=sequence == 4) + TAG, receiver.getsockname())
        sender.sendto(stun, receiver.getsockname())
        await wait_for(lambda: tally.packets == 5 and len(to_ice) == 1, 5)
        assert to_ice[0] == (stun, sender.getsockname())
        assert (tally.frames, tally.lost) == (1, 0)
        assert sampled == [rtp(0) + TAG, rtp(3) + TAG]
    finally:
        await poller.close()
        receiver.close()
        sender.close()


# --------------------------------------------------------------------------- against the server


def wrong_keys(dtls: Any) -> SrtpKeys:
    keys = srtp_receive_keys(dtls)
    return replace(keys, key=bytes([keys.key[0] ^ 0xFF]) + keys.key[1:])


async def test_light_viewers_count_and_validate_the_publishers_stream() -> None:
    async with serving(make_settings()) as server:
        ward = SignalingClient(server.ws_url)
        await ward.connect()
        await ward.join(server.token("ward"))
        publisher = RTCPeerConnection()
        publisher.addTrack(PatternVideoTrack(320, 240, 30))
        prefer_codec(publisher, "video", "VP8")
        stream = await ward.publish(publisher)
        viewers = [LightViewer(i, size=(320, 240), sample_every=10) for i in range(5)]
        hostile = LightViewer(5, size=(320, 240), sample_every=10, keys=wrong_keys)
        everyone = [*viewers, hostile]
        port = server.settings.server.port
        try:
            for viewer in everyone:
                token = server.token("observer", name=f"light-{viewer.index}")
                await viewer.start_huizhen(port, token, stream["id"])
            await asyncio.gather(*(v.wait_connected(20) for v in everyone))
            await wait_for(lambda: all(v.tally is not None and v.tally.frames >= 60
                                       and v.check is not None and v.check.checked >= 5
                                       for v in everyone), 30)
            for viewer in viewers:
                tally, check = viewer.tally, viewer.check
                assert tally is not None and check is not None
                assert viewer.error is None and viewer.stray == 0
                # The SSRC the offer announced, and nothing else, on this transport.
                offered = viewer.pc.remoteDescription.sdp
                assert tally.ssrc == video_ssrc(offered) and tally.foreign == 0
                assert tally.packets >= 60 and tally.lost <= 3, tally.as_json()
                assert tally.duplicates == 0 and tally.bytes > 0
                # Every sampled packet decrypted, its VP8 valid; the first a 320x240 keyframe.
                assert check.failed == 0 and check.keyframes >= 1, check.as_json()
                assert viewer.counters()[2] == tally.frames
            # The wrong key: headers still count, but no sample authenticates.
            assert hostile.tally is not None and hostile.tally.packets >= 60
            assert hostile.check is not None and hostile.check.failed == hostile.check.checked
            assert hostile.check.first_problem == "SRTP authentication failed"
            assert hostile.check.keyframes == 0
        finally:
            await asyncio.gather(*(v.close() for v in everyone))
            await publisher.close()
            await ward.close()
