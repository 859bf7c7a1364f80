"""A consumer with a temporal layer selector, fed Chromium's VP8 L1T3 capture.

What the subscriber receives is read back from the bytes at the send port: sequence
numbers without gaps, picture ids that go up by one per frame, only the selected TIDs,
and frames that a VP8 decoder decodes.
"""

from __future__ import annotations

import itertools

import av
from aiortc.rtp import RtpPacket

from mediaserver.codecs import PacketFlags, PictureIdRewriter, TemporalLayerSelector
from mediaserver.codecs.vp8 import Vp8Descriptor, shift_descriptor, vp8_flags
from mediaserver.consumer import Consumer
from recorder.depacketizer import Vp8Depacketizer
from tests.fakes import FakeSendPort, fake_producer, send_parameters
from tests.rtp_fixtures import rtp_packets

FIXTURE = "vp8-chromium-l1t3.bin"


def l1t3_consumer(target: int) -> tuple[Consumer, FakeSendPort]:
    producer, _source = fake_producer(kind="video", codec="VP8")
    port = FakeSendPort()
    consumer = Consumer("d-1-0", "video", producer, producer.templates, port, 512,
                        TemporalLayerSelector(2, current=target))
    assert isinstance(consumer.selector, TemporalLayerSelector)
    consumer.selector.target = target
    port.negotiate(send_parameters())
    return consumer, port


def feed(consumer: Consumer, packets: list[RtpPacket]) -> None:
    for packet in packets:
        consumer.write(packet, vp8_flags(packet.payload))


def descriptors(port: FakeSendPort) -> list[tuple[RtpPacket, Vp8Descriptor]]:
    out = []
    for data in port.sent:
        packet = RtpPacket.parse(data)
        out.append((packet, Vp8Descriptor.parse(packet.payload)))
    return out


def decoded_frames(received: list[tuple[RtpPacket, Vp8Descriptor]]) -> int:
    depacketizer = Vp8Depacketizer()
    frames = []
    for packet, _ in received:
        frames += depacketizer.push(packet.sequence_number, packet.timestamp,
                                    bool(packet.marker), packet.payload, 0.0)
    assert not any(f.after_loss for f in frames)
    codec = av.CodecContext.create("vp8", "r")
    return sum(len(codec.decode(av.Packet(f.data))) for f in frames)


async def test_dropping_tl2_keeps_sequence_numbers_and_picture_ids_continuous():
    packets = rtp_packets(FIXTURE)
    consumer, port = l1t3_consumer(target=1)
    feed(consumer, packets)
    received = descriptors(port)
    skipped = [p for p in packets if vp8_flags(p.payload).temporal_id == 2]
    assert len(received) == len(packets) - len(skipped) and consumer.packets_skipped == len(skipped)
    assert {d.temporal_id for _, d in received} == {0, 1}
    seqs = [p.sequence_number for p, _ in received]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
    starts = [d for _, d in received if d.frame_start]
    ids = [d.picture_id for d in starts]
    assert all((b - a) & 0x7FFF == 1 for a, b in itertools.pairwise(ids))
    assert ids[0] == 12701  # the first frame keeps its id
    # TL0PICIDX is the publisher's: every TL0 frame is still there.
    tl0 = [d.tl0_pic_idx for d in starts if d.temporal_id == 0]
    assert all((b - a) & 0xFF == 1 for a, b in itertools.pairwise(tl0))
    # Timestamps are the publisher's (shifted): the dropped frames' time simply passes.
    stamps = sorted({p.timestamp for p, _ in received})
    assert len(stamps) == len(starts)
    assert decoded_frames(received) == len(starts)


async def test_late_copies_of_dropped_packets_are_refused_and_kept_ones_keep_their_numbers():
    packets = rtp_packets(FIXTURE)
    consumer, port = l1t3_consumer(target=0)
    feed(consumer, packets[:40])
    sent_before = {RtpPacket.parse(d).payload: d for d in port.sent}
    count = len(port.sent)
    # The publisher retransmits everything of the first 40 packets (after NACKs upstream).
    feed(consumer, packets[:40])
    resent = port.sent[count:]
    assert resent, "the kept packets are forwarded again"
    for data in resent:
        packet = RtpPacket.parse(data)
        assert vp8_flags(packet.payload).temporal_id == 0
        assert sent_before[packet.payload][2:4] == data[2:4]  # the same output number


async def test_switching_down_then_up_keeps_the_stream_decodable():
    packets = rtp_packets(FIXTURE)
    consumer, port = l1t3_consumer(target=2)
    selector = consumer.selector
    assert isinstance(selector, TemporalLayerSelector)
    feed(consumer, packets[:30])
    selector.target = 0
    feed(consumer, packets[30:80])
    selector.target = 2
    feed(consumer, packets[80:])
    received = descriptors(port)
    seqs = [p.sequence_number for p, _ in received]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
    starts = [d for _, d in received if d.frame_start]
    ids = [d.picture_id for d in starts]
    assert all((b - a) & 0x7FFF == 1 for a, b in itertools.pairwise(ids))
    assert {d.temporal_id for d in starts} == {0, 1, 2}
    assert decoded_frames(received) == len(starts)


def test_descriptor_shift_keeps_the_length_and_wraps():
    long_id = bytes.fromhex("90e0ffff3220") + b"data"  # 15-bit id 0x7fff, TL0PICIDX 0x32
    shifted = shift_descriptor(long_id, 1, -0x33)
    assert len(shifted) == len(long_id)
    descriptor = Vp8Descriptor.parse(shifted)
    assert (descriptor.picture_id, descriptor.tl0_pic_idx) == (0, 0xFF)
    assert shifted[descriptor.offset:] == b"data"
    short_id = bytes.fromhex("90c07f0520") + b"x"  # 7-bit id 127, TL0PICIDX 5
    assert Vp8Descriptor.parse(shift_descriptor(short_id, 2, 0)).picture_id == 1
    assert shift_descriptor(b"\x10abc", 5, 5) == b"\x10abc"  # no extension: unchanged


def test_picture_ids_after_a_switch_continue_from_the_last_sent():
    rewriter = PictureIdRewriter()
    payload = bytes.fromhex("90e08064") + b"\x10data"  # id 100, no TL0PICIDX
    assert rewriter.rewrite(payload, PacketFlags(start=True, picture_id=100)) == payload
    other = bytes.fromhex("90e09388") + b"\x10data"  # id 5000 in another simulcast stream
    flags = PacketFlags(keyframe=True, start=True, picture_id=5000)
    rewriter.switch(flags)
    out = rewriter.rewrite(other, flags)
    assert out is not None and Vp8Descriptor.parse(out).picture_id == 101


def test_late_packets_keep_the_id_their_frame_was_sent_with():
    rewriter = PictureIdRewriter()
    def frame(picture_id: int) -> tuple[bytes, PacketFlags]:
        payload = bytes([0x90, 0x80, 0x80 | picture_id >> 8, picture_id & 0xFF]) + b"\x10data"
        return payload, PacketFlags(start=True, picture_id=picture_id)

    assert not rewriter.active  # nothing dropped: the forwarder does not even ask
    rewriter.drop(frame(101)[1])
    assert rewriter.active
    out = rewriter.rewrite(*frame(102))
    assert out is not None and Vp8Descriptor.parse(out).picture_id == 101
    assert rewriter.rewrite(*frame(100)) == frame(100)[0]  # sent before the first drop
    assert rewriter.rewrite(*frame(101)) is None  # a retransmission of the dropped frame
    again = rewriter.rewrite(*frame(102))
    assert again is not None and Vp8Descriptor.parse(again).picture_id == 101
