"""VP8 payload descriptors and flags, on packets captured from aiortc's and Chromium's encoders."""

from __future__ import annotations

import pytest

from mediaserver.codecs import NO_FLAGS, PacketFlags, payload_parser
from mediaserver.codecs.vp8 import Vp8Descriptor, keyframe_size, vp8_flags, vp8_keyframe_start
from tests.rtp_fixtures import frames_of, rtp_packets


@pytest.mark.parametrize("name,size", [("vp8-aiortc-640x480.bin", (640, 480)),
                                       ("vp8-aiortc-1280x720.bin", (1280, 720))])
def test_aiortc_keyframes_starts_picture_ids_and_sizes(name, size):
    frames = frames_of(rtp_packets(name))
    flags = [[vp8_flags(p.payload) for p in frame] for frame in frames]
    assert len(frames) == 20
    keyframes = [(i, j) for i, frame in enumerate(flags) for j, f in enumerate(frame) if f.keyframe]
    assert keyframes == [(0, 0), (10, 0)]
    assert all(frame[0].start and not any(f.start for f in frame[1:]) for frame in flags)
    assert [f.size for frame in flags for f in frame if f.size] == [size, size]
    ids = [f.picture_id for frame in flags for f in frame]
    first = flags[0][0].picture_id
    assert first is not None
    assert ids == [(first + i) & 0x7FFF for i, frame in enumerate(frames) for _ in frame]
    assert all(f.temporal_id is None and f.tl0_pic_idx is None for fr in flags for f in fr)


def test_chromium_l1t3_temporal_layers():
    frames = frames_of(rtp_packets("vp8-chromium-l1t3.bin"))
    flags = [vp8_flags(frame[0].payload) for frame in frames]
    assert len(frames) == 87 and all(f.start for f in flags)
    assert [f.temporal_id for f in flags] == [(0, 2, 1, 2)[i % 4] for i in range(86)] + [0]
    assert [(i, f.size) for i, f in enumerate(flags) if f.keyframe] == [
        (0, (640, 480)), (86, (480, 360))]  # Chromium scaled the picture down meanwhile
    sync = [i for i, f in enumerate(flags) if f.layer_sync]
    assert sync == [0, 1, 2, *[i + d for i in range(9, 83, 8) for d in (0, 1)], 86]
    # TL0PICIDX counts TL0 frames; picture ids count frames (15 bits).
    tl0 = [f.tl0_pic_idx for f in flags]
    assert all(tl0[i] == tl0[i - 1] + (flags[i].temporal_id == 0) for i in range(1, 87))  # type: ignore[operator]
    ids = [f.picture_id for f in flags]
    assert ids == [(ids[0] + i) & 0x7FFF for i in range(87)]  # type: ignore[operator]
    # Every packet of a frame carries its frame's layer fields.
    for frame, first in zip(frames, flags, strict=True):
        for packet in frame[1:]:
            f = vp8_flags(packet.payload)
            assert not f.start and (f.temporal_id, f.picture_id) == (
                first.temporal_id, first.picture_id)


def test_descriptor_fields_and_strict_errors():
    # X=1 I L T K; S=1 PID=0; 15-bit picture id 0x1234; TL0PICIDX 7; TID 2, Y, KEYIDX 5.
    payload = bytes([0x90, 0xF0, 0x92, 0x34, 0x07, 0xA5, 0x01])
    d = Vp8Descriptor.parse(payload)
    assert d == Vp8Descriptor(True, 0, 0x1234, 7, 2, True, 5, 6) and d.frame_start
    assert Vp8Descriptor.parse(bytes([0x13, 0x00])).partition == 3  # no X: one byte
    for truncated, message in [(b"", "empty"), (b"\x90", "extension"),
                               (b"\x90\x80", "picture id"), (payload[:3], "truncated"),
                               (payload[:5], "truncated"), (payload[:6], "no data")]:
        with pytest.raises(ValueError, match=message):
            Vp8Descriptor.parse(truncated)


def test_the_forwarding_parser_never_raises_and_shares_no_flags():
    for packet in rtp_packets("vp8-chromium-l1t3.bin")[:10]:
        for end in range(len(packet.payload) + 1):
            assert isinstance(vp8_flags(packet.payload[:end]), PacketFlags)
    assert vp8_flags(b"") is NO_FLAGS and vp8_flags(b"\x90\x80") is NO_FLAGS
    assert vp8_flags(bytes([0x00, 0x01])) is NO_FLAGS  # no X, no S: a continuation
    assert payload_parser("vp8") is vp8_flags and payload_parser("opus") is None


def test_keyframe_start_variants():
    assert vp8_keyframe_start(bytes([0x90, 0x80, 0x81, 0x23, 0x00]))
    assert not vp8_keyframe_start(bytes([0x90, 0x80, 0x81, 0x23, 0x01]))  # interframe
    assert not vp8_keyframe_start(bytes([0x80, 0x80, 0x05, 0x00]))  # S=0: continuation
    assert not vp8_keyframe_start(bytes([0x91, 0x80, 0x05, 0x00]))  # partition 1
    frame = bytes([0x50, 0x2A, 0x00]) + b"\x9d\x01\x2a" + (640).to_bytes(2, "little") + (
        (360 | 0x4000).to_bytes(2, "little"))  # the top two bits are the scale
    assert keyframe_size(frame) == (640, 360)
    assert keyframe_size(bytes([0x51]) + frame[1:]) is None  # an interframe
    assert vp8_flags(bytes([0x10]) + frame).size == (640, 360)
