"""Resolution changes in the manifest: a real aiortc publisher changes its picture size mid-call.

The recorder reads sizes from keyframe headers only (VP8 frame tag, H.264 SPS), never by
decoding; the test checks the manifest's list against what PyAV decodes from the file.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import av
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from huizhen.testpattern import PatternVideoTrack
from mediaserver import MediaConfig, MediaServer
from recorder.manifest import load_manifest
from recorder.session_recorder import SessionRecorder
from tests.fakes import Member
from tests.peers import prefer_codec, wait_for

SIZES = ((320, 240), (176, 144), (320, 240))
FRAMES_PER_SIZE = 45  # 1.5 s at 30 fps


class ResizingPatternTrack(PatternVideoTrack):
    """The test pattern at SIZES[0], then each next size after FRAMES_PER_SIZE frames."""

    def __init__(self) -> None:
        super().__init__(*SIZES[0], fps=30)

    async def recv(self) -> av.VideoFrame:
        self.width, self.height = SIZES[min(self.index // FRAMES_PER_SIZE, len(SIZES) - 1)]
        return await super().recv()


def decoded_sizes(path: Path) -> list[tuple[float, int, int]]:
    """(media time, width, height) of every decoded picture whose size differs from the last."""
    changes: list[tuple[float, int, int]] = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if not changes or changes[-1][1:] != (frame.width, frame.height):
                changes.append((float(frame.time), frame.width, frame.height))
    return changes


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_resolution_changes_are_listed_in_the_manifest(tmp_path: Path, codec: str) -> None:
    server = MediaServer(MediaConfig(ice_addresses=("127.0.0.1",)))
    room = server.room(f"bed-resize-{codec.lower()}")
    recorder = SessionRecorder(room, tmp_path)
    recorder.start()
    participant = room.join("Ward Nurse Li", "ward", Member())
    pc = RTCPeerConnection()
    track = ResizingPatternTrack()
    pc.addTrack(track)
    prefer_codec(pc, "video", codec)
    await pc.setLocalDescription(await pc.createOffer())
    _, answer = await room.publish(participant, pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    await wait_for(lambda: track.index > FRAMES_PER_SIZE * len(SIZES) + 15, 30)
    manifest = await recorder.stop()
    await pc.close()
    await server.close()

    video = next(t for t in manifest.tracks if t.kind == "video")
    listed = video.resolutions
    print(f"{codec} manifest resolutions: {listed}")
    assert listed is not None
    assert [(r["width"], r["height"]) for r in listed] == list(SIZES)
    assert listed[0]["atMs"] == 0
    assert all(b["atMs"] > a["atMs"] for a, b in itertools.pairwise(listed))
    # The file decodes to the same sizes at the same media times (one frame is 33 ms).
    decoded = await asyncio.to_thread(decoded_sizes, recorder.path / video.file)
    print(f"{codec} decoded size changes: {decoded}")
    assert [(w, h) for _, w, h in decoded] == list(SIZES)
    for entry, (time, _, _) in zip(listed, decoded, strict=True):
        assert abs(entry["atMs"] - time * 1000) <= 1
    assert (video.width, video.height) == SIZES[-1]
    # The manifest on disk carries the list too.
    on_disk = load_manifest(recorder.path)
    assert next(t for t in on_disk.tracks if t.kind == "video").resolutions == listed
