"""Room without peers (fake transports): fan-out, close flowing downward, events, membership."""

from __future__ import annotations

import asyncio

import pytest
from aiortc.rtp import RtpPacket

from mediaserver import MediaConfig, MediaServer, Room, Seat
from mediaserver.errors import ClosedError, LimitError, NotFoundError
from mediaserver.events import (
    ParticipantJoined,
    ParticipantLeft,
    RoomClosed,
    StreamAdded,
    StreamEnded,
    StreamRemoved,
    SubscriptionClosed,
    TransportStateChanged,
)
from tests.fakes import (
    ANSWER,
    OFFER,
    VP8_DELTA,
    VP8_KEYFRAME,
    FakeSubscription,
    FakeTransports,
    Member,
    QueueReader,
    rtp,
)


@pytest.fixture(autouse=True)
def no_peer_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests run without aiortc peers: creating one fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a unit test created an RTCPeerConnection")

    monkeypatch.setattr("mediaserver.transport.RTCPeerConnection", refuse)


def new_room(name: str = "bed-1") -> tuple[Room, FakeTransports]:
    transports = FakeTransports()
    return Room(name, MediaConfig(transports=transports)), transports


async def published(room: Room, transports: FakeTransports):  # type: ignore[no-untyped-def]
    ward_member = Member()
    ward = room.join("ward", "ward", ward_member, seat=Seat.PUBLISHER)
    publication, answer = await room.publish(ward, OFFER)
    assert answer.startswith("v=0")
    return ward, ward_member, publication, transports.publications[-1]


async def subscribed(room: Room, transports: FakeTransports, stream_id: str,
                     name: str = "expert"):  # type: ignore[no-untyped-def]
    member = Member()
    participant = room.join(name, "expert", member)
    subscription, offer = await room.subscribe(participant, stream_id)
    assert offer.startswith("v=0")
    await room.answer(participant, subscription.id, ANSWER)
    fake = transports.subscriptions[-1]
    assert fake is subscription
    fake.connect()
    return participant, member, fake


def subscription_events(member: Member, subscription_ids: set[str]) -> list[object]:
    return [e for e in member.events
            if (isinstance(e, SubscriptionClosed) and e.subscription_id in subscription_ids)
            or (isinstance(e, TransportStateChanged) and e.transport_id in subscription_ids)]


async def test_a_packet_reaches_every_consumer_and_a_reader_through_one_interface():
    room, transports = new_room()
    _ward, _, publication, fake_pub = await published(room, transports)
    _e1, _, sub1 = await subscribed(room, transports, publication.id, "e1")
    _e2, _, sub2 = await subscribed(room, transports, publication.id, "e2")
    recorder = room.join("recorder", "recorder", Member(service=True))
    readers = room.attach(recorder, publication.id,
                          lambda producer: QueueReader(f"rec-{producer.id}", producer))
    assert len(readers) == 2  # video and audio
    video = publication.producers[0]
    assert video.downstreams == (sub1.consumers[0], sub2.consumers[0], readers[0])

    video_source = fake_pub.sources[0]
    video_source.feed(rtp(7000, 90_000, VP8_KEYFRAME, ssrc=0x5555))
    video_source.feed(rtp(7001, 93_000, VP8_DELTA, ssrc=0x5555, marker=1))

    for subscription in (sub1, sub2):
        port, parameters_ssrc = subscription.ports[0], subscription.consumers[0]
        packets = [RtpPacket.parse(data) for data in port.sent]
        assert [p.payload for p in packets] == [VP8_KEYFRAME, VP8_DELTA]
        assert {p.ssrc for p in packets} == {0x10000} and {p.payload_type for p in packets} == {100}
        assert (packets[1].sequence_number - packets[0].sequence_number) & 0xFFFF == 1
        assert packets[1].marker == 1 and parameters_ssrc.packets_sent == 2
    reader = readers[0]
    assert isinstance(reader, QueueReader)
    assert [(p.sequence_number, p.ssrc) for p in reader.packets()] == [(7000, 0x5555),
                                                                       (7001, 0x5555)]


async def test_attach_checks_membership_the_stream_and_asks_for_a_keyframe():
    room, transports = new_room()
    _ward, _, publication, fake_pub = await published(room, transports)
    reader_member = room.join("recorder", "recorder", Member(service=True))
    with pytest.raises(NotFoundError):
        room.attach(reader_member, "s-nope", lambda p: QueueReader("r", p))
    skipped = room.attach(reader_member, publication.id,
                          lambda p: QueueReader("r", p) if p.kind == "audio" else None)
    assert [r.id for r in skipped] == ["r"]
    room.attach(reader_member, publication.id, lambda p: QueueReader("v", p))
    await asyncio.sleep(0)
    assert fake_pub.sources[0].keyframe_requests == 1  # video only; audio has no keyframes
    room.leave(reader_member)
    assert all(r.closed for r in skipped)  # a member's readers leave with it
    with pytest.raises(ClosedError):
        room.attach(reader_member, publication.id, lambda p: QueueReader("late", p))


async def test_after_room_close_nobody_hears_about_its_subscriptions():
    room, transports = new_room()
    ward, ward_member, publication, fake_pub = await published(room, transports)
    subscribers = [await subscribed(room, transports, publication.id, f"e{i}") for i in range(3)]
    service = Member(service=True)
    recorder = room.join("recorder", "recorder", service)
    readers = room.attach(recorder, publication.id, lambda p: QueueReader(f"r-{p.id}", p))
    members = [ward_member, service, *(m for _, m, _ in subscribers)]
    for member in members:
        member.events.clear()

    room.close("server-shutdown")

    for member in members:
        assert member.events == [RoomClosed("server-shutdown")], member.events
    for _participant, _member, subscription in subscribers:
        assert subscription.closed and all(c.closed for c in subscription.consumers)
        assert all(port.closed for port in subscription.ports)
        # The network reporting the connection's end later is not heard either.
        subscription.connection_state("closed")
    fake_pub.connection_state("failed")
    assert all(member.events == [RoomClosed("server-shutdown")] for member in members)
    assert publication.closed and all(p.closed for p in publication.producers)
    assert all(isinstance(r, QueueReader) and r.ended == 1 for r in readers)
    assert ward.closed and not room.participants
    await room.wait_closed()


async def test_close_twice_is_a_no_op_and_calls_after_close_raise():
    room, transports = new_room()
    ward, _, publication, _ = await published(room, transports)
    expert, _, subscription = await subscribed(room, transports, publication.id)
    room.close()
    room.close()
    with pytest.raises(ClosedError):
        room.join("late", "expert", Member())
    with pytest.raises(ClosedError):
        await room.publish(ward, OFFER)
    with pytest.raises(ClosedError):
        await room.subscribe(expert, publication.id)
    with pytest.raises(ClosedError):
        await room.answer(expert, subscription.id, ANSWER)
    with pytest.raises(ClosedError):
        room.unpublish(ward, publication.id)
    with pytest.raises(ClosedError):
        room.unsubscribe(expert, subscription.id)
    with pytest.raises(ClosedError):
        room.attach(expert, publication.id, lambda p: QueueReader("r", p))
    room.leave(ward)  # leaving a closed room: nothing to do
    assert room.broadcast("vitals", {"device": "m"}) == 0


async def test_an_unpublished_stream_ends_its_subscriptions_and_readers_once():
    room, transports = new_room()
    ward, ward_member, publication, _ = await published(room, transports)
    expert, expert_member, subscription = await subscribed(room, transports, publication.id)
    service = Member(service=True)
    recorder = room.join("recorder", "recorder", service)
    [video_reader, audio_reader] = room.attach(recorder, publication.id,
                                               lambda p: QueueReader(f"r-{p.id}", p))
    expert_member.events.clear()
    ward_member.events.clear()
    room.unpublish(ward, publication.id)
    closed = [e for e in expert_member.events if isinstance(e, SubscriptionClosed)]
    assert closed == [SubscriptionClosed(subscription.id, publication.id, "stream-ended")]
    assert StreamRemoved(publication.id, ward.id) in expert_member.events
    assert expert_member.events.index(closed[0]) < expert_member.events.index(
        StreamRemoved(publication.id, ward.id))
    assert ward_member.events[-1] == StreamEnded(publication.id, "unpublished")
    assert subscription.id not in expert.subscriptions and subscription.closed
    for reader in (video_reader, audio_reader):
        assert isinstance(reader, QueueReader) and reader.ended == 1
    assert not room.closed  # the ward is still in it
    again, _answer = await room.publish(ward, OFFER)
    fresh = room.attach(recorder, again.id, lambda p: QueueReader(f"r-{p.id}", p))
    assert recorder.readers == fresh  # readers of ended tracks are dropped


async def test_a_failed_subscription_is_announced_to_its_subscriber():
    room, transports = new_room()
    _ward, ward_member, publication, _ = await published(room, transports)
    expert, expert_member, subscription = await subscribed(room, transports, publication.id)
    expert_member.events.clear()
    subscription.connection_state("failed")
    events = subscription_events(expert_member, {subscription.id})
    assert events == [
        TransportStateChanged(expert.id, subscription.id, "subscribe", "failed"),
        TransportStateChanged(expert.id, subscription.id, "subscribe", "closed"),
        SubscriptionClosed(subscription.id, publication.id, "failed"),
    ]
    assert TransportStateChanged(expert.id, subscription.id, "subscribe", "failed") in \
        ward_member.events  # connection-state goes to everyone
    assert subscription.id not in expert.subscriptions
    assert publication.producers[0].downstreams == ()


async def test_the_room_closes_when_its_last_person_leaves():
    server = MediaServer(MediaConfig(transports=FakeTransports()))
    room = server.room("bed-9")
    service = Member(service=True)
    room.join("recorder", "recorder", service)
    a = room.join("a", "ward", Member())
    b = room.join("b", "expert", Member())
    room.leave(a)
    assert not room.closed
    room.leave(b)
    assert room.closed and service.events[-1] == RoomClosed("empty")
    assert server.directory.local("bed-9") is None and server.room("bed-9") is not room
    await server.close()


async def test_a_service_leaving_does_not_close_the_room():
    room, _ = new_room()
    recorder = room.join("recorder", "recorder", Member(service=True))
    room.join("ward", "ward", Member())
    room.leave(recorder)
    assert not room.closed


async def test_an_unanswered_subscription_times_out():
    transports = FakeTransports()
    from mediaserver.room import RoomLimits

    room = Room("r", MediaConfig(transports=transports), RoomLimits(answer_timeout=0.05))
    _ward, _, publication, _ = await published(room, transports)
    member = Member()
    expert = room.join("expert", "expert", member)
    subscription, _offer = await room.subscribe(expert, publication.id)
    await asyncio.sleep(0.15)
    assert member.events[-1] == SubscriptionClosed(subscription.id, publication.id,
                                                   "answer-timeout")
    assert isinstance(subscription, FakeSubscription) and subscription.closed
    assert not expert.subscriptions


async def test_viewers_are_not_told_of_each_other_so_joins_cost_the_room_linearly():
    """A teaching broadcast: the bedside publishes, the recorder records, 50 county doctors
    watch. Each watcher's join and leave reach the publishers and the recorder only (50
    joins: 100 events, not 1,225 plus those); publishers are announced to everyone."""
    room, _ = new_room()
    ward_member, recorder_member = Member(), Member(service=True)
    ward = room.join("ward", "ward", ward_member, seat=Seat.PUBLISHER)
    room.join("recorder", "recorder", recorder_member)
    watchers = [(Member(), f"doctor {i}") for i in range(50)]
    joined = [room.join(name, "observer", member) for member, name in watchers]

    ids = {p.id for p in joined}
    told = sum(isinstance(e, ParticipantJoined) and e.participant.id in ids
               for m in (ward_member, recorder_member, *(m for m, _ in watchers))
               for e in m.events)
    assert told == 100
    assert [e.participant.id for e in ward_member.events
            if isinstance(e, ParticipantJoined)][-50:] == [p.id for p in joined]
    assert not any(m.events for m, _ in watchers[1:])  # no watcher heard of another
    # What each one's `joined` reply lists.
    assert {p.id for p in room.visible_to(joined[0])} == {ward.id, *(
        p.id for p in room.participants.values() if p.service)}
    assert len(room.visible_to(ward)) == 51
    # An expert who may speak and steer the camera is announced to every watcher.
    expert = room.join("expert", "expert", Member(), seat=Seat.PUBLISHER)
    assert all(m.events == [ParticipantJoined(expert.info())] for m, _ in watchers)
    # A watcher leaving: the publishers and the recorder are told, the others not.
    room.leave(joined[0])
    assert ParticipantLeft(joined[0].id) in ward_member.events
    assert ParticipantLeft(joined[0].id) in recorder_member.events
    assert all(ParticipantLeft(joined[0].id) not in m.events for m, _ in watchers[1:])


async def test_a_relayed_room_takes_the_origins_stream_ids_and_a_room_of_its_own_does_not():
    own, _ = new_room()
    ward = own.join("ward", "ward", Member(), seat=Seat.PUBLISHER)
    with pytest.raises(LimitError):
        await own.relay(ward, "s-origin1", OFFER)
    transports = FakeTransports()
    relayed = Room("bed-1", MediaConfig(transports=transports), origin="node-a")
    stand_in = relayed.join("ward", "ward", Member(service=True), "p-origin")
    viewer_member = Member()
    viewer = relayed.join("viewer", "observer", viewer_member)
    publication, answer = await relayed.relay(stand_in, "s-origin1", OFFER)
    assert answer.startswith("v=0") and publication.id == "s-origin1"
    assert [s.id for s in relayed.streams()] == ["s-origin1"]
    assert [e.stream.id for e in viewer_member.events if isinstance(e, StreamAdded)] == [
        "s-origin1"]
    with pytest.raises(LimitError):  # one stream per id
        await relayed.relay(stand_in, "s-origin1", OFFER)
    subscription, _ = await relayed.subscribe(viewer, "s-origin1")
    assert subscription.stream_id == "s-origin1"
    # Stand-ins are services: the last viewer's leave closes the relayed room.
    relayed.leave(viewer)
    assert relayed.closed
