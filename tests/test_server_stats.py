"""MediaServer.stats(): a frozen snapshot of real rooms, and the stats route's JSON from it."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import aiohttp
import pytest
from aiortc import RTCSessionDescription

from mediaserver import MediaServer, Room, Seat
from signaling import MEDIA_SERVER
from tests.fakes import Member
from tests.peers import Subscriber, make_publisher_offer, wait_for


def live_json(media: MediaServer) -> list[dict[str, Any]]:
    """The stats route's rooms as the route wrote them when it walked the live rooms."""
    rooms = []
    for name in media.directory.local_names():
        room = media.directory.local(name)
        assert room is not None
        producers, transports = [], []
        dropped = {"datagramsDroppedUnvalidated": 0, "datagramsDroppedMalformed": 0,
                   "datagramsDroppedUnauthenticated": 0}
        for participant in room.participants.values():
            for transport in [*participant.publications.values(),
                              *participant.subscriptions.values()]:
                counters = transport.port_counters.as_json()
                for key, value in counters.items():
                    dropped[key] += value
                transports.append({"id": transport.id, "direction": transport.direction,
                                   "state": transport.state, **counters})
            for publication in participant.publications.values():
                for producer in publication.producers:
                    producers.append({
                        "id": producer.id, "kind": producer.kind, "codec": producer.codec_name,
                        "packetsReceived": producer.packets_received,
                        "keyframeRequestsSent": producer.keyframe_requests_sent,
                        "layerBitrates": [],  # the aiortc publisher sends no temporal layers
                        "consumers": [{
                            "id": c.id, "packetsSent": c.packets_sent,
                            "retransmissions": c.retransmissions,
                            "keyframeRequests": c.keyframe_requests, "started": c.started,
                            "temporalLayer": c.temporal_layer,
                            "spatialLayer": c.spatial_layer,
                            "targetBitrate": c.target_bitrate,
                            "layerSwitches": c.layer_switches, "copiesSent": c.copies_sent,
                            "nacksHeld": c.nacks_held,
                        } for c in (d.stats() for d in producer.downstreams) if c.kind == "rtp"],
                    })
        seats = [participant.seat for participant in room.participants.values()]
        rooms.append({"name": room.name, "participants": len(room.participants),
                      "publishers": seats.count(Seat.PUBLISHER),
                      "viewers": seats.count(Seat.VIEWER),
                      "producers": producers, "transports": transports, **dropped})
    return rooms


async def publish_and_watch(room: Room, subscribers: int) -> tuple[Any, list[Any], list[Any]]:
    ward = room.join("ward", "ward", Member())
    pc, offer, tracks = await make_publisher_offer()
    publication, answer = await room.publish(ward, offer)
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    subs = []
    for index in range(subscribers):
        expert = room.join(f"expert-{index}", "expert", Member())
        sub = Subscriber()
        subscription, sub_offer = await room.subscribe(expert, publication.id)
        await room.answer(expert, subscription.id, await sub.answer(sub_offer))
        subs.append(sub)
    await wait_for(lambda: all(s.received.video_frames >= 10 for s in subs), 30)
    return pc, tracks, subs


async def quiet(media: MediaServer) -> None:
    """Wait until no counter moves any more (the publisher's tracks were stopped)."""
    previous = None
    for _ in range(100):
        current = live_json(media)
        if current == previous:
            return
        previous = current
        await asyncio.sleep(0.3)
    raise TimeoutError("the counters kept moving")


async def test_the_snapshot_of_real_rooms(running_server):
    media: MediaServer = running_server.app[MEDIA_SERVER]
    bed1, bed2 = media.room("bed-1"), media.room("bed-2")
    pc, tracks, subs = await publish_and_watch(bed1, subscribers=2)
    bed2.join("alone", "ward", Member())

    snapshot = media.stats()
    assert snapshot.node_id == media.node_id
    assert [room.name for room in snapshot.rooms] == ["bed-1", "bed-2"]
    room, empty = snapshot.rooms
    assert (room.participants, empty.participants) == (3, 1)
    assert empty.producers == empty.transports == ()
    assert [t.direction for t in room.transports] == ["publish", "subscribe", "subscribe"]
    assert all(t.state == "connected" for t in room.transports)
    assert snapshot.transports == media.transports() == 3
    video, audio = room.producers
    assert (video.kind, video.codec, audio.kind, audio.codec) == ("video", "VP8", "audio", "opus")
    assert video.packets_received > 0
    assert [d.kind for d in video.downstreams] == ["rtp", "rtp"]
    assert all(d.started and d.packets_sent > 0 for d in video.downstreams)
    live = bed1.find_publication(room.transports[0].id).producers[0]
    assert {d.id for d in video.downstreams} == {c.id for c in live.downstreams}
    # Summed over the room's transports.
    assert room.dropped.unvalidated == sum(t.dropped.unvalidated for t in room.transports)

    # A snapshot: frozen, and it does not follow the live counters.
    with pytest.raises(dataclasses.FrozenInstanceError):
        video.packets_received = 0  # type: ignore[misc]
    received = video.packets_received
    await wait_for(lambda: live.packets_received > received + 50, 10)
    assert video.packets_received == received
    live_counters = bed1.find_publication(room.transports[0].id).port_counters
    live_counters.unvalidated += 1
    assert room.transports[0].dropped.unvalidated == live_counters.unvalidated - 1
    live_counters.unvalidated -= 1

    bed2.close()
    assert [r.name for r in media.stats().rooms] == ["bed-1"]
    await asyncio.gather(*(s.close() for s in subs))
    for track in tracks:
        track.stop()
    await pc.close()


async def test_the_stats_route_writes_the_same_json_as_before(running_server):
    media: MediaServer = running_server.app[MEDIA_SERVER]
    pc, tracks, subs = await publish_and_watch(media.room("bed-1"), subscribers=2)
    media.room("bed-2").join("alone", "ward", Member())
    for track in tracks:
        track.stop()
    await quiet(media)
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": "Bearer " + running_server.token("operator")}
        async with http.get(running_server.base_url + "/api/v1/stats",
                            headers=headers) as reply:
            assert reply.status == 200
            body = await reply.json()
        async with http.get(running_server.base_url + "/api/v1/health") as reply:
            health = await reply.json()
    setup = media.setup.stats()
    assert body == {"rooms": live_json(media), "setup": {
        "limit": 16, "active": 0, "waiting": 0, "queuedTotal": setup.queued_total,
        "longestQueue": setup.longest_queue}}
    assert [len(p["consumers"]) for p in body["rooms"][0]["producers"]] == [2, 2]
    assert health == {"status": "ok", "rooms": 2}
    await asyncio.gather(*(s.close() for s in subs))
    await pc.close()
