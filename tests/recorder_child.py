"""Support for the recorder tests: real encoded media, a clocked publisher, a crash child.

``python -m tests.recorder_child RECORDINGS_DIR`` records a room in which an aiortc
peer publishes the test pattern (VP8 + Opus), prints one JSON line when the video
file has started, and then runs until it is killed (the kill -9 test).
"""

from __future__ import annotations

import asyncio
import fractions
import json
import sys
import time
from pathlib import Path
from typing import Any

import av
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder

from huizhen.testpattern import PatternVideoTrack, ToneAudioTrack, pattern_frame
from mediaserver import MediaConfig, MediaServer, Publication, Room
from tests.fakes import Member
from tests.peers import prefer_codec

Packet = tuple[int, int, bool, bytes]  # seq, timestamp, marker, payload


class ClockedPatternTrack(PatternVideoTrack):
    """The test pattern, remembering the wall-clock time at which each frame was captured."""

    def __init__(self, width: int = 320, height: int = 240, fps: int = 30) -> None:
        super().__init__(width, height, fps)
        self.captured: dict[int, float] = {}

    async def recv(self) -> av.VideoFrame:
        index = self.index
        frame = await super().recv()
        self.captured[index] = time.time()
        return frame


async def publish(room: Room, name: str = "Ward Nurse Li", role: str = "ward",
                  codec: str = "VP8", audio: bool = True, video: bool = True,
                  ) -> tuple[Any, RTCPeerConnection, Publication, list[Any]]:
    """Join ``room`` and publish the pattern (and a 440 Hz tone) from a real aiortc peer."""
    participant = room.join(name, role, Member())
    pc = RTCPeerConnection()
    tracks: list[Any] = []
    if video:
        tracks.append(ClockedPatternTrack())
        pc.addTrack(tracks[-1])
        prefer_codec(pc, "video", codec)
    if audio:
        tracks.append(ToneAudioTrack(440.0))
        pc.addTrack(tracks[-1])
    await pc.setLocalDescription(await pc.createOffer())
    publication, answer = await room.publish(participant, pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    return participant, pc, publication, tracks


def video_packets(codec: str, count: int, width: int = 320, height: int = 240,
                  keyframe_every: int = 30, first_seq: int = 65500,
                  first_timestamp: int = (1 << 32) - 90000) -> list[list[Packet]]:
    """RTP packets of ``count`` pattern frames from aiortc's own encoder, frame by frame.

    Sequence numbers and timestamps start near their wrap-around on purpose.
    """
    encoder: Any = Vp8Encoder() if codec == "VP8" else H264Encoder()
    seq = first_seq
    frames = []
    for index in range(count):
        picture = av.VideoFrame.from_ndarray(pattern_frame(index, width, height), format="bgr24")
        picture.pts = index * 3000
        picture.time_base = fractions.Fraction(1, 90000)
        payloads, timestamp = encoder.encode(picture, force_keyframe=index % keyframe_every == 0)
        timestamp = (first_timestamp + timestamp) & 0xFFFFFFFF
        packets = []
        for i, payload in enumerate(payloads):
            packets.append((seq, timestamp, i == len(payloads) - 1, payload))
            seq = (seq + 1) & 0xFFFF
        frames.append(packets)
    return frames


def opus_packets(count: int, first_seq: int = 100, first_timestamp: int = 12345
                 ) -> list[Packet]:
    """RTP packets of ``count`` 20 ms Opus frames of a 440 Hz tone, from aiortc's encoder."""
    import numpy as np

    encoder = OpusEncoder()
    packets = []
    for index in range(count):
        t = (np.arange(960) + index * 960) / 48000
        wave = (np.sin(2 * np.pi * 440 * t) * 0.3 * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(wave.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = index * 960
        frame.time_base = fractions.Fraction(1, 48000)
        payloads, timestamp = encoder.encode(frame)
        packets.append(((first_seq + index) & 0xFFFF, (first_timestamp + timestamp) & 0xFFFFFFFF,
                        True, payloads[0]))
    return packets


async def child(recordings_dir: Path) -> None:
    from recorder.session_recorder import SessionRecorder

    server = MediaServer(MediaConfig(ice_addresses=("127.0.0.1",)))
    room = server.room("crash-room")
    recorder = SessionRecorder(room, recordings_dir)
    recorder.start()
    _, _pc, publication, _tracks = await publish(room)
    video = recorder.path / "tracks" / f"{publication.producers[0].id}.webm"
    while not (video.exists() and video.stat().st_size > 0):
        await asyncio.sleep(0.05)
    print(json.dumps({"recording": recorder.id, "path": str(recorder.path),
                      "video_started": time.time()}), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(child(Path(sys.argv[1])))
