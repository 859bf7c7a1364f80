"""One publisher: a 640x480 30 fps VP8 test pattern at a pinned 1.5 Mbit/s, video only.

    python -m benchmarks.publisher --mode huizhen --port 18080
    python -m benchmarks.publisher --mode relay --port 18081

The encoder's target is pinned (``pin_vp8_bitrate``): no REMB-driven rebuilds, no
keyframe bursts. The plain test pattern is too simple to fill 1.5 Mbit/s (the pinned
encoder undershoots to ~0.7 Mbit/s), so by default each frame gets sensor-like grain:
its 3 low bits are XORed with one of 16 precomputed random frames, which brings the
stream to ~1.5 Mbit/s for ~0.1 ms per frame. ``--grain-bits 0`` sends the bare pattern.

``huizhen`` publishes through the signalling WebSocket (a ward token for room
"bench"); ``relay`` posts its offer to ``benchmarks.relay_server``. Prints
``{"event": "ready", "stream": ...}`` when connected; answers ``snapshot`` with the
number of frames produced and the encoder's target bitrate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from benchmarks.common import (
    HOST,
    ROOM,
    TARGET_BITRATE,
    bench_settings,
    emit,
    pin_vp8_bitrate,
    quiet_logging,
    restrict_to_loopback,
    serve_control,
)
from huizhen.app import token_authority
from huizhen.testpattern import PatternVideoTrack
from signaling.client import SignalingClient


class GrainyPatternTrack(PatternVideoTrack):
    """The test pattern with random low-bit grain, so the encoder has bits to spend."""

    def __init__(self, width: int, height: int, fps: int, grain_bits: int) -> None:
        super().__init__(width, height, fps)
        rng = np.random.default_rng(20240601)
        self._grain = [rng.integers(0, 1 << grain_bits, (height, width, 3), dtype=np.uint8)
                       for _ in range(16)] if grain_bits > 0 else []

    async def recv(self) -> av.VideoFrame:
        frame = await super().recv()
        if not self._grain:
            return frame
        img = frame.to_ndarray(format="bgr24")
        np.bitwise_xor(img, self._grain[self.index % len(self._grain)], out=img)
        grainy = av.VideoFrame.from_ndarray(img, format="bgr24")
        grainy.pts = frame.pts
        grainy.time_base = frame.time_base
        return grainy


def prefer_vp8(pc: RTCPeerConnection) -> None:
    caps = RTCRtpSender.getCapabilities("video").codecs
    codecs = [c for c in caps if c.name == "VP8"] + [c for c in caps if c.name == "rtx"]
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "video":
            transceiver.setCodecPreferences(codecs)


async def wait_connected(pc: RTCPeerConnection, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while pc.connectionState != "connected":
        if pc.connectionState in ("failed", "closed"):
            raise ConnectionError(f"peer connection {pc.connectionState}")
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("the peer connection did not connect in time")
        await asyncio.sleep(0.05)


async def run(mode: str, port: int, width: int, height: int, fps: int, bitrate: int,
              grain_bits: int) -> None:
    pin_vp8_bitrate(bitrate)
    pc = RTCPeerConnection()
    track = GrainyPatternTrack(width, height, fps, grain_bits)
    sender = pc.addTrack(track)
    prefer_vp8(pc)
    restrict_to_loopback(pc)
    client: SignalingClient | None = None
    try:
        if mode == "huizhen":
            settings = bench_settings(port)
            token = token_authority(settings).mint(room=ROOM, role="ward", name="bench-publisher",
                                                   ttl=3600)
            client = SignalingClient(f"ws://{HOST}:{port}/ws")
            await client.connect()
            await client.join(token)
            stream = await client.publish(pc)
            stream_id = str(stream["id"])
        else:
            await pc.setLocalDescription(await pc.createOffer())
            async with aiohttp.ClientSession() as session, session.post(
                f"http://{HOST}:{port}/publish",
                json={"sdp": pc.localDescription.sdp, "type": "offer"},
            ) as response:
                response.raise_for_status()
                answer = await response.json()
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
            stream_id = "relay"
        await wait_connected(pc, 30)
        emit("ready", stream=stream_id, pid=os.getpid())

        async def snapshot(command: dict[str, Any]) -> dict[str, Any]:
            encoder = getattr(sender, "_RTCRtpSender__encoder", None)
            return {
                "frames": track.index,
                "targetBitrate": getattr(encoder, "target_bitrate", None),
                "packetsSent": getattr(sender, "_RTCRtpSender__packet_count", None),
                "octetsSent": getattr(sender, "_RTCRtpSender__octet_count", None),
                "state": pc.connectionState,
            }

        await serve_control(snapshot)
    finally:
        track.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(pc.close(), 5)
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=["huizhen", "relay"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--bitrate", type=int, default=TARGET_BITRATE)
    parser.add_argument("--grain-bits", type=int, default=3, choices=range(9),
                        help="random low bits per pixel (default 3; 0: the bare pattern)")
    args = parser.parse_args()
    quiet_logging()
    asyncio.run(run(args.mode, args.port, args.width, args.height, args.fps, args.bitrate,
                    args.grain_bits))


if __name__ == "__main__":
    main()
