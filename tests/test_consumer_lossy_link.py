"""A viewer whose link loses packets but has room gets base-layer packets twice.

A consumer fed Chromium's VP8 L1T3 capture, its viewer played at a fake send port:
receiver reports of 5 % loss and a REMB far above what is sent turn on a second copy,
over RTX, of each TL0 packet and of each retransmission, and hold the viewer at TL0. The
same loss with a REMB that shows a full link (congestion) sends no copies.
"""

from __future__ import annotations

import asyncio

from aiortc.rtp import RtpPacket

from mediaserver.codecs import TemporalLayerSelector
from mediaserver.codecs.vp8 import Vp8Descriptor, vp8_flags
from mediaserver.consumer import Consumer
from mediaserver.layer_policy import LayerRates
from tests.fakes import FakeSendPort, fake_producer, send_parameters
from tests.rtp_fixtures import rtp_packets

FIXTURE = "vp8-chromium-l1t3.bin"
SSRC = 0xABCDEF01


def lossy_viewer(remb_factor: float) -> tuple[Consumer, FakeSendPort, list[RtpPacket]]:
    """A consumer that has forwarded half the capture and heard 5 % loss reported
    twice, with REMBs ``remb_factor`` times the rate it sends."""
    producer, _source = fake_producer(kind="video", codec="VP8")
    port = FakeSendPort()
    rates = LayerRates()  # measured by the producer in a server; here by the test
    consumer = Consumer("d-1-0", "video", producer, producer.templates, port, 512,
                        TemporalLayerSelector(2, current=2), rates)
    port.negotiate(send_parameters(ssrc=SSRC))
    packets = rtp_packets(FIXTURE)
    half = len(packets) // 2
    port.remb(1_000_000, 0.0)
    for packet in packets[:half]:
        flags = vp8_flags(packet.payload)
        rates.add(flags.temporal_id or 0, len(packet.payload), packet.timestamp)
        consumer.write(packet, flags)
    sent = sum(len(RtpPacket.parse(d).payload) for d in port.sent)
    port.remb(sent * 8 * remb_factor, 1.0)  # the rate sent over the last second
    port.receiver_report(0, 1000, 1.02)
    port.receiver_report(5, 1100, 1.04)
    port.receiver_report(10, 1200, 1.06)  # 5 % twice: smoothed 3.75 %
    port.remb(sent * 8 * remb_factor, 1.1)
    port.sent.clear()
    return consumer, port, packets[half:]


def split(port: FakeSendPort) -> tuple[list[RtpPacket], list[RtpPacket]]:
    packets = [RtpPacket.parse(d) for d in port.sent]
    return ([p for p in packets if p.ssrc == SSRC],
            [p for p in packets if p.ssrc == SSRC + 1])


def original_sequence(rtx: RtpPacket) -> int:
    return int.from_bytes(rtx.payload[:2], "big")


async def test_base_layer_packets_go_twice_on_a_lossy_link_with_room():
    consumer, port, rest = lossy_viewer(remb_factor=3.0)
    for packet in rest:
        consumer.write(packet, vp8_flags(packet.payload))
    await asyncio.sleep(0.05)  # the copies go a few ms after their originals
    media, rtx = split(port)
    base = [p for p in media if Vp8Descriptor.parse(p.payload).temporal_id == 0]
    # Only the base layer is forwarded to such a viewer (``LossCap``), each packet twice.
    assert base and base == media
    assert sorted(original_sequence(p) for p in rtx) == sorted(p.sequence_number for p in base)
    by_seq = {p.sequence_number: p for p in base}
    assert all(p.payload_type == 101 and p.payload[2:] == by_seq[original_sequence(p)].payload
               for p in rtx)
    assert consumer.stats().copies_sent == len(rtx)

    # A NACK on this link is answered twice too.
    port.sent.clear()
    wanted = media[-1].sequence_number
    port.nack(wanted)
    await asyncio.sleep(0.05)
    _, answers = split(port)
    assert [original_sequence(p) for p in answers] == [wanted, wanted]
    assert len({p.sequence_number for p in answers}) == 2  # each its own RTX number


async def test_no_copies_when_the_viewers_link_is_full():
    consumer, port, rest = lossy_viewer(remb_factor=1.0)  # loss at capacity: congestion
    for packet in rest:
        consumer.write(packet, vp8_flags(packet.payload))
    await asyncio.sleep(0.05)
    media, rtx = split(port)
    assert media and rtx == [] and consumer.stats().copies_sent == 0


async def test_one_report_with_one_drop_in_three_packets_is_not_a_collapse():
    """Chromium reports every 200 ms or so: at a low layer a report covers a handful of
    packets. A 33 % report from one random drop must not move the estimate (judged
    report by report it did: 33 % is over the 25 % taken for a collapse)."""
    consumer, port, _rest = lossy_viewer(remb_factor=3.0)
    assert consumer.downlink is not None
    assert consumer.downlink.target(1.15) is None  # no limit: nothing seen of congestion
    port.receiver_report(11, 1203, 1.15, fraction_lost=1 / 3)
    assert consumer.downlink.target(1.15) is None


async def test_a_lossy_viewer_is_held_at_the_base_layer_until_the_loss_has_gone():
    consumer, port, _rest = lossy_viewer(remb_factor=3.0)
    assert isinstance(consumer.selector, TemporalLayerSelector)
    assert consumer.selector.target == 0  # 3.75 % smoothed: the base layer, 7.5 fps
    port.receiver_report(10, 1300, 2.0)  # no loss: 1.9 % smoothed, over ``leave``
    port.receiver_report(10, 1400, 3.0)  # 0.9 %
    port.remb(1e7, 11.9)
    assert consumer.selector.target == 0  # 10 s after the last lossy measurement: not yet
    port.remb(1e7, 12.1)
    assert consumer.selector.target == 2  # every layer again (the capture has TL0 to TL2)


async def test_no_copies_once_the_estimate_has_cut_the_viewer_down():
    """A thin viewer's REMB can read high for a moment (it starts high, it wanders);
    once its estimate has fallen under what it is sent, copies would only congest it."""
    consumer, port, rest = lossy_viewer(remb_factor=3.0)
    assert consumer.downlink is not None and consumer.downlink.remb is not None
    rate = consumer.downlink.remb / 3.0
    port.remb(rate * 0.5, 1.12)  # fell under what is sent: congestion
    port.remb(rate * 3.0, 1.15)  # high again a moment later
    for packet in rest:
        consumer.write(packet, vp8_flags(packet.payload))
    await asyncio.sleep(0.05)
    media, rtx = split(port)
    assert media and rtx == [] and consumer.stats().copies_sent == 0
