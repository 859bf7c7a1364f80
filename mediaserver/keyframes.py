"""Spot the first packet of a keyframe in VP8 and H.264 RTP payloads (sans-I/O).

A new subscriber must start at a keyframe, otherwise its decoder shows garbage or
nothing until the next one. Only the payload descriptor and the first bytes of
the codec data are read; nothing is decoded.
"""

from __future__ import annotations

from collections.abc import Callable

KeyframeDetector = Callable[[bytes], bool]

H264_SPS = 7
H264_STAP_A = 24


def vp8_keyframe_start(payload: bytes) -> bool:
    """True for the first packet of a VP8 keyframe (RFC 7741 section 4)."""
    if len(payload) < 1:
        return False
    first = payload[0]
    if not first & 0x10 or first & 0x07:  # S bit set and partition index 0
        return False
    offset = 1
    if first & 0x80:  # X: extended control bits present
        if len(payload) < 2:
            return False
        ext = payload[1]
        offset = 2
        if ext & 0x80:  # I: picture id
            if len(payload) <= offset:
                return False
            offset += 2 if payload[offset] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            offset += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX
            offset += 1
    if len(payload) <= offset:
        return False
    return not payload[offset] & 0x01  # P bit of the VP8 frame tag: 0 means keyframe


def h264_keyframe_start(payload: bytes) -> bool:
    """True for the packet that starts an H.264 IDR access unit: the one carrying its SPS.

    WebRTC encoders (libwebrtc, OpenH264, x264 in aiortc) send SPS and PPS in front
    of every IDR picture, usually aggregated in one STAP-A. Starting a subscriber at
    the IDR slice itself would leave its decoder without parameter sets.
    """
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type == H264_SPS:
        return True
    if nal_type == H264_STAP_A:
        offset = 1
        while offset + 2 < len(payload):
            size = int.from_bytes(payload[offset : offset + 2], "big")
            if size == 0 or offset + 2 + size > len(payload):
                return False
            if payload[offset + 2] & 0x1F == H264_SPS:
                return True
            offset += 2 + size
    return False


def keyframe_detector(codec_name: str) -> KeyframeDetector | None:
    """The detector for a video codec, or None for codecs without keyframes (audio)."""
    name = codec_name.upper()
    if name == "VP8":
        return vp8_keyframe_start
    if name == "H264":
        return h264_keyframe_start
    return None

