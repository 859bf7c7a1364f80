"""Shared by the VOD tests: a fixture recording with known pictures, sound and vitals.

The recording (8 s, 320x240 VP8 at 30 fps, Opus) has two parties: the bedside camera
("ward") shows the test pattern from frame 0 at the recording's origin, the expert's
camera shows pattern frames 5000+ from 1.5 s on, and only the expert's microphone
(a 440 Hz tone) is recorded. Vitals arrive every second from 0.5 s on.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
from aiohttp import web

from huizhen.testpattern import pattern_frame, read_frame_number
from recorder.http import CredentialsRejected
from recorder.vod_sample import SampleParty, expected_vitals, write_sample_recording

DURATION = 8.0
FPS = 30
EXPERT_START = 1.5
EXPERT_OFFSET = 5000
TONE_HZ = 440.0
ROOM = "bed-12"
PARTIES = [
    SampleParty("p-ward", "ward", video_offset=0, start_s=0.0),
    SampleParty("p-expert", "expert", video_offset=EXPERT_OFFSET, start_s=EXPERT_START,
                tone_hz=TONE_HZ),
]
TOKENS = {"token-bed-12": ROOM, "token-bed-7": "bed-7"}


def make_recording(root: Path, recording_id: str = "rec-20260101-bed-12", *,
                   room: str = ROOM, duration: float = DURATION,
                   origin_ms: int = 1_767_225_600_000, status: str = "complete",
                   pleth_chunks: int = 1) -> Path:
    return write_sample_recording(root, recording_id, PARTIES, duration=duration, fps=FPS,
                                  picture=pattern_frame, room=room, origin_ms=origin_ms,
                                  status=status, pleth_chunks=pleth_chunks)


def bedside_index(t: float) -> int:
    """The bedside pattern frame on screen at video time ``t``."""
    return math.floor(t * FPS + 1e-6)


def expert_index(t: float) -> int:
    return EXPERT_OFFSET + math.floor((t - EXPERT_START) * FPS + 1e-6)


def hr_at(t: float) -> float:
    return expected_vitals(t)["hr"]


def read_code(picture: np.ndarray, rect: dict[str, int]) -> int:
    """The frame number code of the pattern shown (scaled) in ``rect`` of ``picture``."""
    crop = picture[rect["y"]:rect["y"] + rect["h"], rect["x"]:rect["x"] + rect["w"]]
    return read_frame_number(cv2.resize(crop, (320, 240), interpolation=cv2.INTER_AREA))


def bearer_authorize(request: web.Request, room: str) -> bool:
    """The tests' stand-in for the app's JWT check: a fixed token per room."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return False
    if header[7:] not in TOKENS:
        raise CredentialsRejected  # as the app's check does for an expired or forged JWT
    return TOKENS[header[7:]] == room


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
