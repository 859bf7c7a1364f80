"""How far a teaching-video render has come: a small document, ``vod/progress.json``.

The render (out of the server's process) writes it a few times a second; the HTTP
service reads it to answer ``progress`` (0..1) and ``eta`` (seconds) while the state is
"rendering". Pure: the clock is passed in, the file I/O is two small helpers.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROGRESS_JSON = "progress.json"
WRITE_INTERVAL = 0.25
"""Seconds between two progress writes (four a second)."""


@dataclass(frozen=True)
class RenderProgress:
    frames: int
    """Pictures composed and handed to the encoder so far."""
    total: int
    elapsed: float
    """Seconds since the render started."""
    fps: int

    @property
    def fraction(self) -> float:
        return min(1.0, self.frames / self.total) if self.total > 0 else 0.0

    @property
    def speed(self) -> float:
        """Seconds of video per second of rendering (0 before the first frame)."""
        return self.frames / self.fps / self.elapsed if self.elapsed > 0 and self.fps else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the speed so far; None before the speed is known."""
        if self.frames <= 0 or self.elapsed <= 0:
            return None
        return max(0.0, (self.total - self.frames) * self.elapsed / self.frames)

    def to_json(self) -> dict[str, Any]:
        eta = self.eta
        return {"frames": self.frames, "total": self.total, "elapsed": round(self.elapsed, 3),
                "fps": self.fps, "progress": round(self.fraction, 4),
                "speed": round(self.speed, 3), "eta": None if eta is None else round(eta, 1)}

    @classmethod
    def from_json(cls, document: object) -> RenderProgress | None:
        """The progress of a document, or None when it is not one (half-written, foreign)."""
        if not isinstance(document, dict):
            return None
        try:
            frames, total = int(document["frames"]), int(document["total"])
            elapsed, fps = float(document["elapsed"]), int(document["fps"])
        except (KeyError, TypeError, ValueError):
            return None
        if frames < 0 or total <= 0 or fps <= 0 or not math.isfinite(elapsed) or elapsed < 0:
            return None
        return cls(min(frames, total), total, elapsed, fps)


class ProgressThrottle:
    """Says when a progress report is due: the first frame, then every ``interval`` s."""

    def __init__(self, interval: float = WRITE_INTERVAL) -> None:
        self.interval = interval
        self._last: float | None = None

    def due(self, now: float) -> bool:
        if self._last is not None and now - self._last < self.interval:
            return False
        self._last = now
        return True


def write_progress(path: Path, progress: RenderProgress) -> None:
    """Atomically (a reader sees the old document or the new one, never half)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(progress.to_json(), separators=(",", ":")), encoding="utf-8")
    tmp.replace(path)


def read_progress(path: Path) -> RenderProgress | None:
    try:
        return RenderProgress.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None
