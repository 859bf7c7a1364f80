"""Whether this node takes one more viewer: by how busy its event loop has been.

A node forwards on one event loop, one core. When that loop is full it falls seconds
behind, and everyone in its rooms suffers: measured with the forwarding benchmark's
light viewers of one 1.5 Mbit/s stream on a 2-core machine, 250 viewers held 30 fps at
65 % of a core, and 500 lost the publisher's connection and froze every viewer. A node
that refuses the next viewer while its loop has been busier than ``limit`` of a core
keeps those already watching (with several nodes the refused one joins at another node).

Pure: the caller samples the loop thread's CPU clock (``time.thread_time()`` read on the
loop's thread: not the recorder's or the encoders' threads) with ``now``.
"""

from __future__ import annotations

from collections import deque

WINDOW = 3.0
"""Seconds of samples the busy share is taken over."""
RESUME_MARGIN = 0.1
"""Once refusing, viewers are taken again only below ``limit`` minus this share: viewers
admitted in a dip add their load only once connected, and waiting pages come back
together, so admitting again at the limit itself would ratchet the load past it
(measured: 332 viewers held at the limit when the refused did not come back; with them
retrying and no margin, the room was lost)."""


class LoadAdmission:
    """The loop's CPU share over the last ``window`` seconds against ``limit`` (0: off)."""

    def __init__(self, limit: float, window: float = WINDOW,
                 margin: float = RESUME_MARGIN) -> None:
        if limit < 0:
            raise ValueError("limit must be >= 0")
        self.limit = limit
        self.window = window
        self.resume = max(0.0, limit - margin)
        self.refusing = False
        self._samples: deque[tuple[float, float]] = deque()  # (now, cpu seconds)

    def observe(self, cpu_seconds: float, now: float) -> None:
        samples = self._samples
        if samples and now <= samples[-1][0]:
            return  # the same instant twice (or a clock that went back): nothing new
        samples.append((now, cpu_seconds))
        # Keep one sample at or before the window's start, so the share spans all of it.
        while len(samples) > 2 and samples[1][0] <= now - self.window:
            samples.popleft()

    @property
    def share(self) -> float:
        """CPU seconds per wall-clock second over the window (0 before two samples)."""
        if len(self._samples) < 2:
            return 0.0
        (t0, c0), (t1, c1) = self._samples[0], self._samples[-1]
        return max(0.0, c1 - c0) / (t1 - t0)

    def admits(self) -> bool:
        """Refuse from ``limit`` on, and go on refusing until the share is below
        ``resume`` (hysteresis)."""
        if self.limit <= 0:
            return True
        share = self.share
        if share >= self.limit:
            self.refusing = True
        elif share < self.resume:
            self.refusing = False
        return not self.refusing
