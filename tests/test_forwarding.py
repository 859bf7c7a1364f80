"""Real aiortc peers over loopback through the SFU: pixels and audio arrive intact."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from aiortc import RTCSessionDescription

from mediaserver import Consumer, MediaConfig, MediaServer, Producer
from tests.fakes import Member
from tests.peers import Subscriber, make_publisher_offer, wait_for


def rtp_consumers(producer: Producer) -> list[Consumer]:
    return [d for d in producer.downstreams if isinstance(d, Consumer)]


@pytest.fixture
async def server():
    srv = MediaServer(MediaConfig(ice_addresses=("127.0.0.1",), keyframe_interval=0.5))
    yield srv
    await srv.close()


async def publish(server: MediaServer, codec: str = "VP8", audio: bool = True):
    room = server.room("bed-1")
    ward = room.join("ward", "ward", Member())
    pc, offer, _tracks = await make_publisher_offer(codec=codec, audio=audio)
    publication, answer = await room.publish(ward, offer)
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    return room, ward, pc, publication


async def subscribe(room, stream_id: str) -> Subscriber:
    expert = room.join("expert", "expert", Member())
    sub = Subscriber()
    subscription, offer = await room.subscribe(expert, stream_id)
    await room.answer(expert, subscription.id, await sub.answer(offer))
    sub.participant = expert  # type: ignore[attr-defined]
    return sub


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_three_subscribers_decode_the_right_pictures_and_tone(server, codec):
    room, _ward, pub_pc, publication = await publish(server, codec)
    assert [p.codec_name for p in publication.producers] == [codec, "opus"]
    subs = [await subscribe(room, publication.id) for _ in range(3)]
    await wait_for(lambda: all(s.received.video_frames >= 45 and
                               len(s.received.audio_samples) >= 60 for s in subs), 30)
    for sub in subs:
        r = sub.received
        # Consecutive frame numbers decoded from the picture itself: real content, in order.
        numbers = r.frame_numbers[-30:]
        assert all(b > a for a, b in itertools.pairwise(numbers)), numbers
        assert r.mean_difference < 12, r.mean_difference
        assert abs(r.audio_frequency() - 440) < 15
    # Forwarded, not transcoded: every copy carries the publisher's codec.
    video = publication.producers[0]
    assert video.packets_received > 0
    assert all(c.packets_sent > 0 for c in rtp_consumers(video))
    await asyncio.gather(*(s.close() for s in subs))
    await pub_pc.close()


async def test_late_joiner_starts_on_a_keyframe(server):
    room, _ward, pub_pc, publication = await publish(server, audio=False)
    first = await subscribe(room, publication.id)
    await wait_for(lambda: first.received.video_frames >= 30)
    requests_before = publication.producers[0].keyframe_requests_sent
    late = await subscribe(room, publication.id)
    await wait_for(lambda: late.received.video_frames >= 10)
    assert publication.producers[0].keyframe_requests_sent > requests_before
    # The late joiner's first decoded picture is already right: it started at a keyframe.
    assert late.received.worst_difference < 25, late.received.worst_difference
    await first.close()
    await late.close()
    await pub_pc.close()


async def test_subscriber_leaving_does_not_disturb_others(server):
    room, _ward, pub_pc, publication = await publish(server, audio=False)
    a = await subscribe(room, publication.id)
    b = await subscribe(room, publication.id)
    await wait_for(lambda: a.received.video_frames >= 15 and b.received.video_frames >= 15)
    await a.pc.close()  # crash: no leave message
    await wait_for(lambda: len(rtp_consumers(publication.producers[0])) == 1, 40)
    before = b.received.video_frames
    await wait_for(lambda: b.received.video_frames >= before + 30)
    await b.close()
    await pub_pc.close()


async def test_closing_the_room_closes_everything_once(server):
    room, _ward, pub_pc, publication = await publish(server)
    sub = await subscribe(room, publication.id)
    await wait_for(lambda: sub.received.video_frames >= 5)
    producers = list(publication.producers)
    consumers = [c for p in producers for c in rtp_consumers(p)]
    room.close()
    room.close()
    assert room.closed and not room.participants
    assert all(p.closed for p in producers) and all(c.closed for c in consumers)
    await room.wait_closed()
    assert publication.pc.connectionState == "closed"
    await sub.close()
    await pub_pc.close()


async def test_subscriber_plis_reach_the_publisher_throttled(server):
    room, _ward, pub_pc, publication = await publish(server, audio=False)
    video_sender = pub_pc.getSenders()[0]
    upstream = []
    original = video_sender._send_keyframe

    def counting_keyframe() -> None:
        upstream.append(asyncio.get_running_loop().time())
        original()

    video_sender._send_keyframe = counting_keyframe  # the publisher sees each PLI arrive
    subs = [await subscribe(room, publication.id) for _ in range(3)]
    await wait_for(lambda: all(s.received.video_frames >= 10 for s in subs))
    await asyncio.sleep(1.0)
    upstream.clear()
    # 3 subscribers x 20 PLIs over ~1 s: 60 requests.
    for _ in range(20):
        for sub in subs:
            receiver = sub.pc.getReceivers()[0]
            ssrc = receiver.getSynchronizationSources()[0].source
            await receiver._send_rtcp_pli(ssrc)
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.8)  # let a deferred request go out
    assert 2 <= len(upstream) <= 4, upstream
    gaps = [b - a for a, b in itertools.pairwise(upstream)]
    assert min(gaps) >= 0.45, gaps
    await asyncio.gather(*(s.close() for s in subs))
    await pub_pc.close()


async def test_readers_see_every_packet_and_the_end(server):
    from mediaserver.codecs.vp8 import vp8_keyframe_start
    from tests.fakes import QueueReader

    room, _ward, pub_pc, publication = await publish(server, audio=False)
    video = publication.producers[0]

    class Reader(QueueReader):
        def __init__(self) -> None:
            super().__init__("reader", video)
            self.packets_seen: list[int] = []
            self.keyframes = 0

        def write(self, packet, flags) -> bool:  # type: ignore[no-untyped-def]
            self.packets_seen.append(packet.sequence_number)
            self.keyframes += vp8_keyframe_start(packet.payload)
            return True

    class Broken(Reader):
        def write(self, packet, flags) -> bool:  # type: ignore[no-untyped-def]
            raise RuntimeError("boom")

    reader, broken = Reader(), Broken()
    video.add_downstream(broken)
    video.add_downstream(reader)
    video.request_keyframe()
    await wait_for(lambda: reader.keyframes >= 1 and len(reader.packets_seen) > 100)
    # In order, no gaps on loopback; a failing reader is dropped without disturbing the others.
    gaps = sum(1 for a, b in itertools.pairwise(reader.packets_seen) if (b - a) & 0xFFFF != 1)
    assert gaps == 0
    assert broken not in video.downstreams
    room.close()
    assert reader.ended == 1 and broken.ended == 0
    await pub_pc.close()


async def test_a_room_with_only_service_participants_left_closes():
    server = MediaServer(MediaConfig())
    created = []
    server.directory.watch(created.append)
    room = server.room("r")
    assert created == [room]
    service = Member(service=True)
    recorder = room.join("recorder", "recorder", service)
    ward = room.join("ward", "ward", Member())
    room.leave(ward)  # the last participant that is not a service: the room closes itself
    assert room.closed and server.directory.local_names() == ()
    assert server.directory.local("r") is None
    assert service.kinds()[-1] == "RoomClosed" and recorder.closed
    await server.close()
