"""Header rewriting, byte for byte, checked against aiortc's independent RTP parser."""

from __future__ import annotations

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from mediaserver.rtp_rewriter import (
    ABS_SEND_TIME_URI,
    AUDIO_LEVEL_URI,
    LATE_WINDOW,
    MID_URI,
    ExtensionIds,
    RtpRewriter,
    build_extensions,
    padding_bytes,
    rtp_payload_offset,
    seq_newer_or_equal,
    wrap_rtx,
)


def extension_map(ids: dict[str, int]) -> HeaderExtensionsMap:
    m = HeaderExtensionsMap()
    m.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=i, uri=u) for u, i in ids.items()]))
    return m


IDS = {MID_URI: 4, ABS_SEND_TIME_URI: 9, AUDIO_LEVEL_URI: 11}


def test_extension_block_is_rfc8285_one_byte_form():
    block = build_extensions(ExtensionIds.from_uris(IDS), b"1", 0x123456, (True, 42))
    assert block[:2] == b"\xbe\xde"
    assert len(block) % 4 == 0
    assert block == bytes.fromhex("bede0002" "4031" "92123456" "b0aa")
    # Odd lengths are zero-padded to a 32-bit boundary.
    padded = build_extensions(ExtensionIds(mid=4), b"12", None, None)
    assert padded == bytes.fromhex("bede0001413132" "00")


def test_empty_extension_block():
    assert build_extensions(ExtensionIds(), b"0", 5, None) == b""
    with pytest.raises(ValueError):
        build_extensions(ExtensionIds(mid=1), b"x" * 17, None, None)


def test_rewrite_anchors_sequence_and_timestamp_at_the_first_packet():
    rewriter = RtpRewriter(ssrc=0xCAFEBABE, payload_type=101, initial_seq=1000,
                           initial_ts=7_000_000)
    assert not rewriter.accepts(50)
    rewriter.start(in_seq=65530, in_ts=4_294_967_000)
    ext = build_extensions(ExtensionIds.from_uris(IDS), b"v", 0xABCDEF, None)
    out = []
    for i, in_seq in enumerate([65530, 65531, 65535, 0, 3]):
        seq, data = rewriter.rewrite(i % 2, in_seq, (4_294_967_000 + 3000 * i) % 2**32, ext,
                                     b"payload%d" % i)
        packet = RtpPacket.parse(data, extension_map(IDS))
        assert packet.sequence_number == seq
        out.append(packet)
    assert [p.sequence_number for p in out] == [1000, 1001, 1005, 1006, 1009]
    assert [p.timestamp for p in out] == [7_000_000 + 3000 * i for i in range(5)]
    assert {p.ssrc for p in out} == {0xCAFEBABE}
    assert {p.payload_type for p in out} == {101}
    assert [p.marker for p in out] == [0, 1, 0, 1, 0]
    assert out[2].payload == b"payload2"
    assert out[0].extensions.mid == "v"
    assert out[0].extensions.abs_send_time == 0xABCDEF
    # Late packets from before the anchor are refused, newer ones (across the wrap) accepted.
    assert not rewriter.accepts(65529) and rewriter.accepts(3) and rewriter.accepts(65530)


def test_audio_level_survives_the_rewrite():
    rewriter = RtpRewriter(1, 111, 0, 0)
    rewriter.start(10, 10)
    ext = build_extensions(ExtensionIds.from_uris(IDS), b"a", None, (False, 30))
    _, data = rewriter.rewrite(1, 10, 10, ext, b"\xfc\x01")
    packet = RtpPacket.parse(data, extension_map(IDS))
    assert packet.extensions.audio_level == (False, 30)
    assert packet.payload == b"\xfc\x01"


def test_rtx_wrap_carries_the_original_sequence_number():
    rewriter = RtpRewriter(0x11111111, 96, 500, 0)
    rewriter.start(0, 0)
    ext = build_extensions(ExtensionIds.from_uris(IDS), b"0", 1, None)
    _, original = rewriter.rewrite(1, 7, 90000, ext, b"\x10" + b"frame-data")
    rtx = wrap_rtx(original, rtx_payload_type=97, rtx_seq=40000, rtx_ssrc=0x22222222)
    packet = RtpPacket.parse(rtx, extension_map(IDS))
    assert packet.payload_type == 97 and packet.ssrc == 0x22222222
    assert packet.sequence_number == 40000 and packet.timestamp == 90000 and packet.marker == 1
    assert packet.payload[:2] == (507).to_bytes(2, "big")
    assert packet.payload[2:] == b"\x10frame-data"
    assert packet.extensions.mid == "0"


def test_padding_and_offsets():
    assert padding_bytes(4) == b"\x00\x00\x00\x04"
    with pytest.raises(ValueError):
        padding_bytes(0)
    with pytest.raises(ValueError):
        rtp_payload_offset(b"\x00" * 12)
    with pytest.raises(ValueError):
        rtp_payload_offset(b"\x90" + b"\x00" * 12)
    assert seq_newer_or_equal(0, 65535) and not seq_newer_or_equal(65535, 0)


def started_rewriter(first: int = 100) -> RtpRewriter:
    rewriter = RtpRewriter(ssrc=1, payload_type=96, initial_seq=5000, initial_ts=0)
    rewriter.start(first, 0)
    return rewriter


def test_skipped_packets_leave_no_gap_in_the_output():
    rewriter = started_rewriter()
    out = []
    for seq in range(100, 110):
        if seq in (102, 103, 107):
            assert rewriter.is_new(seq)
            rewriter.skip(seq)
        else:
            out.append(rewriter.sequence(seq, 0))
    assert out == list(range(5000, 5007))


def test_late_packets_keep_their_slot_and_skipped_ones_are_refused():
    rewriter = started_rewriter(65534)  # across the 16-bit wrap
    assert rewriter.sequence(65534, 0) == 5000
    # 65535 is missing (lost upstream), 0 is skipped, 1 and 2 are forwarded.
    rewriter.skip(0)
    assert rewriter.sequence(1, 0) == 5002 and rewriter.sequence(2, 0) == 5003
    assert not rewriter.is_new(1)
    assert rewriter.sequence(65535, 0) == 5001  # the late original takes its own slot
    assert rewriter.sequence(0, 0) == -1  # a retransmission of the skipped one: refused
    assert rewriter.sequence(1, 0) == 5002  # a retransmission of a sent one: same number
    assert rewriter.sequence(65533, 0) == -1  # before the start
    rewriter.skip(1)  # a packet that is not new is never skipped twice
    assert rewriter.sequence(3, 0) == 5004


def test_skipped_numbers_are_forgotten_beyond_the_late_window():
    rewriter = started_rewriter(0)
    for seq in range(0, 3 * LATE_WINDOW, 2):
        rewriter.skip(seq)
        assert rewriter.sequence(seq + 1, 0) == 5000 + seq // 2
    assert rewriter.sequence(3 * LATE_WINDOW - 1 - 2 * LATE_WINDOW - 2, 0) == -1  # too late
    assert rewriter.sequence(3 * LATE_WINDOW - 4, 0) == -1  # skipped, within the window


def test_a_source_switch_continues_numbers_and_timestamps():
    rewriter = RtpRewriter(ssrc=1, payload_type=96, initial_seq=100, initial_ts=9000)
    rewriter.start(40000, 1_000_000)
    for i in range(3):
        rewriter.sequence(40000 + i, 1_000_000 + 3000 * i)
    rewriter.switch_source(in_seq=7, in_ts=555, ts_advance=3000)
    seq = rewriter.sequence(7, 555)
    packet = RtpPacket.parse(rewriter.packet(1, seq, 555, b"", b"\x10x"))
    assert packet.sequence_number == 103 and packet.timestamp == 9000 + 9000
    assert rewriter.sequence(40003, 1_009_000) == -1  # the old stream's stragglers: refused
    assert rewriter.sequence(8, 3555) == 104
