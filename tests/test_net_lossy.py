"""Issue 11's acceptance line: over lossy, delayed links the expert's video freezes at
most 1 s per minute.

Chromium publisher -> huizhen server -> Chromium viewer, each in its own network
namespace (tests/nethost.py). The ward's uplink is capped at 4 Mbit/s with 2 % loss
and 60 ms round trip to the server; the expert's link loses 5 % each way with 100 ms
round trip and 5 ms jitter. Over 60 s of video the expert page's getStats
(``totalFreezesDuration``) must grow by at most 1 s.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.net_session import consultation, viewer_video_stats, wait_for_video
from tests.nethost import NetLab
from tests.test_net_thin_viewer import video_consumers, video_producer

pytestmark = [pytest.mark.netns, pytest.mark.browser]

WARMUP_SECONDS = 20  # the publisher's bandwidth estimate ramps up (reported, not judged)
MEASURE_SECONDS = 60
FREEZE_SECONDS_PER_MINUTE = 1.0  # the product requirement


@pytest.mark.timeout(300)
async def test_freezes_at_most_one_second_per_minute_over_lossy_links(tmp_path: Path) -> None:
    with NetLab() as lab:
        server, ward, expert = lab.host("server"), lab.host("ward"), lab.host("expert")
        lab.shape(ward, direction="up", rate_kbit=4000, loss_percent=2, delay_ms=30)
        lab.shape(ward, direction="down", delay_ms=30)
        for direction in ("up", "down"):
            lab.shape(expert, direction=direction, loss_percent=5, delay_ms=50, jitter_ms=5)

        async with consultation(server, ward, expert, tmp_path) as call:
            first = await wait_for_video(call.expert, 30, 60, call.log)
            await asyncio.sleep(WARMUP_SECONDS)
            start = await viewer_video_stats(call.expert)
            assert start is not None
            samples = []
            for _ in range(MEASURE_SECONDS // 10):
                await asyncio.sleep(10)
                samples.append(await viewer_video_stats(call.expert))
            end = samples[-1]
            assert end is not None, call.log
            layer_rates, consumers = await video_consumers(
                call.expert, call.server.token("operator", "IT"))
            producer = await video_producer(call.expert, call.server.token("operator", "IT"))
            metrics = await call.expert.evaluate("""async (token) => (await (await fetch(
                "/metrics", {headers: {Authorization: "Bearer " + token}})).text())""",
                call.server.token("operator", "IT"))

    freezes = end.freeze_count - start.freeze_count
    frozen = end.total_freezes_duration - start.total_freezes_duration
    per_minute = frozen * 60 / MEASURE_SECONDS
    fps = (end.frames_decoded - start.frames_decoded) / MEASURE_SECONDS
    print(f"\nwarm-up ({WARMUP_SECONDS} s after the first 30 frames): "
          f"{start.freeze_count - first.freeze_count} freezes, "
          f"{start.total_freezes_duration - first.total_freezes_duration:.2f} s frozen")
    print(f"over {MEASURE_SECONDS} s at the expert: {freezes} freezes, {frozen:.2f} s frozen "
          f"({per_minute:.2f} s/min; requirement <= {FREEZE_SECONDS_PER_MINUTE}), "
          f"{fps:.1f} fps decoded, {end.frame_width}x{end.frame_height}, "
          f"packetsLost {end.packets_lost - start.packets_lost} of "
          f"{end.packets_received - start.packets_received} received, "
          f"nacks {end.nack_count - start.nack_count}, plis {end.pli_count - start.pli_count}, "
          f"keyframes {end.key_frames_decoded - start.key_frames_decoded}, "
          f"{(end.bytes_received - start.bytes_received) * 8 / MEASURE_SECONDS / 1000:.0f} "
          f"kbit/s")
    print(f"server: layer bit rates {layer_rates}; expert's consumer {consumers}; "
          f"video producer {producer}")
    print("\n".join(line for line in metrics.splitlines()
                    if line.startswith("huizhen_producer_") and 'kind="video"' in line))
    for i, sample in enumerate(samples, 1):
        if sample is not None:
            print(f"  t={i * 10:2d}s fps {sample.frames_per_second:.0f} "
                  f"{sample.frame_width}x{sample.frame_height} freezes {sample.freeze_count} "
                  f"({sample.total_freezes_duration:.2f} s) lost {sample.packets_lost} "
                  f"nacks {sample.nack_count}")
    assert end.frames_decoded - start.frames_decoded > 0
    assert per_minute <= FREEZE_SECONDS_PER_MINUTE
