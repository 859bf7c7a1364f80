"""An empty room waits ``MediaConfig.empty_room_grace`` for someone to come back.

A bedside alone in its room whose link drops is removed by the server's heartbeat; the
room then stays open (recording, device bindings) for the grace, and a rejoin within it
continues the same room. Unit tests over fakes (short graces), then the whole app: one
recording for a ward that dropped and came back.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import av
import pytest
from aiohttp import web
from aiortc import RTCPeerConnection

from config import ConfigError, load_settings
from huizhen.app import create_app, media_config, token_authority
from huizhen.testpattern import PatternVideoTrack, ToneAudioTrack
from mediaserver import MediaConfig, MediaServer
from mediaserver.events import ParticipantLeft, RoomClosed
from signaling.client import SignalingClient
from tests.conftest import make_settings
from tests.fakes import FakeTransports, Member
from tests.peers import wait_for

ROOM = "bed-9"


def server_with_grace(grace: float) -> MediaServer:
    return MediaServer(MediaConfig(transports=FakeTransports(), empty_room_grace=grace))


async def test_an_empty_room_stays_open_for_the_grace_then_closes_as_empty() -> None:
    server = server_with_grace(0.2)
    room = server.room(ROOM)
    recorder = Member(service=True)
    room.join("recorder", "recorder", recorder)
    ward = room.join("ward", "ward", Member())
    room.leave(ward)
    # Still open, with its recorder in it, and found by name.
    assert not room.closed and room.in_grace
    assert recorder.events[-1] == ParticipantLeft(ward.id)
    assert server.directory.local(ROOM) is room and server.room(ROOM) is room
    await wait_for(lambda: room.closed, 5)
    assert recorder.events[-1] == RoomClosed("empty")
    assert not room.in_grace and server.directory.local(ROOM) is None
    await server.close()


async def test_a_rejoin_within_the_grace_continues_the_same_room() -> None:
    server = server_with_grace(60.0)
    room = server.room(ROOM)
    recorder = Member(service=True)
    room.join("recorder", "recorder", recorder)
    room.leave(room.join("ward", "ward", Member()))
    assert room.in_grace
    again = server.room(ROOM)
    assert again is room
    back = room.join("ward", "ward", Member())
    assert not room.in_grace and not room.closed
    assert RoomClosed("empty") not in recorder.events
    # Emptied again: a new grace; the server's shutdown ends it (and the room) at once.
    room.leave(back)
    assert room.in_grace
    await server.close()
    assert room.closed and not room.in_grace
    assert recorder.events[-1] == RoomClosed("server-shutdown")


async def test_a_service_joining_does_not_end_the_grace() -> None:
    server = server_with_grace(0.2)
    room = server.room(ROOM)
    room.leave(room.join("ward", "ward", Member()))
    late_service = Member(service=True)
    room.join("recorder", "recorder", late_service)
    assert room.in_grace
    await wait_for(lambda: room.closed, 5)
    assert late_service.events[-1] == RoomClosed("empty")
    await server.close()


async def test_no_grace_closes_at_once() -> None:
    server = server_with_grace(0.0)
    room = server.room(ROOM)
    recorder = Member(service=True)
    room.join("recorder", "recorder", recorder)
    room.leave(room.join("ward", "ward", Member()))
    assert room.closed and recorder.events[-1] == RoomClosed("empty")
    await server.close()


def test_the_grace_is_configured_in_seconds_60_by_default() -> None:
    assert load_settings(environ={}).media.empty_room_grace == 60.0
    assert media_config(load_settings(environ={})).empty_room_grace == 60.0
    assert load_settings(environ={"HUIZHEN_MEDIA_EMPTY_ROOM_GRACE": "0"}).media \
        .empty_room_grace == 0.0
    for bad in ("-1", "nan"):
        with pytest.raises(ConfigError, match=r"media\.empty_room_grace must be 0 or more"):
            load_settings(environ={"HUIZHEN_MEDIA_EMPTY_ROOM_GRACE": bad})


async def publish_pattern(client: SignalingClient) -> RTCPeerConnection:
    pc = RTCPeerConnection()
    pc.addTrack(PatternVideoTrack(320, 240, 30))
    pc.addTrack(ToneAudioTrack())
    await client.publish(pc)
    # Connected before the test counts its seconds of media (on a loaded machine ICE and
    # DTLS took most of the 2 s once, and the recording had 3 frames).
    await wait_for(lambda: pc.connectionState == "connected", 20)
    return pc


async def test_a_ward_alone_that_drops_and_rejoins_keeps_one_recording(tmp_path: Path) -> None:
    settings = make_settings(HUIZHEN_RECORDER_ENABLED="true",
                             HUIZHEN_STORAGE_DATA_DIR=str(tmp_path),
                             HUIZHEN_MEDIA_EMPTY_ROOM_GRACE="3")
    authority = token_authority(settings)
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.server.port).start()
    ws_url = settings.server.base_url.replace("http", "ws", 1) + "/ws"
    token = authority.mint(room="bed-4", role="ward", name="w", ttl=60, subject="ward-4")
    recordings = tmp_path / "recordings"
    try:
        ward = SignalingClient(ws_url)
        await ward.connect()
        await ward.join(token)
        first = await publish_pattern(ward)
        await asyncio.sleep(2.0)
        # The link drops: the server removes the ward (as its heartbeat would); the
        # room is empty but for the recorder.
        await ward.close()
        await first.close()
        await asyncio.sleep(0.5)
        assert not list(recordings.glob("*/manifest.json")), "the recording ended on the drop"
        # Back within the grace: the same room, the same recording.
        again = SignalingClient(ws_url)
        await again.connect()
        await again.join(token)
        second = await publish_pattern(again)
        await asyncio.sleep(2.0)
        await again.close()
        await second.close()
        # Then nobody comes back: after the grace the room closes and the recording ends.
        await wait_for(lambda: bool(list(recordings.glob("*/manifest.json"))), 30)
        assert len([p for p in recordings.iterdir() if p.is_dir()]) == 1
        manifest_path = next(recordings.glob("*/manifest.json"))
        manifest = json.loads(manifest_path.read_text())
        assert manifest["room"] == "bed-4" and manifest["status"] == "complete"
        videos = [t for t in manifest["tracks"] if t["kind"] == "video"]
        assert len(videos) == 2  # one per publication, before and after the drop
        for video in videos:
            with av.open(str(manifest_path.parent / video["file"])) as container:
                frames = sum(1 for _ in container.decode(container.streams.video[0]))
            assert frames >= 20
    finally:
        await runner.cleanup()
