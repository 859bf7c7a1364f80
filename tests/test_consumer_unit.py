"""Consumer without peers: bytes at a fake send port, keyframe start, NACKs, sender reports."""

from __future__ import annotations

import asyncio
import itertools
import struct

from aiortc.rtp import RtpPacket

from mediaserver.codecs import KEYFRAME_START, NO_FLAGS, PacketFlags
from mediaserver.consumer import Consumer
from tests.fakes import (
    VP8_DELTA,
    VP8_KEYFRAME,
    FakeSendPort,
    fake_producer,
    rtp,
    send_parameters,
)


def consumer_on(kind: str = "video", buffer: int = 64, selector=None):  # type: ignore[no-untyped-def]
    producer, source = fake_producer(kind=kind, codec="VP8" if kind == "video" else "opus")
    port = FakeSendPort()
    consumer = Consumer("d-1-0", kind, producer, producer.templates, port, buffer, selector)
    producer.add_downstream(consumer)
    return producer, source, consumer, port


def parsed(data: bytes) -> RtpPacket:
    return RtpPacket.parse(data)


async def test_packets_are_rewritten_to_the_negotiated_ssrc_pt_and_a_contiguous_sequence():
    _producer, source, consumer, port = consumer_on()
    source.feed(rtp(500, 1000, VP8_KEYFRAME))  # before negotiation: nothing can go out
    port.negotiate(send_parameters(ssrc=0xCAFE))
    for seq in range(1000, 1005):
        source.feed(rtp(seq, 3000 * seq, VP8_KEYFRAME if seq == 1000 else VP8_DELTA,
                        marker=seq % 2))
    packets = [parsed(d) for d in port.sent]
    assert len(packets) == 5 and consumer.packets_sent == 5 and consumer.started
    assert {p.ssrc for p in packets} == {0xCAFE} and {p.payload_type for p in packets} == {100}
    seqs = [p.sequence_number for p in packets]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
    stamps = [p.timestamp for p in packets]
    assert all((b - a) & 0xFFFFFFFF == 3000 for a, b in itertools.pairwise(stamps))
    assert [p.marker for p in packets] == [0, 1, 0, 1, 0]
    assert packets[0].payload == VP8_KEYFRAME and packets[1].payload == VP8_DELTA


async def test_video_starts_at_a_keyframe_and_asks_upstream_for_one():
    producer, source, consumer, port = consumer_on()
    port.negotiate(send_parameters())
    assert consumer.waiting_for_keyframe
    await asyncio.sleep(0)
    assert source.keyframe_requests == 1 and producer.keyframe_requests_sent == 1
    assert not consumer.write(rtp(1), NO_FLAGS)
    assert not consumer.write(rtp(2), PacketFlags(start=True))
    assert port.sent == []
    assert consumer.write(rtp(3), KEYFRAME_START)
    assert not consumer.waiting_for_keyframe
    assert consumer.write(rtp(4), NO_FLAGS)  # started: everything after goes out
    assert len(port.sent) == 2
    assert not consumer.write(rtp(2), NO_FLAGS)  # older than the start: never forwarded


async def test_audio_starts_at_once():
    _producer, source, consumer, port = consumer_on("audio")
    port.negotiate(send_parameters("audio"))
    source.feed(rtp(7, payload=b"\x01\x02", payload_type=111))
    assert consumer.started and len(port.sent) == 1
    assert parsed(port.sent[0]).payload_type == 109


async def test_a_subscriber_pli_goes_upstream():
    _producer, source, consumer, port = consumer_on()
    port.negotiate(send_parameters())
    source.feed(rtp(1, payload=VP8_KEYFRAME))
    await asyncio.sleep(0.6)  # past the throttle interval of the first request
    before = source.keyframe_requests
    port.pli()
    await asyncio.sleep(0)
    assert consumer.keyframe_requests == 1 and source.keyframe_requests == before + 1


async def test_nacks_are_answered_from_the_buffer_over_rtx():
    _producer, source, consumer, port = consumer_on()
    port.negotiate(send_parameters(ssrc=0x1000))
    source.feed(rtp(40, payload=VP8_KEYFRAME))
    source.feed(rtp(41))
    original = port.sent[1]
    lost = parsed(original).sequence_number
    port.nack(lost)
    assert consumer.retransmissions == 1 and len(port.sent) == 3
    rtx = parsed(port.sent[2])
    assert rtx.payload_type == 101 and rtx.ssrc == 0x1001
    assert struct.unpack("!H", rtx.payload[:2])[0] == lost  # RFC 4588: the original seq
    assert rtx.payload[2:] == VP8_DELTA
    port.nack((lost + 100) & 0xFFFF)  # never sent: nothing to answer
    assert consumer.retransmissions == 1


async def test_nacks_without_rtx_resend_the_same_packet():
    _producer, source, consumer, port = consumer_on()
    port.negotiate(send_parameters(rtx=False))
    source.feed(rtp(40, payload=VP8_KEYFRAME))
    port.nack(parsed(port.sent[0]).sequence_number)
    assert port.sent[1] == port.sent[0] and consumer.retransmissions == 1


async def test_sender_reports_are_mapped_into_the_subscribers_timestamps():
    _producer, source, consumer, port = consumer_on()
    source.report(5 << 32, 90_000)  # before the start: kept for the first packet
    port.negotiate(send_parameters())
    source.feed(rtp(1, 90_000, VP8_KEYFRAME))
    out_ts = parsed(port.sent[0]).timestamp
    assert port.reports[-1] == (5 << 32, out_ts, 0, 0)
    source.feed(rtp(2, 93_000))
    source.report(6 << 32, 180_000)
    sent = consumer.octets_sent
    assert port.reports[-1] == (6 << 32, (out_ts + 90_000) & 0xFFFFFFFF, 2, sent)


async def test_without_a_publisher_report_the_first_packet_maps_wall_clock():
    _producer, source, _consumer, port = consumer_on()
    port.negotiate(send_parameters())
    source.feed(rtp(1, 1234, VP8_KEYFRAME))
    ntp, rtp_ts, packets, octets = port.reports[-1]
    assert ntp > 0 and rtp_ts == parsed(port.sent[0]).timestamp and packets == octets == 0


async def test_a_selector_is_asked_for_every_packet():
    class EverySecond:
        def __init__(self) -> None:
            self.asked = 0

        def select(self, flags: PacketFlags) -> bool:
            self.asked += 1
            return self.asked % 2 == 1

    selector = EverySecond()
    _producer, source, consumer, port = consumer_on("audio", selector=selector)
    port.negotiate(send_parameters("audio"))
    for seq in range(4):
        source.feed(rtp(seq, payload=b"\x01", payload_type=111))
    assert selector.asked == 4 and consumer.packets_sent == 2


async def test_close_detaches_and_later_writes_return_false():
    producer, source, consumer, port = consumer_on()
    port.negotiate(send_parameters())
    source.feed(rtp(1, payload=VP8_KEYFRAME))
    consumer.close()
    consumer.close()
    assert consumer.closed and port.closed and consumer not in producer.downstreams
    assert consumer.write(rtp(2), NO_FLAGS) is False  # the hot path never raises
    port.nack(parsed(port.sent[0]).sequence_number)
    assert consumer.retransmissions == 0
    assert consumer.stats().kind == "rtp" and consumer.stats().packets_sent == 1
