"""Prometheus /metrics during a real session (aiortc publisher and subscriber on loopback):
counters rise between scrapes, labels carry ids only, and scrapes need a token or an
allow-listed address."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping

import aiohttp
from aiohttp import web
from aiortc import RTCSessionDescription
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from devices.hl7.listener import ListenerStats
from huizhen.app import create_app, token_authority
from huizhen.metrics import SnapshotCollector
from mediaserver import MediaServer
from mediaserver.datagrams import PortCounters
from mediaserver.setup_queue import SetupQueueStats
from mediaserver.stats import RoomStats, ServerStats
from signaling import MEDIA_SERVER
from tests.conftest import RunningServer, make_settings
from tests.fakes import Member
from tests.peers import Subscriber, make_publisher_offer, wait_for

WARD_NAME = "王护士 Ward nurse"
EXPERT_NAME = "李医生 Dr. Li"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def values(samples: Samples, name: str, **labels: str) -> list[float]:
    wanted = set(labels.items())
    return [v for (n, ls), v in samples.items() if n == name and wanted <= ls]


async def scrape(url: str, token: str | None = None) -> tuple[int, str, Mapping[str, str]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics",
                                                         headers=headers) as reply:
        return reply.status, await reply.text(), reply.headers


async def test_counters_rise_during_a_real_session(running_server: RunningServer):
    media: MediaServer = running_server.app[MEDIA_SERVER]
    room = media.room("bed-1")
    ward = room.join(WARD_NAME, "ward", Member())
    pc, offer, tracks = await make_publisher_offer()
    publication, answer = await room.publish(ward, offer)
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    expert = room.join(EXPERT_NAME, "expert", Member())
    subscriber = Subscriber()
    subscription, sub_offer = await room.subscribe(expert, publication.id)
    await room.answer(expert, subscription.id, await subscriber.answer(sub_offer))
    try:
        await wait_for(lambda: subscriber.received.video_frames >= 5, 30)
        operator = running_server.token("operator")
        status, first_text, headers = await scrape(running_server.base_url, operator)
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        first = parse(first_text)
        frames = subscriber.received.video_frames
        await wait_for(lambda: subscriber.received.video_frames >= frames + 15, 30)
        status, second_text, _ = await scrape(running_server.base_url, operator)
        second = parse(second_text)
    finally:
        await subscriber.close()
        for track in tracks:
            track.stop()
        await pc.close()

    for kind in ("video", "audio"):
        publisher = {"room": "bed-1", "participant": ward.id, "kind": kind}
        for name in ("huizhen_producer_bytes_received_total",
                     "huizhen_producer_packets_received_total"):
            (before,) = values(first, name, **publisher)
            (after,) = values(second, name, **publisher)
            print(f"{name}{{kind={kind}}}: {before:.0f} -> {after:.0f}")
            assert after > before > 0
    for name in ("huizhen_downstream_bytes_sent_total", "huizhen_downstream_packets_sent_total"):
        before = sum(values(first, name, room="bed-1", participant=ward.id, type="rtp"))
        after = sum(values(second, name, room="bed-1", participant=ward.id, type="rtp"))
        print(f"{name}: {before:.0f} -> {after:.0f}")
        assert after > before > 0
    assert values(second, "huizhen_room_participants", room="bed-1") == [2.0]
    assert values(second, "huizhen_transport_state", room="bed-1", participant=expert.id,
                  direction="subscribe", state="connected") == [1.0]
    # Ids only: no display name reaches a label.
    for name in (WARD_NAME, EXPERT_NAME, "王护士", "Dr. Li"):
        assert name not in second_text


@contextlib.asynccontextmanager
async def serving(**overrides: str) -> AsyncIterator[RunningServer]:
    settings = make_settings(**overrides)
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    await web.TCPSite(runner, settings.server.host, settings.server.port).start()
    try:
        yield RunningServer(runner.app, settings, token_authority(settings),
                            settings.server.base_url)
    finally:
        await runner.cleanup()


async def test_scrapes_without_the_stats_grant_are_refused(running_server: RunningServer):
    status, text, headers = await scrape(running_server.base_url)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert "huizhen_" not in text
    status, text, _ = await scrape(running_server.base_url, "not-a-token")
    assert status == 401 and text == "the token is malformed"
    status, text, _ = await scrape(running_server.base_url, running_server.token("expert"))
    assert (status, text) == (403, "this token does not grant 'stats'")


async def test_an_allow_listed_address_scrapes_without_a_token():
    async with serving(HUIZHEN_METRICS_ALLOW='["127.0.0.0/8"]') as server:
        status, text, _ = await scrape(server.base_url)
    assert status == 200 and "# TYPE huizhen_room_participants gauge" in text
    async with serving(HUIZHEN_METRICS_ALLOW='["10.0.0.0/8"]') as server:
        status, _, _ = await scrape(server.base_url)
    assert status == 401


async def test_metrics_can_be_switched_off():
    async with serving(HUIZHEN_METRICS_ENABLED="false") as server:
        status, _, _ = await scrape(server.base_url, server.token("operator"))
    assert status == 404


def test_hl7_counters_come_from_the_listener():
    registry = CollectorRegistry(auto_describe=False)
    stats = ListenerStats(messages=7, accepted=5, duplicates=1, rejected=1, errors=2,
                          samples_stored=40)
    registry.register(SnapshotCollector(lambda: ServerStats("node", ()), lambda: stats))
    samples = parse(generate_latest(registry).decode())
    got = {name: values(samples, f"huizhen_hl7_{name}_total")
           for name in ("messages_received", "messages_acked", "messages_duplicate",
                        "messages_rejected", "messages_errored", "samples_stored")}
    assert got == {"messages_received": [7.0], "messages_acked": [5.0],
                   "messages_duplicate": [1.0], "messages_rejected": [1.0],
                   "messages_errored": [2.0], "samples_stored": [40.0]}
    stats.messages += 1  # read at scrape time, not copied at registration
    assert values(parse(generate_latest(registry).decode()),
                  "huizhen_hl7_messages_received_total") == [8.0]


def test_without_a_listener_there_are_no_hl7_metrics():
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: ServerStats("node", ())))
    assert "huizhen_hl7" not in generate_latest(registry).decode()


async def test_two_apps_have_registries_of_their_own():
    async with serving(HUIZHEN_METRICS_ALLOW='["127.0.0.0/8"]') as one, \
            serving(HUIZHEN_METRICS_ALLOW='["127.0.0.0/8"]') as two:
        one.app[MEDIA_SERVER].room("bed-7").join("a", "ward", Member())
        _, text_one, _ = await scrape(one.base_url)
        _, text_two, _ = await scrape(two.base_url)
        await asyncio.sleep(0)
    assert 'room="bed-7"' in text_one and 'room="bed-7"' not in text_two


async def test_recorder_frames_and_bytes_written_rise(tmp_path):
    async with serving(HUIZHEN_RECORDER_ENABLED="true", HUIZHEN_STORAGE_DATA_DIR=str(tmp_path),
                       HUIZHEN_METRICS_ALLOW='["127.0.0.1/32"]') as server:
        room = server.app[MEDIA_SERVER].room("bed-3")
        ward = room.join(WARD_NAME, "ward", Member())
        pc, offer, tracks = await make_publisher_offer()
        _, answer = await room.publish(ward, offer)
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        scrapes: list[Samples] = []

        async def frames_written() -> float:
            scrapes.append(parse((await scrape(server.base_url))[1]))
            return sum(values(scrapes[-1], "huizhen_recorder_frames_written_total"))

        try:
            for _ in range(200):
                if await frames_written() > 0:
                    break
                await asyncio.sleep(0.1)
            first = scrapes[-1]
            for _ in range(200):
                if await frames_written() >= sum(values(
                        first, "huizhen_recorder_frames_written_total")) + 20:
                    break
                await asyncio.sleep(0.1)
            second = scrapes[-1]
        finally:
            for track in tracks:
                track.stop()
            await pc.close()
    for name in ("huizhen_recorder_frames_written_total", "huizhen_recorder_bytes_written_total"):
        before, after = values(first, name), values(second, name)
        print(f"{name}: {before} -> {after}")
        assert len(after) == 1 and after[0] > before[0] > 0
    recorder_packets = values(second, "huizhen_downstream_packets_sent_total", room="bed-3",
                              participant=ward.id, type="recorder")
    assert len(recorder_packets) == 2 and all(v > 0 for v in recorder_packets)


def test_the_set_up_queue_and_seats_are_exported():
    registry = CollectorRegistry(auto_describe=False)
    room = RoomStats("bed-3", 5, (), (), PortCounters(), publishers=1, viewers=3)
    setup = SetupQueueStats(limit=16, active=3, waiting=5, queued_total=9, longest_queue=7)
    registry.register(SnapshotCollector(lambda: ServerStats("node", (room,), setup)))
    samples = parse(generate_latest(registry).decode())
    assert values(samples, "huizhen_setup_active") == [3.0]
    assert values(samples, "huizhen_setup_waiting") == [5.0]
    assert values(samples, "huizhen_setup_queued_total") == [9.0]
    assert values(samples, "huizhen_room_publishers", room="bed-3") == [1.0]
    assert values(samples, "huizhen_room_viewers", room="bed-3") == [3.0]
