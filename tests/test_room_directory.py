"""The room directory and the room bus on one node: placement, watchers, delivery."""

from __future__ import annotations

import os
import socket

import pytest

from mediaserver import LocalRoomBus, LocalRoomDirectory, MediaConfig, MediaServer, Room
from mediaserver.events import AppEvent, RoomEvent
from tests.fakes import Member


@pytest.fixture
async def server():
    srv = MediaServer(MediaConfig(), node_id="node-a")
    yield srv
    await srv.close()


def inbox() -> tuple[list[RoomEvent], Member]:
    member = Member()
    return member.events, member


def app_events(events: list[RoomEvent]) -> list[tuple[str, dict[str, object]]]:
    return [(e.kind, dict(e.body)) for e in events if isinstance(e, AppEvent)]


async def test_every_room_lives_on_this_node(server):
    assert server.node_id == server.directory.node_id == "node-a"
    room = server.room("bed-1")
    placement = await server.directory.placement("bed-1")
    assert (placement.name, placement.node_id, placement.local) == ("bed-1", "node-a", True)
    # A room nobody opened yet would open here too.
    assert (await server.directory.placement("bed-9")).node_id == "node-a"
    assert server.directory.local("bed-1") is room
    assert server.directory.local("bed-9") is None
    assert server.directory.local_names() == ("bed-1",)
    assert await server.directory.names() == ("bed-1",)


async def test_a_closed_room_disappears_and_reopens_as_a_new_room(server):
    first = server.room("bed-1")
    server.room("bed-2")
    first.close()
    assert server.directory.local("bed-1") is None
    assert server.directory.local_names() == ("bed-2",)
    assert await server.directory.names() == ("bed-2",)
    second = server.room("bed-1")
    assert second is not first and server.directory.local("bed-1") is second


async def test_watch_replays_open_rooms_then_reports_new_ones_until_unsubscribed(server):
    old = server.room("bed-1")
    closed = server.room("bed-2")
    closed.close()
    seen: list[Room] = []
    unwatch = server.directory.watch(seen.append)
    assert seen == [old]  # replayed; the closed room is not
    new = server.room("bed-3")
    assert server.room("bed-3") is new  # an open room is not opened twice
    assert seen == [old, new]
    unwatch()
    unwatch()  # idempotent
    server.room("bed-4")
    assert seen == [old, new]


async def test_watch_without_replay_and_a_failing_watcher(server):
    server.room("bed-1")
    seen: list[str] = []

    def broken(room: Room) -> None:
        raise RuntimeError("boom")

    server.directory.watch(broken)
    server.directory.watch(lambda room: seen.append(room.name), replay=False)
    assert seen == []
    room = server.room("bed-2")  # the broken watcher is logged, the others still run
    assert seen == ["bed-2"] and server.directory.local("bed-2") is room


async def test_one_callback_watching_twice_is_unsubscribed_once_at_a_time(server):
    seen: list[str] = []

    def note(room: Room) -> None:
        seen.append(room.name)

    first = server.directory.watch(note)
    second = server.directory.watch(note)
    server.room("bed-1")
    assert seen == ["bed-1", "bed-1"]
    first()
    server.room("bed-2")
    assert seen == ["bed-1", "bed-1", "bed-2"]
    second()
    server.room("bed-3")
    assert seen == ["bed-1", "bed-1", "bed-2"]


async def test_the_default_node_id_names_the_host_and_the_process():
    directory = LocalRoomDirectory()
    host, pid, token = directory.node_id.rsplit("-", 2)
    assert (host, pid) == (socket.gethostname(), str(os.getpid()))
    assert len(token) == 6 and LocalRoomDirectory().node_id != directory.node_id
    assert MediaServer(MediaConfig(), directory=directory).node_id == directory.node_id
    with pytest.raises(ValueError, match="node id"):
        MediaServer(MediaConfig(), node_id="other", directory=directory)


async def test_the_bus_reaches_the_participants_of_the_room_and_counts_them(server):
    bus = LocalRoomBus(server.directory)
    room = server.room("bed-1")
    ward_events, ward_inbox = inbox()
    expert_events, expert_inbox = inbox()
    ward = room.join("ward", "ward", ward_inbox)
    room.join("expert", "expert", expert_inbox)
    other_events, other_inbox = inbox()
    server.room("bed-2").join("other", "ward", other_inbox)

    assert bus.publish("bed-1", "vitals", {"hr": 72}) == 2
    assert app_events(ward_events) == app_events(expert_events) == [("vitals", {"hr": 72})]
    assert bus.publish("bed-1", "alarm", {"level": "high"}, exclude=ward.id) == 1
    assert app_events(ward_events) == [("vitals", {"hr": 72})]
    assert app_events(expert_events)[-1] == ("alarm", {"level": "high"})
    assert app_events(other_events) == []


async def test_the_bus_to_an_unknown_or_closed_room_reaches_nobody(server):
    bus = LocalRoomBus(server.directory)
    assert bus.publish("nowhere", "vitals", {"hr": 72}) == 0
    room = server.room("bed-1")
    events, notify = inbox()
    room.join("ward", "ward", notify)
    room.close()
    assert bus.publish("bed-1", "vitals", {"hr": 72}) == 0
    assert app_events(events) == []
