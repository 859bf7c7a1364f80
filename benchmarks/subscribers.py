"""N subscribers in one process that count RTP packets and never decode.

    python -m benchmarks.subscribers --mode huizhen --port 18080 --count 16 --stream s-...
    python -m benchmarks.subscribers --mode relay --port 18081 --count 4

Each subscriber is its own ``RTCPeerConnection`` (huizhen: its own WebSocket and
observer token, subscribed to the publisher's stream). Its receiver's
``_handle_rtp_packet`` is replaced, on the instance, by ``RtpCounter``: aiortc still
decrypts and parses each packet, but the jitter buffer and decoder never run, so 32
subscribers fit on this machine. A frame is a packet with the marker bit set.

Prints ``{"event": "ready", "connected": n, "failed": [...]}`` once every subscriber
is connected or has failed; answers ``snapshot`` with each subscriber's counters.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.rtp import RtpPacket

from benchmarks.common import (
    HOST,
    ROOM,
    bench_settings,
    emit,
    quiet_logging,
    restrict_to_loopback,
    serve_control,
)
from huizhen.app import token_authority
from mediaserver.codecs.vp8 import vp8_keyframe_start
from signaling.client import SignalingClient, SignalingError


class RtpCounter:
    """Stands in for ``RTCRtpReceiver._handle_rtp_packet``: counts, never decodes."""

    __slots__ = ("base_seq", "bytes", "ext_max_seq", "frames", "keyframes", "packets")

    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0
        self.frames = 0
        self.keyframes = 0
        self.base_seq: int | None = None
        self.ext_max_seq = 0

    async def handle(self, packet: RtpPacket, arrival_time_ms: int = 0) -> None:
        self.packets += 1
        payload = packet.payload
        self.bytes += len(payload)
        if packet.marker:
            self.frames += 1
        if vp8_keyframe_start(payload):
            self.keyframes += 1
        seq = packet.sequence_number
        if self.base_seq is None:
            self.base_seq = self.ext_max_seq = seq
        else:
            delta = (seq - self.ext_max_seq) & 0xFFFF
            if delta < 0x8000:
                self.ext_max_seq += delta

    @property
    def expected(self) -> int:
        return 0 if self.base_seq is None else self.ext_max_seq - self.base_seq + 1

    def counters(self) -> list[int]:
        return [self.packets, self.bytes, self.frames, self.keyframes, self.expected]


PacketHandler = Callable[[RtpPacket, int], Awaitable[None]]


def count_instead_of_decoding(pc: RTCPeerConnection, handle: PacketHandler) -> None:
    """Each receiver's ``_handle_rtp_packet`` becomes ``handle`` (e.g. RtpCounter.handle)."""
    for transceiver in pc.getTransceivers():
        receiver: Any = transceiver.receiver  # a private method, replaced on the instance
        if not hasattr(receiver, "_handle_rtp_packet"):
            raise RuntimeError("aiortc's RTCRtpReceiver has no _handle_rtp_packet any more")
        receiver._handle_rtp_packet = handle


def prefer_vp8(transceiver: Any) -> None:
    caps = RTCRtpSender.getCapabilities("video").codecs
    transceiver.setCodecPreferences([c for c in caps if c.name == "VP8"])


class BenchSubscriber:
    def __init__(self, index: int) -> None:
        self.index = index
        self.counter = RtpCounter()
        self.pc = RTCPeerConnection()
        self.client: SignalingClient | None = None

    async def start_huizhen(self, port: int, token: str, stream_id: str | None) -> None:
        self.client = client = SignalingClient(f"ws://{HOST}:{port}/ws")
        await client.connect()
        joined = await client.join(token)
        if stream_id is None:
            streams = joined.get("streams") or []
            if not streams:
                raise RuntimeError("nothing is published in the room")
            stream_id = str(streams[0]["id"])
        # As SignalingClient.subscribe, but ``prepare`` runs before media can flow.
        offer = await client.request({"type": "subscribe", "stream": stream_id})
        await self.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        self.prepare(offer["sdp"])
        restrict_to_loopback(self.pc)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await client.request({"type": "answer", "subscription": offer["subscription"],
                              "sdp": self.pc.localDescription.sdp})

    def prepare(self, offer_sdp: str) -> None:
        """The server's offer is applied, the answer not yet made: the receivers count."""
        count_instead_of_decoding(self.pc, self.counter.handle)

    def counters(self) -> list[int]:
        return self.counter.counters()

    def checks(self) -> dict[str, Any] | None:
        """What this kind of subscriber checks beyond its counters (None: nothing)."""
        return None

    async def start_relay(self, port: int, session: aiohttp.ClientSession) -> None:
        transceiver = self.pc.addTransceiver("video", direction="recvonly")
        prefer_vp8(transceiver)
        count_instead_of_decoding(self.pc, self.counter.handle)
        restrict_to_loopback(self.pc)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with session.post(f"http://{HOST}:{port}/subscribe",
                                json={"sdp": self.pc.localDescription.sdp, "type": "offer"}
                                ) as response:
            response.raise_for_status()
            answer = await response.json()
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

    async def wait_connected(self, timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while self.pc.connectionState != "connected":
            if self.pc.connectionState in ("failed", "closed"):
                raise ConnectionError(f"peer connection {self.pc.connectionState}")
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the peer connection did not connect in time")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.pc.close()
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.close()


Factory = Callable[[int], BenchSubscriber]


BUSY_WAIT = 90.0
"""Seconds a viewer refused with server-busy keeps joining again (after 2 s, doubling up
to 30 s, jittered: as the web page, whose wait starts at 3 s)."""

async def run(mode: str, port: int, count: int, first: int, stream_id: str | None,
              concurrency: int, factory: Factory = BenchSubscriber) -> None:
    subscribers = [factory(first + i) for i in range(count)]
    limit = asyncio.Semaphore(concurrency)
    session = aiohttp.ClientSession()
    authority = token_authority(bench_settings(port)) if mode == "huizhen" else None
    failed: list[str] = []
    busy = [0]  # joins refused with server-busy (each retried)

    async def start(sub: BenchSubscriber) -> None:
        busy_until = time.monotonic() + BUSY_WAIT
        refusals = 0
        try:
            while True:
                try:
                    async with limit:
                        if authority is not None:
                            token = authority.mint(room=ROOM, role="observer",
                                                   name=f"bench-subscriber-{sub.index}",
                                                   ttl=3600)
                            await asyncio.wait_for(sub.start_huizhen(port, token, stream_id),
                                                   30)
                        else:
                            await asyncio.wait_for(sub.start_relay(port, session), 30)
                    break
                except SignalingError as exc:
                    # A node at capacity (server-busy): wait, as the web page does.
                    if exc.code != "server-busy" or time.monotonic() > busy_until:
                        raise
                    busy[0] += 1
                    if sub.client is not None:
                        await sub.client.close()
                    wait = min(2.0 * 2 ** refusals, 30.0)
                    refusals += 1
                    await asyncio.sleep(wait * random.uniform(0.75, 1.25))
            await sub.wait_connected(30)
        except Exception as exc:
            failed.append(f"subscriber {sub.index}: {type(exc).__name__}: {exc}")

    try:
        await asyncio.gather(*(start(sub) for sub in subscribers))
        emit("ready", connected=sum(s.pc.connectionState == "connected" for s in subscribers),
             failed=failed, busyRefusals=busy[0], pid=os.getpid())

        async def snapshot(command: dict[str, Any]) -> dict[str, Any]:
            reply = {"subscribers": {str(s.index): s.counters() for s in subscribers},
                     "states": [s.pc.connectionState for s in subscribers]}
            checks = {str(s.index): s.checks() for s in subscribers}
            if any(value is not None for value in checks.values()):
                reply["checks"] = checks
            return reply

        await serve_control(snapshot)
    finally:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(s.close() for s in subscribers), return_exceptions=True), 8)
        await session.close()


def arguments(description: str | None) -> argparse.ArgumentParser:
    """The options of a subscriber process (``--mode`` aside)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--first", type=int, default=0, help="index of the first subscriber")
    parser.add_argument("--stream", help="huizhen stream id (default: the room's first)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="subscriptions negotiated at the same time")
    return parser


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--mode", choices=["huizhen", "relay"], required=True)
    args = parser.parse_args()
    quiet_logging()
    asyncio.run(run(args.mode, args.port, args.count, args.first, args.stream,
                    args.concurrency))


if __name__ == "__main__":
    main()
