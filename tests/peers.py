"""Real aiortc peers for the tests: a publisher of the test pattern, subscribers that decode."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import numpy as np
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from huizhen.testpattern import (
    PatternVideoTrack,
    ToneAudioTrack,
    dominant_frequency,
    pattern_difference,
    read_frame_number,
)


def prefer_codec(pc: RTCPeerConnection, kind: str, codec_name: str) -> None:
    for transceiver in pc.getTransceivers():
        if transceiver.kind == kind:
            caps = RTCRtpSender.getCapabilities(kind).codecs
            chosen = [c for c in caps if c.name.lower() == codec_name.lower()]
            rtx = [c for c in caps if c.name.lower() == "rtx"]
            transceiver.setCodecPreferences(chosen + rtx)


async def make_publisher_offer(video: bool = True, audio: bool = True, codec: str = "VP8",
                               width: int = 320, height: int = 240
                               ) -> tuple[RTCPeerConnection, str, list[MediaStreamTrack]]:
    pc = RTCPeerConnection()
    tracks: list[MediaStreamTrack] = []
    if video:
        tracks.append(PatternVideoTrack(width, height, fps=30))
        pc.addTrack(tracks[-1])
        prefer_codec(pc, "video", codec)
    if audio:
        tracks.append(ToneAudioTrack(440.0))
        pc.addTrack(tracks[-1])
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp, tracks


@dataclass
class Received:
    video_frames: int = 0
    frame_numbers: list[int] = field(default_factory=list)
    worst_difference: float = 0.0
    mean_difference: float = 0.0
    audio_samples: list[np.ndarray] = field(default_factory=list)
    audio_rate: int = 48000

    def audio_frequency(self) -> float:
        samples = np.concatenate(self.audio_samples[-50:])
        return dominant_frequency(samples, self.audio_rate)


class Subscriber:
    """An aiortc peer that answers a server offer and decodes what it receives."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection()
        self.received = Received()
        self._tasks: list[asyncio.Task[None]] = []
        self._diffs: list[float] = []
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.ensure_future(self._consume(track)))

    async def _consume(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                if track.kind == "video":
                    img = frame.to_ndarray(format="bgr24")
                    number = read_frame_number(img)
                    diff = pattern_difference(img, number)
                    self._diffs.append(diff)
                    r = self.received
                    r.video_frames += 1
                    r.frame_numbers.append(number)
                    r.worst_difference = max(r.worst_difference, diff)
                    r.mean_difference = float(np.mean(self._diffs))
                else:
                    samples = frame.to_ndarray()
                    if samples.ndim == 2 and frame.layout.name == "stereo":
                        samples = samples.reshape(-1, 2)[:, 0]
                    self.received.audio_samples.append(samples.reshape(-1))
                    self.received.audio_rate = frame.sample_rate

    async def answer(self, offer_sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()


async def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval)
