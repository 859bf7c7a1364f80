"""Large rooms: publishers and viewers limited separately, the recorder never counted, a
clear `room-full` refusal (on the wire, in the log, on the Chinese page), and a node's
peer-connection set-ups bounded and queued first in, first out.

Real server (tests/conftest.py) and real ``SignalingClient``s; real aiortc peers where
media flows; Room unit tests with the fake transports of tests/fakes.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import expect

from config import ConfigError, load_settings
from mediaserver import MediaConfig, Room, RoomLimits, Seat, SeatLimits, SetupQueue
from mediaserver.errors import RoomFullError
from signaling import MEDIA_SERVER
from signaling.client import SignalingClient, SignalingError
from tests.conftest import RunningServer, make_settings, serving
from tests.fakes import OFFER, FakeTransports, Member
from tests.peers import Subscriber, make_publisher_offer, wait_for
from tests.test_browser import Chromium, chromium

__all__ = ["chromium"]  # a fixture used by name below

ROOM = "grand-round-1"
# Many sockets from 127.0.0.1 (the address quota is for sites behind one NAT).
MANY_SOCKETS = {"HUIZHEN_SIGNALING_SOCKETS_PER_ADDRESS": "0"}


@pytest.fixture
async def clients() -> AsyncIterator[list[SignalingClient]]:
    """Every client a test opens, closed afterwards."""
    opened: list[SignalingClient] = []
    yield opened
    await asyncio.gather(*(client.close() for client in opened), return_exceptions=True)


def room_token(server: RunningServer, role: str, name: str, grants: list[str] | None = None,
               subject: str | None = None) -> str:
    return server.authority.mint(room=ROOM, role=role, name=name, ttl=600, grants=grants,
                                 subject=subject)


async def joined(server: RunningServer, opened: list[SignalingClient], role: str, name: str,
                 grants: list[str] | None = None, subject: str | None = None
                 ) -> SignalingClient:
    client = SignalingClient(server.ws_url)
    opened.append(client)
    await client.connect()
    await client.join(room_token(server, role, name, grants, subject))
    return client


async def refusal(server: RunningServer, opened: list[SignalingClient], role: str,
                  grants: list[str] | None = None) -> SignalingError:
    with pytest.raises(SignalingError) as refused:
        await joined(server, opened, role, "late " + role, grants)
    return refused.value


async def stats(server: RunningServer) -> dict[str, Any]:
    headers = {"Authorization": "Bearer " + server.token("operator", room="*")}
    async with aiohttp.ClientSession() as http, \
            http.get(server.base_url + "/api/v1/stats", headers=headers) as reply:
        assert reply.status == 200
        body: dict[str, Any] = await reply.json()
        return body


def room_json(body: dict[str, Any]) -> dict[str, Any]:
    room: dict[str, Any] = next(r for r in body["rooms"] if r["name"] == ROOM)
    return room


# --------------------------------------------------------------------------- seats


async def test_the_101st_viewer_is_refused_with_the_viewers_limit(
        clients: list[SignalingClient], caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(HUIZHEN_MEDIA_ROOM_VIEWERS="100", **MANY_SOCKETS)
    async with serving(settings) as server:
        await joined(server, clients, "ward", "病房护士")
        for batch in range(4):  # 25 joins at once, four times
            await asyncio.gather(*(joined(server, clients, "observer", f"学员 {batch}-{i}")
                                   for i in range(25)))
        caplog.set_level(logging.INFO, logger="mediaserver.room")
        refused = await refusal(server, clients, "observer")
        assert refused.code == "room-full" and refused.details == {"limit": "viewers"}
        assert refused.message == "the room is full: it admits 100 viewers"
        # One INFO line, ids and numbers only.
        lines = [r.getMessage() for r in caplog.records if "join refused" in r.getMessage()]
        assert lines == [f"[{ROOM}] join refused: all 100 viewer seats are taken"]
        # Publishers are limited on their own: the bedside's colleague still gets in.
        await joined(server, clients, "ward", "病房医生")
        room = room_json(await stats(server))
        assert (room["participants"], room["publishers"], room["viewers"]) == (102, 2, 100)
        print(f"\n100 viewers + 2 publishers joined; the 101st viewer got "
              f"{refused.code} ({refused.details})")


async def test_the_publisher_limit_refuses_the_extra_publisher_while_viewers_join(
        clients: list[SignalingClient]) -> None:
    settings = make_settings(HUIZHEN_MEDIA_ROOM_PUBLISHERS="2", HUIZHEN_MEDIA_ROOM_VIEWERS="5")
    async with serving(settings) as server:
        await joined(server, clients, "ward", "ward")
        await joined(server, clients, "expert", "expert 1")
        refused = await refusal(server, clients, "expert")
        assert refused.code == "room-full" and refused.details == {"limit": "publishers"}
        # A token that may only receive takes a viewer seat, whatever its role.
        await joined(server, clients, "expert", "listening expert", grants=["subscribe"])
        for index in range(4):
            await joined(server, clients, "observer", f"observer {index}")
        assert (await refusal(server, clients, "observer")).details == {"limit": "viewers"}
        room = room_json(await stats(server))
        assert (room["publishers"], room["viewers"]) == (2, 5)


async def test_the_recorder_takes_no_seat(clients: list[SignalingClient],
                                          tmp_path: Path) -> None:
    settings = make_settings(HUIZHEN_MEDIA_ROOM_PUBLISHERS="1", HUIZHEN_MEDIA_ROOM_VIEWERS="1",
                             HUIZHEN_RECORDER_ENABLED="true",
                             HUIZHEN_STORAGE_DATA_DIR=str(tmp_path))
    async with serving(settings) as server:
        ward = await joined(server, clients, "ward", "ward", subject="u-ward")
        await joined(server, clients, "observer", "observer")
        room = server.app[MEDIA_SERVER].directory.local(ROOM)
        assert room is not None
        roles = sorted(p.role for p in room.participants.values())
        assert roles == ["observer", "recorder", "ward"]
        assert (await refusal(server, clients, "observer")).details == {"limit": "viewers"}
        assert (await refusal(server, clients, "ward")).details == {"limit": "publishers"}
        body = room_json(await stats(server))
        assert (body["participants"], body["publishers"], body["viewers"]) == (3, 1, 1)
        # A rejoin naming the lost participant takes its seat at once, though all are taken.
        lost = ward.previous
        await ward.reconnect()
        again = await ward.join(room_token(server, "ward", "ward", subject="u-ward"))
        assert again["participant"]["id"] != lost
        assert lost not in room.participants
        assert sorted(p.role for p in room.participants.values()) == [
            "observer", "recorder", "ward"]


def test_the_old_participants_setting_is_refused_with_its_replacement(tmp_path: Path) -> None:
    path = tmp_path / "huizhen.toml"
    path.write_text("[media]\nroom_participants = 200\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"room_publishers and media\.room_viewers"):
        load_settings(path, environ={})
    with pytest.raises(ConfigError, match=r"HUIZHEN_MEDIA_ROOM_PARTICIPANTS.*room_viewers"):
        load_settings(environ={"HUIZHEN_MEDIA_ROOM_PARTICIPANTS": "200"})
    media = load_settings(environ={}).media
    assert (media.room_publishers, media.room_viewers, media.setup_concurrency) == (16, 1000, 16)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ConfigError, match=r"media\.room_viewers must be greater than 0"):
        load_settings(environ={"HUIZHEN_MEDIA_ROOM_VIEWERS": "0"})
    with pytest.raises(ConfigError, match=r"media\.setup_concurrency must be 0 or more"):
        load_settings(environ={"HUIZHEN_MEDIA_SETUP_CONCURRENCY": "-1"})


async def test_room_counts_seats_and_frees_a_replaced_one() -> None:
    room = Room("r", MediaConfig(transports=FakeTransports()),
                RoomLimits(seats=SeatLimits(publishers=1, viewers=2)))
    room.join("recorder", "recorder", Member(service=True))
    ward = room.join("ward", "ward", Member(), seat=Seat.PUBLISHER)
    room.join("a", "observer", Member())
    room.join("b", "observer", Member())
    with pytest.raises(RoomFullError) as full:
        room.join("c", "observer", Member())
    assert full.value.code == "room-full" and full.value.details() == {"limit": "viewers"}
    with pytest.raises(RoomFullError):
        room.join("ward 2", "ward", Member(), seat=Seat.PUBLISHER)
    again = room.join("ward", "ward", Member(), seat=Seat.PUBLISHER, replacing=ward.id)
    room.leave(ward)
    assert again.seat is Seat.PUBLISHER and len(room.participants) == 4
    room.close()


# --------------------------------------------------------------------------- set-up queue


async def test_a_subscription_holds_its_set_up_slot_until_it_connects() -> None:
    transports = FakeTransports()
    queue = SetupQueue(1)
    room = Room("r", MediaConfig(transports=transports), setup=queue)
    ward = room.join("ward", "ward", Member(), seat=Seat.PUBLISHER)
    publication, _ = await room.publish(ward, OFFER)
    first = room.join("a", "observer", Member())
    second = room.join("b", "observer", Member())
    await room.subscribe(first, publication.id)
    waiting = asyncio.ensure_future(room.subscribe(second, publication.id))
    await asyncio.sleep(0.01)
    assert not waiting.done() and queue.stats().waiting == 1
    assert room.pending_count(second) == 1 and room.queued_count(second) == 1
    transports.subscriptions[0].connect()  # the first set-up is over
    await asyncio.wait_for(waiting, 1)
    assert queue.stats().active == 1 and room.queued_count(second) == 0
    room.leave(second)  # a closed transport gives its slot back too
    assert queue.stats().active == 0
    room.close()


async def test_concurrent_subscriptions_queue_and_all_receive(
        clients: list[SignalingClient]) -> None:
    """12 aiortc viewers subscribe at once with two set-ups allowed at a time: each
    connects and receives the publisher's packets, and the queue was used."""
    settings = make_settings(HUIZHEN_MEDIA_SETUP_CONCURRENCY="2", **MANY_SOCKETS)
    async with serving(settings) as server:
        ward = await joined(server, clients, "ward", "ward")
        pc, _, tracks = await make_publisher_offer(audio=False)
        media = server.app[MEDIA_SERVER]
        viewers = [Subscriber() for _ in range(12)]
        most_active = 0

        async def watch() -> None:
            nonlocal most_active
            while True:
                most_active = max(most_active, media.setup.stats().active)
                await asyncio.sleep(0.005)

        watcher = asyncio.ensure_future(watch())
        try:
            stream = await ward.publish(pc)
            signalling = [await joined(server, clients, "observer", f"viewer {i}")
                          for i in range(len(viewers))]
            await asyncio.gather(*(client.subscribe(stream["id"], viewer.pc)
                                   for client, viewer in zip(signalling, viewers, strict=True)))
            await wait_for(lambda: all(v.received.video_frames >= 3 for v in viewers), 60)
            await wait_for(lambda: media.setup.stats().active == 0, 10)
        finally:
            watcher.cancel()
            for viewer in viewers:
                await viewer.close()
            for track in tracks:
                track.stop()
            await pc.close()
        setup = (await stats(server))["setup"]
        frames = [v.received.video_frames for v in viewers]
        print(f"\nsetup queue: {setup}; most set-ups at once: {most_active}; "
              f"frames decoded per viewer: {frames}")
        assert setup["limit"] == 2 and setup["waiting"] == 0 and setup["active"] == 0
        assert setup["queuedTotal"] >= 1 and setup["longestQueue"] >= 1
        assert most_active == 2


# --------------------------------------------------------------------------- the page


@pytest.mark.browser
async def test_the_chinese_page_says_the_room_is_full_for_viewers(
        clients: list[SignalingClient], chromium: Chromium) -> None:
    settings = make_settings(HUIZHEN_MEDIA_ROOM_VIEWERS="1")
    async with serving(settings) as server:
        await joined(server, clients, "observer", "学员")
        token = server.authority.mint(room=ROOM, role="observer", name="学员 2", ttl=600)
        text = await refused_page(chromium, server, token, "room-full", "观看人数已满")
        print(f"\nzh-CN page: {text}")


async def refused_page(chromium: Chromium, server: RunningServer, token: str, code: str,
                       words: str) -> str:
    """The Chinese expert page opened with ``token``: it stops with ``code`` and says
    ``words``; returns its status line."""
    page = await chromium.open(f"zh-{code}", f"{server.base_url}/expert.html#token={token}",
                               locale="zh-CN")
    status = page.locator("#status")
    await expect(status).to_have_attribute("data-code", code, timeout=15000)
    await expect(status).to_have_attribute("data-state", "failed")
    await expect(status).to_contain_text(words)
    return await status.inner_text()


async def test_an_offer_never_answered_gives_its_slot_back_at_the_answer_timeout() -> None:
    transports = FakeTransports()
    queue = SetupQueue(1)
    room = Room("r", MediaConfig(transports=transports), RoomLimits(answer_timeout=0.05),
                setup=queue)
    ward = room.join("ward", "ward", Member(), seat=Seat.PUBLISHER)
    publication, _ = await room.publish(ward, OFFER)
    silent = room.join("silent", "observer", Member())
    await room.subscribe(silent, publication.id)  # never answered
    other = room.join("other", "observer", Member())
    subscription, _ = await asyncio.wait_for(room.subscribe(other, publication.id), 2)
    assert not silent.subscriptions and queue.stats().queued_total == 1
    assert list(other.subscriptions) == [subscription.id]
    assert queue.stats().active == 1
    room.close()
    assert queue.stats().active == 0
