"""The comparison: a plain aiortc server relaying with ``aiortc.contrib.media.MediaRelay``.

    python -m benchmarks.relay_server --port 18081

The publisher's video is decoded once (aiortc's receiver always decodes) and
``MediaRelay`` hands the decoded frames to every subscriber's sender, which
re-encodes them: one VP8 encoder per subscriber. Benchmark-only protocol:

* ``POST /publish``   ``{"sdp", "type": "offer"}`` -> ``{"sdp", "type": "answer"}``
* ``POST /subscribe`` ``{"sdp", "type": "offer"}`` (recvonly video) -> answer

VP8 encoders here are pinned to the publisher's 1.5 Mbit/s (the benchmark's
subscribers send no REMB, so aiortc would otherwise stay at its 500 kbit/s default)
so both servers send subscribers the same bitrate. Subscribers get
``relay.subscribe(track)`` as in aiortc's examples (buffered: a subscriber whose
encoder falls behind queues frames; ``--unbuffered`` makes it skip them instead).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from typing import Any

from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack

from benchmarks.common import (
    HOST,
    emit,
    pin_vp8_bitrate,
    quiet_logging,
    restrict_to_loopback,
    serve_control,
)


class RelayServer:
    def __init__(self, buffered: bool = True) -> None:
        self.relay = MediaRelay()
        self.buffered = buffered
        self.source: MediaStreamTrack | None = None
        self.pcs: set[RTCPeerConnection] = set()
        self.subscribers = 0

    def _new_pc(self) -> RTCPeerConnection:
        pc = RTCPeerConnection()
        self.pcs.add(pc)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self.pcs.discard(pc)
                await pc.close()

        return pc

    async def _offer(self, request: web.Request) -> RTCSessionDescription:
        body: dict[str, Any] = await request.json()
        if body.get("type") != "offer" or not isinstance(body.get("sdp"), str):
            raise web.HTTPBadRequest(text="expected {sdp, type: offer}")
        return RTCSessionDescription(body["sdp"], "offer")

    async def _answer(self, pc: RTCPeerConnection) -> web.Response:
        restrict_to_loopback(pc)
        await pc.setLocalDescription(await pc.createAnswer())
        return web.json_response({"sdp": pc.localDescription.sdp, "type": "answer"})

    async def publish(self, request: web.Request) -> web.Response:
        offer = await self._offer(request)
        if self.source is not None:
            raise web.HTTPConflict(text="already publishing")
        pc = self._new_pc()

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video" and self.source is None:
                self.source = track

        await pc.setRemoteDescription(offer)
        return await self._answer(pc)

    async def subscribe(self, request: web.Request) -> web.Response:
        offer = await self._offer(request)
        if self.source is None:
            raise web.HTTPConflict(text="nothing is published yet")
        pc = self._new_pc()
        await pc.setRemoteDescription(offer)
        pc.addTrack(self.relay.subscribe(self.source, buffered=self.buffered))
        self.subscribers += 1
        return await self._answer(pc)

    async def close(self) -> None:
        pcs, self.pcs = list(self.pcs), set()
        await asyncio.gather(*(pc.close() for pc in pcs), return_exceptions=True)


async def run(port: int, buffered: bool) -> None:
    pin_vp8_bitrate()
    server = RelayServer(buffered)
    app = web.Application()
    app.router.add_post("/publish", server.publish)
    app.router.add_post("/subscribe", server.subscribe)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, HOST, port).start()
        emit("ready", url=f"http://{HOST}:{port}", pid=os.getpid())
        await serve_control()
    finally:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.close(), 10)
        await asyncio.wait_for(runner.cleanup(), 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--unbuffered", action="store_true",
                        help="relay.subscribe(track, buffered=False)")
    args = parser.parse_args()
    quiet_logging()
    asyncio.run(run(args.port, not args.unbuffered))


if __name__ == "__main__":
    main()
