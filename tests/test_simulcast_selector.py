"""The simulcast selector, its policy, and a consumer switching streams (synthetic flags).

Two streams with unrelated sequence numbers, timestamps and picture ids (as a
simulcast publisher's are) are fed to one consumer; what the viewer receives is read
back from the bytes at the send port.
"""

from __future__ import annotations

import itertools

from aiortc.rtp import RtpPacket

from mediaserver.codecs import PacketFlags, SimulcastSelector
from mediaserver.codecs.vp8 import Vp8Descriptor
from mediaserver.consumer import Consumer
from mediaserver.layer_policy import LayerRates, choose_simulcast_layer
from tests.fakes import FakeSendPort, fake_producer, send_parameters


def flags(spatial: int, *, key: bool = False, start: bool = True, tid: int = 0,
          picture_id: int | None = None) -> PacketFlags:
    return PacketFlags(keyframe=key, start=start, temporal_id=tid, layer_sync=True,
                       tl0_pic_idx=0, picture_id=picture_id, spatial_id=spatial)


def test_selector_starts_at_a_keyframe_of_its_target_and_ignores_other_streams():
    selector = SimulcastSelector(target=1, max_temporal_id=2)
    assert not selector.select(flags(0, key=True))  # not the target
    assert not selector.select(flags(1))  # the target, but no keyframe yet
    assert selector.current is None
    assert selector.select(flags(1, key=True)) and selector.switched and selector.current == 1
    selector.switched = False
    assert selector.select(flags(1, tid=2))
    selector.target = 0  # a thinner downlink: stay on 1 until stream 0's keyframe
    assert selector.select(flags(1)) and not selector.select(flags(0))
    assert selector.select(flags(0, key=True)) and selector.current == 0 and selector.switched
    assert not selector.select(flags(1, key=True))  # the old stream is no longer ours


def test_selector_drops_temporal_layers_within_its_stream():
    selector = SimulcastSelector(target=0, max_temporal_id=2)
    selector.temporal.target = 0
    assert selector.select(flags(0, key=True))
    assert not selector.select(flags(0, tid=1)) and selector.select(flags(0, tid=0))


def rates(*per_tid: float) -> list[float]:
    out, total = [], 0.0
    for rate in per_tid:
        total += rate
        out.append(total)
    return out


def test_policy_picks_the_highest_stream_that_fits_else_the_lowest_with_fewer_layers():
    q, h, f = rates(50e3, 30e3, 60e3), rates(130e3, 70e3, 140e3), rates(600e3, 300e3, 600e3)
    # No estimate: the highest stream arriving, all its temporal layers.
    assert choose_simulcast_layer(None, [q, h, f], None, 2) == (2, 2)
    assert choose_simulcast_layer(None, [q, h, None], None, 2) == (1, 2)
    # A 400 kbit/s viewer gets h whole (340k + audio fits), a 250k one q whole.
    assert choose_simulcast_layer(400e3, [q, h, f], 2, 2) == (1, 2)
    assert choose_simulcast_layer(250e3, [q, h, f], 1, 2) == (0, 2)
    # Up needs a margin: h at 380k (340k + 40k audio) stays out from below...
    assert choose_simulcast_layer(382e3, [q, h, f], 0, 2) == (0, 2)
    # ...but is kept from above.
    assert choose_simulcast_layer(382e3, [q, h, f], 1, 2) == (1, 2)
    # Below q whole: q with the temporal layers that fit.
    assert choose_simulcast_layer(100e3, [q, h, f], 0, 2) == (0, 0)
    assert choose_simulcast_layer(500e3, [None, None, None], 2, 2) is None


def test_layer_rates_per_stream_are_what_the_policy_reads():
    measured = LayerRates(window=0.5)
    for frame in range(31):  # one second of 1,000-byte TL0 frames at 30 fps
        measured.add(0, 1000, frame * 3000)
    assert 200e3 < measured.cumulative()[0] < 260e3


def packet(seq: int, ts: int, payload: bytes, ssrc: int, marker: int = 1) -> RtpPacket:
    return RtpPacket(payload_type=96, sequence_number=seq, timestamp=ts, ssrc=ssrc,
                     marker=marker, payload=payload)


def vp8(picture_id: int, tl0: int, key: bool) -> bytes:
    """A VP8 payload: descriptor with a 15-bit picture id, TL0PICIDX and TID 0 (Y set)."""
    descriptor = bytes([0x90, 0xE0, 0x80 | picture_id >> 8, picture_id & 0xFF, tl0, 0x20])
    frame = bytes([0x10 if key else 0x11]) + bytes(20)
    return descriptor + frame


async def test_consumer_switches_streams_at_a_keyframe_with_continuous_numbering():
    producer, _source = fake_producer(kind="video", codec="VP8")
    producer.spatial_layers = 2
    port = FakeSendPort()
    selector = SimulcastSelector(target=1, max_temporal_id=2)
    consumer = Consumer("d-1-0", "video", producer, producer.templates, port, 512, selector,
                        producer.layer_rates, producer)
    port.negotiate(send_parameters())
    assert consumer.selects_spatial and consumer.reads_flags
    # Each stream's clocks: the same capture instant is 1000 in f's timestamps and
    # 500_000 in q's (unrelated random bases, as a publisher's streams have).
    ntp = 0x1_0000_0000 * 100
    consumer.layer_sender_report(1, ntp, 1000)
    consumer.layer_sender_report(0, ntp, 500_000)
    seq_f, seq_q = 40_000, 7
    for frame in range(5):  # f: frames at 3000 ticks (30 fps), picture ids 900...
        payload = vp8(900 + frame, 50 + frame, key=frame == 0)
        consumer.write(packet(seq_f + frame, 1000 + 3000 * frame, payload, 0xF),
                       _flags(payload, 1))
        payload = vp8(10 + frame, 200 + frame, key=frame == 0)
        consumer.write(packet(seq_q + frame, 500_000 + 3000 * frame, payload, 0xA),
                       _flags(payload, 0))
    assert consumer.spatial_layer == 1 and len(port.sent) == 5
    selector.target = 0
    for frame in range(5, 10):  # q's keyframe comes at frame 6
        payload = vp8(900 + frame, 50 + frame, key=False)
        consumer.write(packet(seq_f + frame, 1000 + 3000 * frame, payload, 0xF),
                       _flags(payload, 1))
        payload = vp8(10 + frame, 200 + frame, key=frame == 6)
        consumer.write(packet(seq_q + frame, 500_000 + 3000 * frame, payload, 0xA),
                       _flags(payload, 0))
    assert consumer.spatial_layer == 0 and consumer.spatial_switches == 1
    sent = [RtpPacket.parse(data) for data in port.sent]
    # f frames 0-6 (the switch comes after f's frame 6), then q frames 6-9.
    assert len(sent) == 7 + 4
    seqs = [p.sequence_number for p in sent]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
    stamps = [p.timestamp for p in sent]
    steps = [(b - a) & 0xFFFFFFFF for a, b in itertools.pairwise(stamps)]
    # One clock for the viewer: q's frame 6 is the same instant as f's frame 6 (one
    # tick on: a new frame needs a new timestamp).
    assert steps == [3000] * 6 + [1] + [3000] * 3
    descriptors = [Vp8Descriptor.parse(p.payload) for p in sent]
    pictures = [d.picture_id for d in descriptors]
    assert pictures == list(range(900, 900 + 11)), pictures
    tl0 = [d.tl0_pic_idx for d in descriptors]
    assert tl0 == list(range(50, 50 + 11)), tl0
    assert {p.ssrc for p in sent} == {send_parameters().ssrc}
    # Sender reports follow the stream forwarded: q's clock mapped into the viewer's.
    ntp_out, rtp_out, *_ = port.reports[-1]
    assert ntp_out == ntp and rtp_out == (stamps[7] - 6 * 3000) & 0xFFFFFFFF
    producer.close()


def _flags(payload: bytes, spatial: int) -> PacketFlags:
    from mediaserver.codecs.vp8 import vp8_flags

    parsed = vp8_flags(payload)
    return PacketFlags(parsed.keyframe, parsed.start, parsed.temporal_id, parsed.layer_sync,
                       parsed.tl0_pic_idx, parsed.picture_id, parsed.size, spatial)
