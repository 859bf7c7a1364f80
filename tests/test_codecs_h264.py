"""H.264 payloads (RFC 6184 mode 1), flags and SPS sizes, on packets from aiortc's encoder."""

from __future__ import annotations

import pytest

from mediaserver.codecs import FRAME_START, KEYFRAME_START, NO_FLAGS, PacketFlags, payload_parser
from mediaserver.codecs.h264 import H264Payload, h264_flags, h264_keyframe_start, sps_size
from tests.recorder_child import video_packets
from tests.rtp_fixtures import frames_of, rtp_packets


@pytest.mark.parametrize("name,size", [("h264-aiortc-640x480.bin", (640, 480)),
                                       ("h264-aiortc-1280x720.bin", (1280, 720))])
def test_keyframes_start_at_the_packet_with_the_sps(name, size):
    frames = frames_of(rtp_packets(name))
    flags = [[h264_flags(p.payload) for p in frame] for frame in frames]
    assert len(frames) == 20
    keyframes = [(i, j) for i, frame in enumerate(flags) for j, f in enumerate(frame) if f.keyframe]
    assert keyframes == [(0, 0), (10, 0)]
    assert flags[0][0] == PacketFlags(keyframe=True, start=True, size=size)
    assert all(frame[0].start for frame in flags)
    # Packets that say nothing share the constants: no allocation on the forwarding path.
    assert all(f is FRAME_START or f is NO_FLAGS for frame in flags for f in frame
               if not f.keyframe)


def test_stap_a_and_fu_a_fragments_rebuild_the_idr_slice():
    keyframe = frames_of(rtp_packets("h264-aiortc-1280x720.bin"))[0]
    parts = [H264Payload.parse(p.payload) for p in keyframe]
    assert [n[0] & 0x1F for n in parts[0].units] == [7, 8, 6]  # STAP-A: SPS, PPS, SEI
    fragments = parts[1:]  # two IDR slices, each in two FU-A fragments
    assert len(fragments) == 4 and all(not p.units for p in fragments)
    assert [(p.first_fragment, p.last_fragment) for p in fragments] == [
        (True, False), (False, True)] * 2
    slices = [b"".join(p.fragment or b"" for p in pair) for pair in (parts[1:3], parts[3:5])]
    assert [s[0] & 0x1F for s in slices] == [5, 5]
    assert [bool(s[1] & 0x80) for s in slices] == [True, False]  # first_mb_in_slice 0, then not
    fu_bytes = sum(len(p.payload) - 2 for p in keyframe[1:])
    assert sum(map(len, slices)) == fu_bytes + 2  # FU indicator + header: one NAL header

@pytest.mark.parametrize("size", [(320, 240), (640, 360), (1280, 720), (176, 144)])
def test_sps_size_with_cropping(size):
    frames = video_packets("H264", 1, width=size[0], height=size[1])
    payloads = [p[3] for p in frames[0] if p[3][0] & 0x1F in (7, 24)]
    nals = [n for payload in payloads for n in H264Payload.parse(payload).units]
    sps = next(n for n in nals if n[0] & 0x1F == 7)
    assert sps_size(sps) == size
    with pytest.raises(ValueError, match="truncated"):
        sps_size(sps[:4])
    with pytest.raises(ValueError, match="not an SPS"):
        sps_size(b"\x68\xce")


def test_strict_parse_rejects_what_mode_1_does_not_send():
    with pytest.raises(ValueError, match="unsupported"):
        H264Payload.parse(bytes([25, 0, 0]))  # STAP-B (interleaved mode)
    with pytest.raises(ValueError, match="truncated"):
        H264Payload.parse(bytes([24, 0, 9, 0x67]))  # STAP-A unit longer than the payload
    with pytest.raises(ValueError, match="too short"):
        H264Payload.parse(bytes([28, 0x85]))
    with pytest.raises(ValueError, match="empty"):
        H264Payload.parse(b"")


def test_forwarding_flags_for_each_packetisation():
    sps, idr, slice_ = b"\x67\x42", b"\x65\x88", b"\x41\x9a"
    stap = b"\x18" + len(sps).to_bytes(2, "big") + sps + b"\x00\x02\x68\xce"
    assert h264_flags(stap) is KEYFRAME_START  # a garbled SPS: keyframe without a size
    assert h264_keyframe_start(sps)
    assert h264_flags(idr) is FRAME_START  # an IDR slice without parameter sets in front
    assert h264_flags(slice_) is FRAME_START and h264_flags(b"\x41\x1a") is NO_FLAGS
    assert h264_flags(b"\x7c\x85\x88") is FRAME_START  # FU-A start of an IDR, first slice
    assert h264_flags(b"\x7c\x05\x88") is NO_FLAGS  # FU-A continuation
    assert h264_flags(b"\x18\x00\x09\x67") is NO_FLAGS  # truncated STAP-A
    assert h264_flags(b"") is NO_FLAGS and h264_flags(b"\x19\x00") is NO_FLAGS
    for packet in rtp_packets("h264-aiortc-640x480.bin")[:3]:
        for end in range(len(packet.payload) + 1):
            assert isinstance(h264_flags(packet.payload[:end]), PacketFlags)
    assert payload_parser("H264") is h264_flags
