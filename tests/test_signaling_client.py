"""signaling/client.py, the Python client of the simulated bedside, against the real server.

A rejoin names the lost participant (`join.previous`), as the web client does: the
server ends that participant at once, while its old socket is still open.
"""

from __future__ import annotations

from aiortc import RTCPeerConnection

from huizhen.testpattern import PatternVideoTrack
from signaling import MEDIA_SERVER
from signaling.client import SignalingClient
from signaling.session import CLOSE_REPLACED
from tests.conftest import RunningServer
from tests.peers import Subscriber, wait_for

ROOM = "bed-1"


async def test_reconnect_sends_previous_and_the_old_participant_ends_at_once(
        running_server: RunningServer) -> None:
    authority = running_server.authority
    ward_token = authority.mint(room=ROOM, role="ward", name="nurse-3", ttl=600,
                                subject="nurse-3")
    expert = SignalingClient(running_server.ws_url)
    await expert.connect()
    await expert.join(authority.mint(room=ROOM, role="expert", name="li", ttl=600, subject="li"))
    assert expert.previous == expert.joined["participant"]["id"]  # type: ignore[index]

    ward = SignalingClient(running_server.ws_url)
    await ward.connect()
    first = await ward.join(ward_token)
    old_id = first["participant"]["id"]
    pub = RTCPeerConnection()
    pub.addTrack(PatternVideoTrack(160, 120, 15))
    stream = await ward.publish(pub)
    assert (await expert.next_event("track-added"))["stream"]["id"] == stream["id"]
    room = running_server.app[MEDIA_SERVER].directory.local(ROOM)
    assert room is not None
    old_socket = ward._ws
    assert old_socket is not None
    try:
        # The link is "lost": a new socket, while the server still holds the old one.
        await ward.reconnect()
        assert not old_socket.closed and old_id in room.participants
        second = await ward.join(ward_token)
        new_id = second["participant"]["id"]
        assert new_id != old_id and ward.previous == new_id
        # Ended by the join itself, not by a heartbeat: gone before `joined` came back.
        assert list(room.participants) == [expert.previous, new_id]
        assert [p["name"] for p in second["participants"]] == ["li"]
        assert second["streams"] == []
        assert (await expert.next_event("track-removed"))["stream"] == stream["id"]
        assert (await expert.next_event("participant-left"))["participant"] == old_id
        # The old socket was closed by the server as replaced, then released here.
        assert old_socket.closed and old_socket.close_code == CLOSE_REPLACED
        assert running_server.app[MEDIA_SERVER].directory.local(ROOM) is room

        # The new socket carries requests: the bedside publishes again and is watched.
        pub2 = RTCPeerConnection()
        pub2.addTrack(PatternVideoTrack(160, 120, 15))
        stream2 = await ward.publish(pub2)
        assert (await expert.next_event("track-added"))["stream"]["id"] == stream2["id"]
        sub = Subscriber()
        await expert.subscribe(stream2["id"], sub.pc)
        await wait_for(lambda: sub.received.video_frames >= 5, 30)
        await sub.close()
        await pub2.close()
    finally:
        await pub.close()
        await ward.close()
        await expert.close()


async def test_a_first_join_names_no_previous(running_server: RunningServer) -> None:
    client = SignalingClient(running_server.ws_url)
    await client.connect()
    try:
        assert client.previous is None
        joined = await client.join(running_server.token("observer", ROOM))
        assert client.previous == joined["participant"]["id"]
        # A reconnect before any join has nobody to name.
        fresh = SignalingClient(running_server.ws_url)
        await fresh.connect()
        await fresh.reconnect()
        assert fresh.previous is None
        assert (await fresh.request({"type": "ping"}))["type"] == "pong"
        await fresh.close()
    finally:
        await client.close()
