"""Recovery on the server: silent sockets are dropped, a rejoin ends the lost participant.

Real server on loopback, real WebSockets, real aiortc peers (PROTOCOL.md, "Heartbeat"
and "Reconnecting").
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection

from huizhen.testpattern import PatternVideoTrack
from signaling import MEDIA_SERVER, SIGNALING_CONFIG
from signaling.client import SignalingClient
from signaling.messages import Join, ProtocolError, parse_request
from signaling.session import CLOSE_REPLACED
from tests.conftest import RunningServer
from tests.peers import Subscriber, wait_for

ROOM = "bed-1"


def person_token(server: RunningServer, role: str, subject: str) -> str:
    return server.authority.mint(room=ROOM, role=role, name=subject, ttl=600, subject=subject)


async def joined_client(server: RunningServer, token: str,
                        previous: str | None = None) -> tuple[SignalingClient, dict[str, Any]]:
    client = SignalingClient(server.ws_url)
    await client.connect()
    message: dict[str, Any] = {"type": "join", "version": 1, "token": token}
    if previous is not None:
        message["previous"] = previous
    client.joined = await client.request(message)
    return client, client.joined


def test_join_reads_the_previous_participant() -> None:
    request = parse_request(json.dumps({"type": "join", "version": 1, "token": "t",
                                        "previous": "p-0123456789ab"}))
    assert request == Join(None, 1, "t", "p-0123456789ab")
    assert parse_request('{"type": "join", "version": 1, "token": "t"}') == Join(None, 1, "t")
    for bad in (5, "", "p" * 65, ["p-1"]):
        with pytest.raises(ProtocolError) as info:
            parse_request(json.dumps({"type": "join", "version": 1, "token": "t",
                                      "previous": bad}))
        assert info.value.code == "bad-message"
        assert "'previous'" in info.value.message


async def test_a_client_that_stops_answering_is_dropped(running_server: RunningServer) -> None:
    """The server's WebSocket heartbeat: no pong, the socket closes and its
    participant leaves (others are told)."""
    config = running_server.app[SIGNALING_CONFIG]
    object.__setattr__(config, "heartbeat", 0.4)  # default 5 s; shortened for the test
    expert, expert_joined = await joined_client(
        running_server, person_token(running_server, "expert", "li"))
    async with aiohttp.ClientSession() as http:
        # autoping=False: this client never answers the server's pings (a dead peer).
        silent = await http.ws_connect(running_server.ws_url, autoping=False)
        await silent.send_str(json.dumps({"type": "join", "version": 1, "id": 1,
                                          "token": person_token(running_server, "ward", "n3")}))
        joined = json.loads((await silent.receive(timeout=5)).data)
        assert joined["type"] == "joined"
        left = await expert.next_event("participant-left", timeout=10)
        assert left["participant"] == joined["participant"]["id"]
        room = running_server.app[MEDIA_SERVER].directory.local(ROOM)
        assert room is not None and list(room.participants) == [expert_joined["participant"]["id"]]
    # The expert answers pings (aiohttp does it while reading): it stays.
    assert (await expert.request({"type": "ping"}))["type"] == "pong"
    await expert.close()


async def test_a_rejoin_ends_the_lost_participant_and_its_stream_at_once(
        running_server: RunningServer) -> None:
    ward_token = person_token(running_server, "ward", "nurse-3")
    ward, first = await joined_client(running_server, ward_token)
    expert, _ = await joined_client(running_server, person_token(running_server, "expert", "li"))
    pub = RTCPeerConnection()
    pub.addTrack(PatternVideoTrack(160, 120, 15))
    stream = await ward.publish(pub)
    assert (await expert.next_event("track-added"))["stream"]["id"] == stream["id"]
    sub = Subscriber()
    await expert.subscribe(stream["id"], sub.pc)
    await wait_for(lambda: sub.received.video_frames >= 5, 30)
    room = running_server.app[MEDIA_SERVER].directory.local(ROOM)
    assert room is not None

    # The ward's link was lost; it comes back on a new socket naming who it was.
    again, second = await joined_client(running_server, ward_token,
                                        previous=first["participant"]["id"])
    # The old participant and its stream are gone before the new one hears of the room.
    assert [p["name"] for p in second["participants"]] == ["li"]
    assert second["streams"] == []
    assert (await expert.next_event("track-removed"))["stream"] == stream["id"]
    assert (await expert.next_event("subscription-closed"))["reason"] == "stream-ended"
    assert (await expert.next_event("participant-left"))["participant"] == \
        first["participant"]["id"]
    assert (await expert.next_event("participant-joined"))["participant"]["id"] == \
        second["participant"]["id"]
    await wait_for(lambda: ward._ws is not None and ward._ws.closed, 10)
    assert ward._ws is not None and ward._ws.close_code == CLOSE_REPLACED
    assert running_server.app[MEDIA_SERVER].directory.local(ROOM) is room

    # It publishes again; the viewer is told of the new stream and receives it.
    pub2 = RTCPeerConnection()
    pub2.addTrack(PatternVideoTrack(160, 120, 15))
    stream2 = await again.publish(pub2)
    assert (await expert.next_event("track-added"))["stream"]["id"] == stream2["id"]
    sub2 = Subscriber()
    await expert.subscribe(stream2["id"], sub2.pc)
    await wait_for(lambda: sub2.received.video_frames >= 5, 30)
    assert [s.id for s in room.streams()] == [stream2["id"]]
    for closing in (sub.close(), sub2.close(), pub.close(), pub2.close(), expert.close(),
                    again.close(), ward.close()):
        await closing


async def test_a_rejoin_alone_keeps_the_room_open(running_server: RunningServer) -> None:
    """The room (and so its recording and device bindings) outlives a rejoin of its only
    person: the new participant is in before the old one leaves."""
    ward_token = person_token(running_server, "ward", "nurse-3")
    ward, first = await joined_client(running_server, ward_token)
    room = running_server.app[MEDIA_SERVER].directory.local(ROOM)
    again, second = await joined_client(running_server, ward_token,
                                        previous=first["participant"]["id"])
    assert second["participants"] == []
    assert running_server.app[MEDIA_SERVER].directory.local(ROOM) is room
    assert room is not None and not room.closed
    assert list(room.participants) == [second["participant"]["id"]]
    await wait_for(lambda: ward._ws is not None and ward._ws.closed, 10)
    events = [ward.events.get_nowait() for _ in range(ward.events.qsize())]
    assert not any(e["type"] == "room-closed" for e in events), events
    await again.close()
    await ward.close()


async def test_previous_names_only_the_same_person(running_server: RunningServer) -> None:
    ward, first = await joined_client(running_server,
                                      person_token(running_server, "ward", "nurse-3"))
    expert, joined = await joined_client(running_server,
                                         person_token(running_server, "expert", "li"),
                                         previous=first["participant"]["id"])
    assert [p["id"] for p in joined["participants"]] == [first["participant"]["id"]]
    assert (await ward.request({"type": "ping"}))["type"] == "pong"
    await expert.close()
    await ward.close()
