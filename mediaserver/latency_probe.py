"""Per-copy forwarding latency, for the benchmark (off in production)."""

from __future__ import annotations

import time
from array import array
from dataclasses import dataclass


@dataclass(frozen=True)
class LatencySummary:
    copies: int
    p50_ms: float
    p99_ms: float
    max_ms: float


class LatencyProbe:
    """Collects, for every forwarded copy, the time from the source datagram's arrival
    (kernel receive timestamp) to the return of that copy's ``sendto``."""

    def __init__(self) -> None:
        # One int64 per copy, in nanoseconds. Cleared in place by ``reset`` so that a
        # caller may keep ``samples.append`` bound (the probe then costs no Python call).
        self.samples = array("q")
        self.arrival_ns = 0

    def copy_sent(self) -> None:
        self.samples.append(time.time_ns() - self.arrival_ns)

    def reset(self) -> None:
        del self.samples[:]

    def summary(self) -> LatencySummary:
        samples = sorted(self.samples)
        if not samples:
            return LatencySummary(0, 0.0, 0.0, 0.0)

        def pick(q: float) -> float:
            return samples[min(len(samples) - 1, int(q * len(samples)))] / 1e6

        return LatencySummary(len(samples), pick(0.50), pick(0.99), samples[-1] / 1e6)
