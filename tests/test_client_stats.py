"""`client-stats`: pages report their reception; /metrics exports it beside the server's
layer-selection numbers.

The parser and the book (pure), the collector over a made-up snapshot, hostile reports
over a real socket (an error each, the session goes on), and a real Chromium expert page
watching a real ward page, scraped twice.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest
from aiortc import RTCSessionDescription
from prometheus_client import CollectorRegistry, generate_latest

from huizhen.metrics import SnapshotCollector
from mediaserver.datagrams import PortCounters
from mediaserver.downstream import DownstreamStats
from mediaserver.stats import ProducerStats, RoomStats, ServerStats
from signaling import MEDIA_SERVER
from signaling.app_keys import CLIENT_STATS
from signaling.client import SignalingClient, SignalingError
from signaling.client_stats import (
    MAX_STREAMS,
    ClientStatsBook,
    StreamReport,
    parse_reports,
)
from signaling.messages import ClientStats, ProtocolError, parse_request
from tests.conftest import RunningServer
from tests.fakes import Member
from tests.peers import Subscriber, make_publisher_offer
from tests.test_browser import Chromium, chromium, frames_decoded, wait_joined  # noqa: F401
from tests.test_metrics import parse, scrape, values

ROOM = "bed-1"


def entry(stream: str = "s-1", **fields: Any) -> dict[str, Any]:
    return {"stream": stream, "framesDecoded": 300, "freezeCount": 1,
            "totalFreezesDuration": 0.5, "packetsLost": 2, "jitter": 0.004,
            "currentRoundTripTime": 0.001, **fields}


# ----------------------------------------------------------------------------- parsing


def test_a_report_is_read_into_seconds_and_counts() -> None:
    request = parse_request(json.dumps({"type": "client-stats", "id": 7,
                                        "streams": [entry(), entry("s-2", jitter=None,
                                                                   packetsLost=-1)]}))
    assert request == ClientStats(7, (
        StreamReport("s-1", 300, 1, 0.5, 2, 0.004, 0.001),
        StreamReport("s-2", 300, 1, 0.5, -1, None, 0.001)))
    # Optional: jitter and the round trip; unknown keys are ignored.
    minimal = {"stream": "s-3", "framesDecoded": 0, "freezeCount": 0,
               "totalFreezesDuration": 0, "packetsLost": 0, "newerField": "x"}
    assert parse_reports([minimal]) == (StreamReport("s-3", 0, 0, 0.0, 0),)


@pytest.mark.parametrize(("streams", "message"), [
    (None, "'streams' must be a non-empty list"),
    ([], "'streams' must be a non-empty list"),
    ({"s-1": entry()}, "'streams' must be a non-empty list"),
    ([entry()] * (MAX_STREAMS + 1), "'streams' holds more than 32 entries"),
    ([{}] * 10_000, "'streams' holds more than 32 entries"),
    (["s-1"], "each entry of 'streams' must be an object"),
    ([entry(stream=5)], "'stream' must be a string of 1-64 characters"),
    ([entry(stream="s" * 65)], "'stream' must be a string of 1-64 characters"),
    ([entry(framesDecoded="300")], "'framesDecoded' must be an integer"),
    ([entry(framesDecoded=True)], "'framesDecoded' must be an integer"),
    ([entry(framesDecoded=1.5)], "'framesDecoded' must be an integer"),
    ([entry(framesDecoded=-1)], "'framesDecoded' must be an integer"),
    ([entry(freezeCount=2**53)], "'freezeCount' must be an integer"),
    ([entry(packetsLost=None)], "'packetsLost' must be an integer"),
    ([entry(totalFreezesDuration=None)], "'totalFreezesDuration' must be a number"),
    ([entry(totalFreezesDuration=-0.1)], "'totalFreezesDuration' must be a number"),
    ([entry(jitter=math.nan)], "'jitter' must be a number"),
    ([entry(currentRoundTripTime=math.inf)], "'currentRoundTripTime' must be a number"),
    ([entry(currentRoundTripTime=[1])], "'currentRoundTripTime' must be a number"),
    ([entry(), entry()], "'streams' names a stream twice"),
])
def test_malformed_reports_are_refused_naming_the_field(streams: object, message: str) -> None:
    raw = json.dumps({"type": "client-stats", "id": "r1", "streams": streams})
    with pytest.raises(ProtocolError) as info:
        parse_request(raw)
    assert info.value.code == "bad-message" and info.value.request_id == "r1"
    assert info.value.message.startswith(message)
    assert "300" not in info.value.message  # never what the client sent


def test_the_book_keeps_the_latest_report_of_live_streams_only() -> None:
    book = ClientStatsBook()
    old = StreamReport("s-1", 10, 0, 0.0, 0)
    book.update("r", "p-1", [old, StreamReport("s-2", 5, 0, 0.0, 0)], {"s-1", "s-2"})
    new = StreamReport("s-1", 20, 1, 0.3, 1)
    book.update("r", "p-1", [new], {"s-1"})  # s-2 was unsubscribed meanwhile
    assert [(c.room, c.participant, c.report) for c in book.snapshot()] == [("r", "p-1", new)]
    book.forget("r", "p-1")
    assert book.snapshot() == ()


# ----------------------------------------------------------------------------- metrics


def test_metrics_export_layers_and_client_reports() -> None:
    selected = DownstreamStats("d-1", "rtp", 100, temporal_layer=1, target_bitrate=250_000,
                               layer_switches=3, copies_sent=41)
    every_layer = DownstreamStats("d-2", "rtp", 100)
    producer = ProducerStats("s-1-0", "video", "VP8", 1000, 2, (selected, every_layer), "p-w",
                             layer_bitrates=(300_000, 150_000, 120_000))
    room = RoomStats(ROOM, 2, (producer,), (), PortCounters())
    book = ClientStatsBook()
    book.update(ROOM, "p-e", [StreamReport("s-1", 420, 2, 1.25, 7, 0.003, 0.0005)], {"s-1"})
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: ServerStats("n", (room,)),
                                        clients=book.snapshot))
    samples = parse(generate_latest(registry).decode())
    assert values(samples, "huizhen_downstream_temporal_layer", downstream="d-1") == [1.0]
    assert values(samples, "huizhen_downstream_target_bitrate_bps", downstream="d-1") == \
        [250_000.0]
    assert values(samples, "huizhen_downstream_layer_switches_total", downstream="d-1") == [3.0]
    assert values(samples, "huizhen_downstream_copies_sent_total", downstream="d-1") == [41.0]
    # Without layer selection there is no layer and no target: no sample, not a 0.
    assert values(samples, "huizhen_downstream_temporal_layer", downstream="d-2") == []
    assert values(samples, "huizhen_downstream_target_bitrate_bps", downstream="d-2") == []
    assert values(samples, "huizhen_downstream_layer_switches_total", downstream="d-2") == [0.0]
    assert [values(samples, "huizhen_producer_layer_bitrate_bps", producer="s-1-0",
                   participant="p-w", layer=str(layer)) for layer in range(3)] == \
        [[300_000.0], [150_000.0], [120_000.0]]
    viewer = {"room": ROOM, "participant": "p-e", "stream": "s-1"}
    assert values(samples, "huizhen_client_frames_decoded_total", **viewer) == [420.0]
    assert values(samples, "huizhen_client_freezes_total", **viewer) == [2.0]
    assert values(samples, "huizhen_client_freeze_seconds_total", **viewer) == [1.25]
    assert values(samples, "huizhen_client_packets_lost_total", **viewer) == [7.0]
    assert values(samples, "huizhen_client_jitter_seconds", **viewer) == [0.003]
    assert values(samples, "huizhen_client_round_trip_seconds", **viewer) == [0.0005]


# ----------------------------------------------------------------------------- hostile input


async def test_hostile_reports_get_an_error_and_the_session_goes_on(
        running_server: RunningServer) -> None:
    media = running_server.app[MEDIA_SERVER]
    room = media.room(ROOM)
    ward = room.join("ward", "ward", Member())
    pc, offer, tracks = await make_publisher_offer(audio=False)
    publication, answer = await room.publish(ward, offer)
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    expert = SignalingClient(running_server.ws_url)
    await expert.connect()
    subscriber = Subscriber()
    try:
        joined = await expert.join(running_server.token("expert", ROOM, "li"))
        me = joined["participant"]["id"]
        await expert.subscribe(publication.id, subscriber.pc)
        stream = publication.id
        hostile: list[tuple[Any, str]] = [
            ("not a list", "bad-message"),
            ([entry(stream, framesDecoded="many")], "bad-message"),
            ([entry(stream, jitter=-1)], "bad-message"),
            ([{**entry(stream), "stream": None}], "bad-message"),
            ([[1, 2, 3]] * 200, "bad-message"),
            ([{"stream": f"s-{i}"} for i in range(10_000)], "message-too-large"),
            ([{}] * 10_000, "bad-message"),
            ([entry("s-000000000000")], "not-found"),  # a stream it does not receive
            ([entry(stream), entry("s-000000000000")], "not-found"),
        ]
        for streams, code in hostile:
            if code == "message-too-large":
                # Refused before it is read: the error cannot carry the request's id.
                assert expert._ws is not None
                await expert._ws.send_str(json.dumps({"type": "client-stats", "id": "big",
                                                      "streams": streams}))
                error = await expert.next_event("error", timeout=10)
                assert error["code"] == code and "id" not in error
                continue
            with pytest.raises(SignalingError) as info:
                await expert.request({"type": "client-stats", "streams": streams})
            assert info.value.code == code, (streams if len(str(streams)) < 200 else code)
        assert running_server.app[CLIENT_STATS].snapshot() == ()
        # The session goes on: a ping, then a good report, kept for /metrics.
        assert (await expert.request({"type": "ping"}))["type"] == "pong"
        reply = await expert.request({"type": "client-stats", "streams": [entry(stream)]})
        assert reply["type"] == "ok"
        (kept,) = running_server.app[CLIENT_STATS].snapshot()
        assert (kept.room, kept.participant, kept.report.stream) == (ROOM, me, stream)
        assert kept.report.frames_decoded == 300
        # Leaving forgets it.
        await expert.request({"type": "leave"})
        assert running_server.app[CLIENT_STATS].snapshot() == ()
    finally:
        await subscriber.close()
        await expert.close()
        for track in tracks:
            track.stop()
        await pc.close()
        room.leave(ward)


# ----------------------------------------------------------------------------- in Chromium


async def client_samples(base_url: str, token: str, name: str) -> dict[str, float]:
    """The page-reported ``name`` per stream, from one scrape."""
    status, text, _ = await scrape(base_url, token)
    assert status == 200
    return {dict(labels)["stream"]: value
            for (metric, labels), value in parse(text).items() if metric == name}


@pytest.mark.browser
async def test_an_expert_page_reports_its_reception_into_metrics(
        running_server: RunningServer, chromium: Chromium) -> None:  # noqa: F811
    base = running_server.base_url
    operator = running_server.token("operator", "*")
    expert = await chromium.open(
        "expert", f"{base}/expert.html#token={running_server.token('expert', ROOM, 'li')}")
    await wait_joined(expert)
    await chromium.open(
        "ward", f"{base}/ward.html#token={running_server.token('ward', ROOM, 'nurse')}"
                "&autostart=1")
    await frames_decoded(expert, 30, 40, chromium.log)
    me = await expert.evaluate("window.huizhen.self.id")
    (stream,) = await expert.evaluate("Object.keys(window.huizhen.subscriptions)")

    # The page's own 10 s task reports, unasked.
    first: dict[str, float] = {}

    async def reported() -> bool:
        first.update(await client_samples(base, operator, "huizhen_client_frames_decoded_total"))
        return stream in first

    deadline = asyncio.get_running_loop().time() + 30
    while not await reported():
        assert asyncio.get_running_loop().time() < deadline, f"no report\n{chromium.log}"
        await asyncio.sleep(1)
    assert first[stream] > 0
    # Decoding goes on; the next report (sent now rather than in 10 s) says so.
    seen = await expert.evaluate("window.huizhen.framesDecoded()")
    await frames_decoded(expert, seen + 30, 30, chromium.log)
    sent = await expert.evaluate("window.huizhen.session.reportClientStats()")
    assert sent["type"] == "client-stats" and [s["stream"] for s in sent["streams"]] == [stream]
    second = await client_samples(base, operator, "huizhen_client_frames_decoded_total")
    assert second[stream] >= first[stream] + 30
    _, text, _ = await scrape(base, operator)
    samples = parse(text)
    viewer = {"room": ROOM, "participant": me, "stream": stream}
    for name in ("huizhen_client_freezes_total", "huizhen_client_freeze_seconds_total",
                 "huizhen_client_packets_lost_total", "huizhen_client_round_trip_seconds"):
        (value,) = values(samples, name, **viewer)
        assert value >= 0, name
    (rtt,) = values(samples, "huizhen_client_round_trip_seconds", **viewer)
    assert rtt < 1.0  # loopback
    print(f"\nclient-reported frames decoded {first[stream]:.0f} -> {second[stream]:.0f}, "
          f"freezes {values(samples, 'huizhen_client_freezes_total', **viewer)[0]:.0f}, "
          f"rtt {rtt * 1000:.2f} ms")
    # The page never showed the reports' replies to the viewer as errors.
    assert await expert.evaluate("window.huizhen.errors.length") == 0
