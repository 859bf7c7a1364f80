"""Chromium end to end: the ward page publishes simulcast (VP8 L1T3 in each stream); two
expert pages each get the stream their downlink carries.

The fake camera is 640x480, where Chromium sends at most two streams: the page then
offers q (160x120) and f (640x480). The thin expert's consumer is told a REMB of
100 kbit/s (after one above the rate sent: the link had room), as a browser behind a
thin link would report (tests/test_net_thin_viewer.py shapes a real link in the network
lab): it moves to the quarter-size stream and its page decodes 160x120, while the other
page keeps decoding the full 640x480. A reader of the producer that does not select
streams (as the recorder) sees exactly one stream, the full one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from mediaserver import Consumer, MediaServer
from mediaserver.downstream import DownstreamStats
from mediaserver.producer import Producer
from signaling import MEDIA_SERVER
from tests.conftest import RunningServer, make_settings, serving
from tests.test_browser import ROOM, Chromium, chromium
from tests.test_layers_browser import report_thin_link, thin_and_wide_experts, video_consumer

if TYPE_CHECKING:
    from aiortc.rtp import RtpPacket

    from mediaserver.codecs import PacketFlags

pytestmark = pytest.mark.browser
__all__ = ["chromium"]  # a fixture

INBOUND = """async () => {
  const out = [];
  for (const sub of Object.values(window.huizhen.subscriptions)) {
    if (!sub.pc) continue;
    (await sub.pc.getStats()).forEach(s => {
      if (s.type === "inbound-rtp" && s.kind === "video")
        out.push([s.frameWidth, s.frameHeight, s.framesDecoded, s.framesPerSecond]);
    });
  }
  return out;
}"""
OUTBOUND = """async () => {
  const out = [];
  for (const p of window.huizhen.publications) {
    if (!p.pc) continue;
    (await p.pc.getStats()).forEach(s => { if (s.type === "outbound-rtp" && s.kind === "video")
      out.push([s.rid, s.frameWidth, s.framesPerSecond, s.scalabilityMode,
                s.qualityLimitationReason, s.targetBitrate, s.active]);
      if (s.type === "candidate-pair" && s.nominated)
        out.push(["bwe", s.availableOutgoingBitrate]); });
  }
  return out;
}"""


class SingleStreamReader:
    """A downstream that does not select streams, like the recorder: what does it get?"""

    id = "reader"
    reads_flags = True
    closed = False

    def __init__(self) -> None:
        self.ssrcs: set[int] = set()
        self.keyframe_sizes: set[tuple[int, int]] = set()

    def write(self, packet: RtpPacket, flags: PacketFlags) -> bool:
        self.ssrcs.add(packet.ssrc)
        if flags.size is not None:
            self.keyframe_sizes.add(flags.size)
        return True

    def sender_report(self, ntp_timestamp: int, rtp_timestamp: int) -> None:
        pass

    def producer_closed(self) -> None:
        self.closed = True

    def close(self) -> None:
        self.closed = True

    def stats(self) -> DownstreamStats:
        return DownstreamStats(self.id, "reader")


def ward_video(media: MediaServer) -> Producer:
    return next(producer for participant in media.room(ROOM).participants.values()
                if participant.role == "ward"
                for publication in participant.publications.values()
                for producer in publication.producers if producer.kind == "video")


async def inbound_width(page: object) -> int:
    stats = await page.evaluate(INBOUND)  # type: ignore[attr-defined]
    return int(stats[0][0] or 0) if stats else 0


async def until(check: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.25)
    return False


@pytest.fixture
async def simulcast_server() -> AsyncIterator[RunningServer]:
    """The real server with simulcast accepted (``media.simulcast``, off by default)."""
    async with serving(make_settings(HUIZHEN_MEDIA_SIMULCAST="true")) as server:
        yield server


async def test_ward_simulcast_thin_expert_gets_a_smaller_stream_the_other_the_full_one(
        simulcast_server: RunningServer, chromium: Chromium) -> None:
    server = simulcast_server
    pages, ward = await thin_and_wide_experts(server, chromium)
    media = server.app[MEDIA_SERVER]
    producer = ward_video(media)
    assert producer.spatial_layers == 2 and producer.codec_name == "VP8", chromium.log
    reader = SingleStreamReader()
    producer.add_downstream(reader)
    # Chromium starts its higher streams as its bandwidth estimate grows.
    assert await until(lambda: _true(producer.active_layers() == [0, 1]), 30), (
        producer.active_layers(), await ward.evaluate(OUTBOUND))
    thin, wide = video_consumer(media, "Dr. Thin"), video_consumer(media, "Dr. Wide")
    assert await until(lambda: _width_is(pages["Dr. Wide"], 640), 20), (
        await pages["Dr. Wide"].evaluate(INBOUND), wide.stats())

    # The thin expert's link had room too: it is sent the full stream first, and once past
    # the grace after a switch up its estimate compares REMB with the rate sent again.
    assert await until(lambda: _true(thin.spatial_layer == 1), 20), thin.stats()
    await asyncio.sleep(Consumer.SWITCH_UP_GRACE + 0.5)

    stop = asyncio.Event()
    reporter = asyncio.ensure_future(report_thin_link(thin, stop))
    try:
        moved = await until(lambda: _true(thin.spatial_layer == 0), 20)
        assert moved, (thin.stats(), thin.spatial_layer,
                       [r.cumulative() for r in producer.spatial_rates])
        shrunk = await until(lambda: _width_in(pages["Dr. Thin"], (160,)), 20)
        thin_stats = await pages["Dr. Thin"].evaluate(INBOUND)
        decoded_before = thin_stats[0][2]
        await asyncio.sleep(3.0)
        thin_after = await pages["Dr. Thin"].evaluate(INBOUND)
        wide_after = await pages["Dr. Wide"].evaluate(INBOUND)
    finally:
        stop.set()
        await reporter
    publisher = await ward.evaluate(OUTBOUND)
    print(f"\nthin expert {thin_after}, wide expert {wide_after}; streams "
          f"{[[int(x) for x in r.cumulative()] for r in producer.spatial_rates]} bit/s; "
          f"publisher {publisher}; thin switches {thin.spatial_switches} {thin.stats()}; reader "
          f"{reader.keyframe_sizes}")
    assert shrunk, (thin_after, thin.stats())
    assert thin_after[0][0] == 160, thin_after
    assert thin_after[0][2] > decoded_before, "the thin expert's picture froze"
    assert wide_after[0][0] == 640 and wide.spatial_layer == 1, (wide_after, wide.stats())
    # The single-stream reader (the recorder's view) got the full stream only.
    producer.remove_downstream(reader)
    assert len(reader.ssrcs) == 1, reader.ssrcs
    assert reader.keyframe_sizes <= {(640, 480)}, reader.keyframe_sizes


async def _true(value: bool) -> bool:
    return value


async def _width_is(page: object, width: int) -> bool:
    return await inbound_width(page) == width


async def _width_in(page: object, widths: tuple[int, ...]) -> bool:
    return await inbound_width(page) in widths
