"""Viewers joining at once: time to the first keyframe, with and without the set-up queue.

    python -m benchmarks.join_herd                      # 48 viewers, limits 0 and 8
    python -m benchmarks.join_herd --viewers 64 --limits 0 4 16

One process: the real server on a loopback port, one aiortc publisher of the test
pattern (VP8, 640x480), and ``--viewers`` counting subscribers (benchmarks/subscribers.py:
aiortc decrypts and parses each packet, nothing is decoded), each on its own socket,
all sent ``subscribe`` at the same moment. For each ``[media] setup_concurrency`` in
``--limits`` (0: no bound, the baseline) a fresh server is measured: each viewer's time
from its ``subscribe`` to its first keyframe packet (p50, p95, max), the viewers that
got none within ``--timeout``, and the server's set-up queue (``/api/v1/stats``).
Everything shares one event loop and this machine's cores, so the figures compare the
rounds of one run with each other; they are not absolute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription

from benchmarks.common import HOST, ROOM, bench_settings, quiet_logging, restrict_to_loopback
from benchmarks.forwarding import free_port
from benchmarks.subscribers import RtpCounter, count_instead_of_decoding
from config import Settings
from huizhen.app import create_app, token_authority
from huizhen.testpattern import PatternVideoTrack
from mediaserver import SetupQueueStats
from signaling import MEDIA_SERVER
from signaling.client import SignalingClient


@dataclass
class Viewer:
    client: SignalingClient
    pc: RTCPeerConnection
    counter: RtpCounter
    first_keyframe_s: float | None = None


async def viewer_joined(ws_url: str, token: str) -> Viewer:
    client = SignalingClient(ws_url)
    await client.connect()
    await client.join(token)
    return Viewer(client, RTCPeerConnection(), RtpCounter())


async def subscribe(viewer: Viewer, stream_id: str, started: float) -> None:
    """As ``SignalingClient.subscribe``, with the receiver counting instead of decoding."""
    offer = await viewer.client.request({"type": "subscribe", "stream": stream_id}, 120)
    await viewer.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
    count_instead_of_decoding(viewer.pc, viewer.counter)
    restrict_to_loopback(viewer.pc)
    await viewer.pc.setLocalDescription(await viewer.pc.createAnswer())
    await viewer.client.request({"type": "answer", "subscription": offer["subscription"],
                                 "sdp": viewer.pc.localDescription.sdp}, 120)
    while viewer.counter.keyframes == 0:
        await asyncio.sleep(0.01)
    viewer.first_keyframe_s = time.monotonic() - started


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[web.Application]:
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=3.0)
    await runner.setup()
    await web.TCPSite(runner, HOST, settings.server.port).start()
    try:
        yield app
    finally:
        await runner.cleanup()


async def one_round(limit: int, viewers_wanted: int, timeout: float) -> dict[str, Any]:
    base = bench_settings(free_port())
    settings = replace(base, media=replace(base.media, setup_concurrency=limit,
                                           room_viewers=viewers_wanted),
                       signaling=replace(base.signaling, sockets_per_address=0))
    ws_url = f"ws://{HOST}:{settings.server.port}/ws"
    authority = token_authority(settings)
    async with serving(settings) as app:
        publisher = SignalingClient(ws_url)
        await publisher.connect()
        await publisher.join(authority.mint(room=ROOM, role="ward", name="ward", ttl=600))
        pc = RTCPeerConnection()
        track = PatternVideoTrack(640, 480, fps=30)
        pc.addTrack(track)
        stream = await publisher.publish(pc)
        viewers = await asyncio.gather(*(viewer_joined(ws_url, authority.mint(
            room=ROOM, role="observer", name=f"v{i}", ttl=600)) for i in range(viewers_wanted)))
        await asyncio.sleep(2.0)  # the publisher's first frames, before the herd
        started = time.monotonic()
        tasks = [asyncio.ensure_future(subscribe(v, stream["id"], started)) for v in viewers]
        await asyncio.wait(tasks, timeout=timeout)
        setup: SetupQueueStats = app[MEDIA_SERVER].setup.stats()
        for task in tasks:
            task.cancel()
        times = sorted(v.first_keyframe_s for v in viewers if v.first_keyframe_s is not None)
        for viewer in viewers:
            with contextlib.suppress(Exception):
                await viewer.pc.close()
            await viewer.client.close()
        track.stop()
        await pc.close()
        await publisher.close()
    return {"limit": limit, "viewers": viewers_wanted, "served": len(times),
            "p50_s": statistics.median(times) if times else None,
            "p95_s": times[max(0, int(len(times) * 0.95) - 1)] if times else None,
            "max_s": times[-1] if times else None,
            "first_s": times[0] if times else None,
            "queued_total": setup.queued_total, "longest_queue": setup.longest_queue}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


async def run(viewers: int, limits: list[int], timeout: float) -> None:
    rows = [await one_round(limit, viewers, timeout) for limit in limits]
    print(f"{viewers} viewers subscribing at once; seconds from subscribe to the first "
          "keyframe packet")
    print("setup_concurrency  served  first   p50    p95    max    queued  longest queue")
    for row in rows:
        name = "0 (no bound)" if row["limit"] == 0 else str(row["limit"])
        print(f"{name:<17}  {row['served']:>3}/{row['viewers']:<3} {_fmt(row['first_s']):>6} "
              f"{_fmt(row['p50_s']):>6} {_fmt(row['p95_s']):>6} {_fmt(row['max_s']):>6} "
              f"{row['queued_total']:>7}  {row['longest_queue']:>5}")
    baseline = rows[0]
    for row in rows[1:]:
        if baseline["p50_s"] and row["p50_s"] and baseline["max_s"] and row["max_s"]:
            print(f"limit {row['limit']} against {baseline['limit']}: first keyframe p50 "
                  f"x{row['p50_s'] / baseline['p50_s']:.2f}, max "
                  f"x{row['max_s'] / baseline['max_s']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", type=int, default=48)
    parser.add_argument("--limits", type=int, nargs="+", default=[0, 8],
                        help="setup_concurrency of each round; the first is the baseline")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds a round waits for every viewer's first keyframe")
    args = parser.parse_args()
    quiet_logging()
    asyncio.run(run(args.viewers, args.limits, args.timeout))


if __name__ == "__main__":
    main()
