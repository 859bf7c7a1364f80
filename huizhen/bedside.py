"""A simulated bedside camera: publishes the test pattern (with a clock) and a soft tone."""

from __future__ import annotations

import logging

from aiortc import RTCPeerConnection

from huizhen.testpattern import PatternVideoTrack, ToneAudioTrack
from signaling.client import SignalingClient

logger = logging.getLogger(__name__)


class SimulatedBedside:
    def __init__(self, ws_url: str, token: str, width: int = 640, height: int = 480,
                 fps: int = 30) -> None:
        self.client = SignalingClient(ws_url)
        self.token = token
        self.pc = RTCPeerConnection()
        self.video = PatternVideoTrack(width, height, fps, clock=True)
        self.audio = ToneAudioTrack(frequency=440.0, amplitude=0.03)
        self.stream: dict[str, object] | None = None

    async def start(self) -> None:
        await self.client.connect()
        await self.client.join(self.token)
        self.pc.addTrack(self.video)
        self.pc.addTrack(self.audio)
        self.stream = await self.client.publish(self.pc)
        logger.info("simulated bedside camera publishing stream %s", self.stream["id"])

    async def stop(self) -> None:
        await self.pc.close()
        await self.client.close()
