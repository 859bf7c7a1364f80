"""Depacketizers and the reorder buffer, fed with packets from aiortc's real encoders."""

from __future__ import annotations

import itertools
import random
import struct

import av
import pytest

from huizhen.testpattern import read_frame_number
from mediaserver.codecs.h264 import H264Payload
from mediaserver.codecs.opus import packet_samples
from mediaserver.codecs.vp8 import Vp8Descriptor, keyframe_size
from recorder.depacketizer import (
    Depacketizer,
    EncodedFrame,
    H264Depacketizer,
    OpusDepacketizer,
    Vp8Depacketizer,
    depacketizer_for,
)
from recorder.errors import UnsupportedCodecError
from recorder.opus import opus_head
from recorder.reorder import ReorderBuffer, seq_distance
from tests.recorder_child import opus_packets, video_packets
from tests.rtp_fixtures import rtp_packets


def feed(depacketizer, packets, arrival: float = 1000.0) -> list[EncodedFrame]:  # type: ignore[no-untyped-def]
    frames: list[EncodedFrame] = []
    for seq, timestamp, marker, payload in packets:
        frames.extend(depacketizer.push(seq, timestamp, marker, payload, arrival))
    return frames + depacketizer.flush()


@pytest.fixture(scope="module")
def vp8_frames():
    # 1280x720 so that keyframes span several packets.
    return video_packets("VP8", 40, width=1280, height=720, keyframe_every=20)


@pytest.fixture(scope="module")
def h264_frames():
    # 1280x720 keyframes do not fit one packet: a STAP-A of SPS+PPS, then FU-A fragments.
    return video_packets("H264", 40, width=1280, height=720, keyframe_every=20)


# --------------------------------------------------------------------------- reorder buffer


def test_seq_distance_wraps():
    assert seq_distance(65535, 0) == 1
    assert seq_distance(0, 65535) == -1
    assert seq_distance(10, 20) == 10


def test_reorder_buffer_restores_order_across_wraparound():
    buffer: ReorderBuffer[int] = ReorderBuffer(max_packets=16, max_delay=1.0)
    seqs = [(65530 + i) & 0xFFFF for i in range(12)]
    shuffled = seqs[:]
    for i in range(0, len(shuffled) - 2, 3):  # swap neighbours: local reordering
        shuffled[i + 1], shuffled[i + 2] = shuffled[i + 2], shuffled[i + 1]
    shuffled.remove(seqs[0])
    shuffled.insert(0, seqs[0])
    out = []
    for seq in shuffled:
        out.extend(buffer.push(seq, seq, now=0.0))
    assert out == seqs and buffer.lost == 0 and buffer.pending == 0


def test_reorder_buffer_gives_up_on_a_gap_after_max_delay_or_max_packets():
    buffer: ReorderBuffer[int] = ReorderBuffer(max_packets=4, max_delay=0.2)
    assert buffer.push(1, 1, now=0.0) == [1]
    assert buffer.push(3, 3, now=0.0) == []  # 2 is missing: hold 3
    assert buffer.poll(now=0.1) == []
    assert buffer.poll(now=0.25) == [3]  # waited long enough: 2 is lost
    assert buffer.lost == 1
    assert buffer.push(2, 2, now=0.3) == []  # the straggler is too late now
    assert buffer.late == 1
    for seq in (5, 6, 7, 8):
        assert buffer.push(seq, seq, now=0.3) == []
    assert buffer.push(9, 9, now=0.3) == [5, 6, 7, 8, 9]  # too many held behind 4
    assert buffer.lost == 2


def test_reorder_buffer_drops_duplicates_and_restarts_on_a_jump():
    buffer: ReorderBuffer[str] = ReorderBuffer()
    assert buffer.push(10, "a", 0) == ["a"]
    assert buffer.push(10, "dup", 0) == []
    assert buffer.push(30000, "new stream", 0) == ["new stream"]
    assert buffer.push(30001, "next", 0) == ["next"]
    assert buffer.flush() == []


# --------------------------------------------------------------------------- VP8


def test_vp8_frames_come_out_whole_with_keyframes_and_size(vp8_frames):
    packets = [p for frame in vp8_frames for p in frame]
    frames = feed(Vp8Depacketizer(), packets)
    assert len(frames) == 40
    assert [f.keyframe for f in frames] == [i % 20 == 0 for i in range(40)]
    assert frames[0].size == (1280, 720) and frames[1].size is None
    assert not any(f.after_loss for f in frames)
    # Timestamps wrap around 2^32 within the run and stay one frame (3000 +- 1) apart.
    assert all(abs(((b.timestamp - a.timestamp) & 0xFFFFFFFF) - 3000) <= 1
               for a, b in itertools.pairwise(frames))


def test_vp8_a_lost_packet_drops_its_frame_and_flags_the_next(vp8_frames):
    keyframe = vp8_frames[0]
    assert len(keyframe) >= 2, "a keyframe should span several packets"
    packets = [p for frame in vp8_frames[:3] for p in frame]
    lost = keyframe[1]
    frames = feed(Vp8Depacketizer(), [p for p in packets if p is not lost])
    assert [f.timestamp for f in frames] == [vp8_frames[1][0][1], vp8_frames[2][0][1]]
    assert frames[0].after_loss and not frames[1].after_loss


def test_vp8_a_lost_first_packet_is_noticed_without_the_marker_of_the_previous(vp8_frames):
    depacketizer = Vp8Depacketizer()
    first, second = vp8_frames[0], vp8_frames[1]
    packets = [*first[:-1], *second]  # the keyframe's marker packet is lost
    frames = feed(depacketizer, packets)
    assert len(frames) == 1 and frames[0].timestamp == second[0][1] and frames[0].after_loss
    assert depacketizer.dropped_frames == 1


def test_vp8_descriptor_and_keyframe_header():
    # X=1, S=1, PID=0; I=1 with a 15-bit picture id; then a keyframe header 640x360.
    header = bytes([0x90, 0x80, 0x81, 0x23])
    frame = bytes([0x50, 0x2A, 0x00]) + b"\x9d\x01\x2a" + struct.pack("<HH", 640, 360)
    descriptor = Vp8Descriptor.parse(header + frame)
    assert (descriptor.start, descriptor.partition, descriptor.offset) == (True, 0, 4)
    assert descriptor.picture_id == 0x123
    assert keyframe_size(frame) == (640, 360)
    assert keyframe_size(bytes([0x51]) + frame[1:]) is None  # an interframe
    with pytest.raises(ValueError, match="extension"):
        Vp8Descriptor.parse(b"\x90")


# --------------------------------------------------------------------------- H.264


def test_h264_access_units_in_annex_b_with_parameter_sets(h264_frames):
    packets = [p for frame in h264_frames for p in frame]
    nal_types = {p[3][0] & 0x1F for p in packets}
    assert {24, 28} <= nal_types, nal_types  # STAP-A and FU-A both exercised
    depacketizer = H264Depacketizer()
    frames = feed(depacketizer, packets)
    assert len(frames) == 40
    assert [f.keyframe for f in frames] == [i % 20 == 0 for i in range(40)]
    first = frames[0]
    assert first.data.startswith(b"\x00\x00\x00\x01\x67") and first.size == (1280, 720)
    assert depacketizer.params.sps is not None and depacketizer.params.pps is not None


def test_h264_a_lost_fragment_drops_the_access_unit(h264_frames):
    keyframe = h264_frames[0]
    fragments = [p for p in keyframe if p[3][0] & 0x1F == 28]
    assert len(fragments) >= 3
    lost = fragments[1]
    packets = [p for frame in h264_frames[:2] for p in frame if p is not lost]
    frames = feed(H264Depacketizer(), packets)
    assert [f.timestamp for f in frames] == [h264_frames[1][0][1]]
    assert frames[0].after_loss and not frames[0].keyframe


def test_h264_idr_without_parameter_sets_gets_the_stored_ones(h264_frames):
    depacketizer = H264Depacketizer()
    feed(depacketizer, [p for p in h264_frames[0]])
    # Resend the keyframe without its STAP-A (SPS+PPS): the depacketizer restores them.
    idr_only = [p for p in h264_frames[0] if p[3][0] & 0x1F != 24]
    seq = (h264_frames[0][-1][0] + 1) & 0xFFFF
    renumbered = [((seq + i) & 0xFFFF, 999, p[2], p[3]) for i, p in enumerate(idr_only)]
    frames = feed(depacketizer, renumbered)
    assert len(frames) == 1 and frames[0].keyframe
    assert frames[0].data.startswith(b"\x00\x00\x00\x01" + depacketizer.params.sps)  # type: ignore[operator]


def test_h264_rejects_unsupported_packetization():
    with pytest.raises(ValueError, match="unsupported"):
        H264Payload.parse(bytes([25, 0, 0]))  # STAP-B (interleaved mode)
    with pytest.raises(ValueError, match="truncated"):
        H264Payload.parse(bytes([24, 0, 9, 0x67]))  # STAP-A unit longer than the payload


# --------------------------------------------------------------------------- Opus


def test_opus_one_packet_one_frame_with_durations():
    packets = opus_packets(10)
    frames = feed(OpusDepacketizer(), packets)
    assert len(frames) == 10 and all(f.keyframe and f.duration == 960 for f in frames)
    frames = feed(OpusDepacketizer(), packets[:3] + packets[5:])
    assert len(frames) == 8 and frames[3].after_loss and not frames[4].after_loss


def test_opus_packet_durations_from_the_toc():
    assert packet_samples(bytes([0xF8, 0xFF, 0xFE])) == 960  # CELT FB 20 ms, one frame
    assert packet_samples(bytes([0x09])) == 960 * 2  # SILK NB 20 ms, code 1: two frames
    assert packet_samples(bytes([0x1B, 0x02])) == 2 * 2880  # code 3: two 60 ms SILK frames
    assert packet_samples(bytes([0x1B, 0x05])) == 0  # 300 ms: invalid
    assert packet_samples(b"") == 0
    head = opus_head()
    assert head[:8] == b"OpusHead" and len(head) == 19 and head[9] == 2


def test_factory_knows_the_webrtc_codecs():
    assert isinstance(depacketizer_for("vp8"), Vp8Depacketizer)
    assert isinstance(depacketizer_for("H264"), H264Depacketizer)
    assert isinstance(depacketizer_for("opus"), OpusDepacketizer)
    with pytest.raises(UnsupportedCodecError):
        depacketizer_for("PCMU")


def test_random_reordering_through_buffer_and_depacketizer(vp8_frames):
    rng = random.Random(7)
    packets = [p for frame in vp8_frames for p in frame]
    jittered = sorted(packets, key=lambda p: packets.index(p) + rng.uniform(0, 4))
    buffer: ReorderBuffer[tuple[int, int, bool, bytes]] = ReorderBuffer()
    depacketizer = Vp8Depacketizer()
    frames = []
    for packet in jittered:
        for seq, ts, marker, payload in buffer.push(packet[0], packet, now=0.0):
            frames.extend(depacketizer.push(seq, ts, marker, payload, 0.0))
    assert len(frames) == 40 and not any(f.after_loss for f in frames)


# --------------------------------------------------------------------------- captured fixtures


def depacketize(name: str, depacketizer: Depacketizer) -> list[EncodedFrame]:
    packets = [(p.sequence_number, p.timestamp, bool(p.marker), p.payload)
               for p in rtp_packets(name)]
    return feed(depacketizer, packets)


@pytest.mark.parametrize("codec,size", [
    ("vp8", (640, 480)), ("vp8", (1280, 720)), ("h264", (640, 480)), ("h264", (1280, 720))])
def test_captured_frames_decode_to_the_test_pattern(codec, size):
    depacketizer = depacketizer_for(codec)
    frames = depacketize(f"{codec}-aiortc-{size[0]}x{size[1]}.bin", depacketizer)
    assert len(frames) == 20 and depacketizer.dropped_frames == 0
    assert [f.keyframe for f in frames] == [i % 10 == 0 for i in range(20)]
    assert [f.size for f in frames if f.size] == [size, size]
    decoder = av.CodecContext.create(codec, "r")
    pictures = [p for f in frames for p in decoder.decode(av.Packet(f.data))]
    pictures += decoder.decode(None)
    assert len(pictures) == 20
    for index, picture in enumerate(pictures):
        assert (picture.width, picture.height) == size
        bgr = picture.to_ndarray(format="bgr24")
        assert read_frame_number(bgr) == index  # the frame number drawn into the pattern
        assert bgr[size[1] - 4, 4].min() > 200  # the white colour bar, bottom left


def test_captured_chromium_stream_comes_out_whole():
    frames = depacketize("vp8-chromium-l1t3.bin", Vp8Depacketizer())
    assert len(frames) == 87 and not any(f.after_loss for f in frames)
    assert [(i, f.size) for i, f in enumerate(frames) if f.keyframe] == [
        (0, (640, 480)), (86, (480, 360))]
    decoder = av.CodecContext.create("vp8", "r")
    sizes = [(p.width, p.height) for f in frames for p in decoder.decode(av.Packet(f.data))]
    assert sizes == [(640, 480)] * 86 + [(480, 360)]
    # The same stream with the keyframe's second packet lost: the keyframe is dropped,
    # the next frame is flagged.
    packets = rtp_packets("vp8-chromium-l1t3.bin")
    assert packets[1].timestamp == packets[0].timestamp
    second = next(p.timestamp for p in packets if p.timestamp != packets[0].timestamp)
    kept = [(p.sequence_number, p.timestamp, bool(p.marker), p.payload)
            for i, p in enumerate(packets) if i != 1]
    depacketizer = Vp8Depacketizer()
    frames = feed(depacketizer, kept)
    assert depacketizer.dropped_frames == 1 and len(frames) == 86
    assert frames[0].timestamp == second and frames[0].after_loss
    assert not any(f.after_loss for f in frames[1:])
