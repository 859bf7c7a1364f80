"""Synthetic bedside media: a moving test pattern with a burned-in clock, and a tone.

Used by the demo's simulated bedside camera, the tests and the benchmark. Each
video frame carries its own frame number as a row of large black/white blocks,
so a subscriber can decode a received picture, read which frame it is, redraw
that frame locally and compare pixels.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time

import av
import cv2
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

VIDEO_CLOCK_RATE = 90000
AUDIO_RATE = 48000
AUDIO_PTIME = 0.020
CODE_BITS = 16
CODE_ROWS = 48  # height of the frame-number band, in pixels


def pattern_frame(index: int, width: int, height: int, clock_text: str | None = None
                  ) -> np.ndarray:
    """BGR picture number ``index``: colour bars, a moving square, the frame number code."""
    img = np.zeros((height, width, 3), dtype=np.uint8)
    bars = [(255, 255, 255), (0, 255, 255), (255, 255, 0), (0, 255, 0),
            (255, 0, 255), (0, 0, 255), (255, 0, 0), (40, 40, 40)]
    bar_width = width // len(bars)
    for i, colour in enumerate(bars):
        img[CODE_ROWS:, i * bar_width:(i + 1) * bar_width] = colour
    size = max(16, height // 6)
    x = int((width - size) * (0.5 + 0.5 * math.sin(index / 15.0)))
    y = CODE_ROWS + int((height - CODE_ROWS - size) * (0.5 + 0.5 * math.cos(index / 23.0)))
    img[y:y + size, x:x + size] = (20, 20, 20)
    block = width // CODE_BITS
    for bit in range(CODE_BITS):
        value = 255 if (index >> (CODE_BITS - 1 - bit)) & 1 else 0
        img[:CODE_ROWS, bit * block:(bit + 1) * block] = value
    if clock_text:
        cv2.putText(img, clock_text, (12, height - 16), cv2.FONT_HERSHEY_SIMPLEX,
                    max(0.6, height / 480), (0, 0, 0), 4, cv2.LINE_AA)
        cv2.putText(img, clock_text, (12, height - 16), cv2.FONT_HERSHEY_SIMPLEX,
                    max(0.6, height / 480), (255, 255, 255), 2, cv2.LINE_AA)
    return img


def read_frame_number(bgr: np.ndarray) -> int:
    """Read the frame number code back from a (decoded, possibly lossy) picture."""
    width = bgr.shape[1]
    block = width // CODE_BITS
    gray = bgr[4:CODE_ROWS - 4].mean(axis=2)
    value = 0
    for bit in range(CODE_BITS):
        cell = gray[:, bit * block + 4:(bit + 1) * block - 4]
        value = (value << 1) | int(cell.mean() > 127)
    return value


def pattern_difference(bgr: np.ndarray, index: int) -> float:
    """Mean absolute pixel difference between a decoded picture and pattern ``index``."""
    expected = pattern_frame(index, bgr.shape[1], bgr.shape[0])
    return float(np.abs(bgr.astype(np.int16) - expected.astype(np.int16)).mean())


class PatternVideoTrack(MediaStreamTrack):
    """A paced video track of the test pattern (optionally with a wall-clock overlay)."""

    kind = "video"

    def __init__(self, width: int = 640, height: int = 480, fps: int = 30,
                 clock: bool = False) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self.clock = clock
        self.index = 0
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        target = self._start + self.index / self.fps
        delay = target - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        text = None
        if self.clock:
            now = time.time()
            text = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
        img = pattern_frame(self.index, self.width, self.height, text)
        frame = av.VideoFrame.from_ndarray(img, format="bgr24")
        frame.pts = int(self.index * VIDEO_CLOCK_RATE / self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK_RATE)
        self.index += 1
        return frame


class ToneAudioTrack(MediaStreamTrack):
    """A paced mono sine tone at ``frequency`` Hz, 20 ms per frame."""

    kind = "audio"

    def __init__(self, frequency: float = 440.0, amplitude: float = 0.3) -> None:
        super().__init__()
        self.frequency = frequency
        self.amplitude = amplitude
        self._samples = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self._samples / AUDIO_RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        count = int(AUDIO_RATE * AUDIO_PTIME)
        t = (np.arange(count) + self._samples) / AUDIO_RATE
        wave = (np.sin(2 * np.pi * self.frequency * t) * self.amplitude * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(wave.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._samples
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._samples += count
        return frame


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    """The strongest frequency in a block of mono samples."""
    samples = samples.astype(np.float64)
    samples -= samples.mean()
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])
