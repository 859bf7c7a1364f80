"""Producer without peers: one parse per packet (while someone reads the flags), one fan-out
to every kind of downstream."""

from __future__ import annotations

import asyncio

import pytest

from mediaserver.codecs import NO_FLAGS, PacketFlags
from mediaserver.errors import ClosedError
from tests.fakes import (
    VP8_CONTINUATION,
    VP8_DELTA,
    VP8_KEYFRAME,
    FakeSendPort,
    QueueReader,
    fake_producer,
    rtp,
    send_parameters,
)


class FlagsSeen(QueueReader):
    """Keeps the flags object of every write, to check they are parsed once per packet."""

    def __init__(self, reader_id: str, upstream: object) -> None:
        super().__init__(reader_id, upstream, reads_flags=True)  # type: ignore[arg-type]
        self.flags: list[PacketFlags] = []

    def write(self, packet, flags) -> bool:  # type: ignore[no-untyped-def]
        self.flags.append(flags)
        return super().write(packet, flags)


async def test_every_downstream_gets_every_packet_with_the_same_parsed_flags():
    producer, source = fake_producer()
    a, b = FlagsSeen("a", producer), FlagsSeen("b", producer)
    producer.add_downstream(a)
    producer.add_downstream(b)
    assert producer.downstreams == (a, b)
    for seq, payload in ((10, VP8_DELTA), (11, VP8_KEYFRAME), (12, VP8_CONTINUATION)):
        source.feed(rtp(seq, payload=payload))
    assert [p.sequence_number for p in a.packets()] == [10, 11, 12]
    assert [p.sequence_number for p in b.packets()] == [10, 11, 12]
    assert [f.keyframe for f in a.flags] == [False, True, False]
    # One parse per packet: both readers got the very same flags objects.
    assert all(x is y for x, y in zip(a.flags, b.flags, strict=True))
    assert producer.packets_received == 3 and producer.keyframes_seen == 1


async def test_audio_packets_carry_no_flags():
    producer, source = fake_producer("s-1-1", kind="audio", codec="opus")
    reader = FlagsSeen("r", producer)
    producer.add_downstream(reader)
    source.feed(rtp(1, payload=VP8_KEYFRAME, payload_type=111))  # bytes mean nothing in opus
    assert reader.flags == [NO_FLAGS]


async def test_a_failing_downstream_is_removed_and_the_others_go_on():
    producer, source = fake_producer()

    class Broken(QueueReader):
        def write(self, packet, flags) -> bool:  # type: ignore[no-untyped-def]
            raise RuntimeError("boom")

    broken, reader = Broken("broken", producer), QueueReader("ok", producer)
    producer.add_downstream(broken)
    producer.add_downstream(reader)
    source.feed(rtp(1))
    source.feed(rtp(2))
    assert producer.downstreams == (reader,)
    assert [p.sequence_number for p in reader.packets()] == [1, 2]


async def test_sender_reports_reach_downstreams_and_new_ones_get_the_last():
    producer, source = fake_producer()
    early = QueueReader("early", producer)
    producer.add_downstream(early)
    source.report(1 << 32, 9000)
    late = QueueReader("late", producer)
    producer.add_downstream(late)
    assert early.reports == [(1 << 32, 9000)] and late.reports == [(1 << 32, 9000)]
    assert producer.last_sender_report == (1 << 32, 9000)


async def test_keyframe_requests_are_throttled_and_repeated_until_a_keyframe_arrives():
    producer, source = fake_producer(keyframe_interval=0.1)
    producer.add_downstream(QueueReader("r", producer))
    producer.request_keyframe()
    producer.request_keyframe()  # inside the interval: deferred, not sent twice
    await asyncio.sleep(0)
    assert source.keyframe_requests == 1
    await asyncio.sleep(0.25)  # the deferred request, then a repeat: still no keyframe
    assert source.keyframe_requests >= 2
    source.feed(rtp(1, payload=VP8_KEYFRAME))
    sent = source.keyframe_requests
    await asyncio.sleep(0.25)
    assert source.keyframe_requests == sent  # the keyframe came: no more repeats
    assert producer.keyframe_requests_sent == sent


async def test_close_tells_each_downstream_once_and_never_calls_back():
    producer, source = fake_producer()
    reader = QueueReader("r", producer)
    port = FakeSendPort()
    from mediaserver.consumer import Consumer

    consumer = Consumer("c", "video", producer, producer.templates, port, 16)
    producer.add_downstream(reader)
    producer.add_downstream(consumer)
    port.negotiate(send_parameters())
    producer.close()
    producer.close()  # twice: nothing more
    assert reader.ended == 1 and reader.closed
    assert consumer.closed and port.closed
    assert producer.downstreams == ()
    source.feed(rtp(1, payload=VP8_KEYFRAME))  # a straggler after close reaches nobody
    assert reader.packets() == [] and port.sent == []


async def test_calls_after_close_raise_closed_error():
    producer, _source = fake_producer()
    producer.close()
    with pytest.raises(ClosedError):
        producer.add_downstream(QueueReader("r", producer))
    producer.request_keyframe()  # a no-op, not an error: downstreams may still ask


async def test_a_downstream_that_closes_itself_is_detached():
    producer, source = fake_producer()
    reader, other = QueueReader("r", producer), QueueReader("o", producer)
    producer.add_downstream(reader)
    producer.add_downstream(other)
    reader.close()
    reader.close()
    assert producer.downstreams == (other,)
    source.feed(rtp(5))
    assert reader.packets() == [] and len(other.packets()) == 1
    producer.close()
    assert reader.ended == 0 and other.ended == 1  # a closed reader is not told again


async def test_payloads_are_parsed_only_while_someone_reads_the_flags():
    producer, source = fake_producer()
    plain = QueueReader("plain", producer)
    producer.add_downstream(plain)
    source.feed(rtp(1, payload=VP8_KEYFRAME))
    assert producer.keyframes_seen == 0  # nobody waits for a keyframe: nothing is parsed
    producer.request_keyframe()  # a new subscriber waits: parse until the keyframe
    source.feed(rtp(2, payload=VP8_DELTA))
    source.feed(rtp(3, payload=VP8_KEYFRAME))
    source.feed(rtp(4, payload=VP8_KEYFRAME))
    assert producer.keyframes_seen == 1  # the awaited one; parsing stopped after it
    layered = FlagsSeen("layered", producer)  # a layer selector reads every packet
    producer.add_downstream(layered)
    source.feed(rtp(5, payload=VP8_KEYFRAME))
    assert producer.keyframes_seen == 2 and layered.flags[-1].keyframe
    producer.remove_downstream(layered)
    source.feed(rtp(6, payload=VP8_KEYFRAME))
    assert producer.keyframes_seen == 2
    assert [p.sequence_number for p in plain.packets()] == [1, 2, 3, 4, 5, 6]
    producer.close()
