"""Keyframe detection on real encoder output (aiortc's own VP8 and H.264 packetisers)."""

from __future__ import annotations

import fractions

import av
import numpy as np
import pytest
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from huizhen.testpattern import pattern_frame
from mediaserver.keyframes import h264_keyframe_start, keyframe_detector, vp8_keyframe_start

CODECS = {
    "VP8": RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96),
    "H264": RTCRtpCodecParameters(
        mimeType="video/H264", clockRate=90000, payloadType=102,
        parameters={"packetization-mode": "1", "profile-level-id": "42e01f"}),
}


def encoded_frames(codec: str, count: int, keyframe_at: int):
    encoder = get_encoder(CODECS[codec])
    for i in range(count):
        frame = av.VideoFrame.from_ndarray(pattern_frame(i, 320, 240), format="bgr24")
        frame.pts = i * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        payloads, _ = encoder.encode(frame, force_keyframe=(i == keyframe_at))
        yield i, payloads


@pytest.mark.parametrize("codec", ["VP8", "H264"])
def test_first_packet_of_each_keyframe_and_nothing_else(codec):
    detect = keyframe_detector(codec)
    starts = []
    for i, payloads in encoded_frames(codec, 12, keyframe_at=8):
        for j, payload in enumerate(payloads):
            if detect(payload):
                starts.append((i, j))
    assert starts == [(0, 0), (8, 0)]


def test_vp8_descriptor_variants():
    # X=1, I=1 with a 15-bit picture id, S=1, PID=0, then a keyframe tag (P=0).
    assert vp8_keyframe_start(bytes([0x90, 0x80, 0x81, 0x23, 0x00]))
    assert not vp8_keyframe_start(bytes([0x90, 0x80, 0x81, 0x23, 0x01]))  # interframe
    assert not vp8_keyframe_start(bytes([0x80, 0x80, 0x05, 0x00]))  # S=0: continuation
    assert not vp8_keyframe_start(b"")
    assert not vp8_keyframe_start(bytes([0x90, 0x80]))  # truncated


def test_h264_packetisations():
    sps, idr, slice_ = b"\x67\x42", b"\x65\x88", b"\x41\x9a"
    stap = b"\x18" + len(sps).to_bytes(2, "big") + sps + b"\x00\x02\x68\xce"
    assert h264_keyframe_start(stap)
    assert h264_keyframe_start(sps)
    assert not h264_keyframe_start(idr)  # an IDR slice without parameter sets in front
    assert not h264_keyframe_start(slice_)
    assert not h264_keyframe_start(b"\x7c\x85")  # FU-A start of an IDR
    assert not h264_keyframe_start(b"\x18\x00\x09\x67")  # truncated STAP-A
    assert keyframe_detector("opus") is None
    assert np.uint8(0) == 0
