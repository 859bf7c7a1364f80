"""Throttle keyframe requests sent upstream to one publisher (sans-I/O, ``now`` passed in).

Every new subscriber, and every subscriber's PLI/FIR, asks for a keyframe; a
publisher flooded with requests spends its bitrate on keyframes. Requests are
rate-limited to one per ``interval``. A request that falls inside the window is
DEFERRED to the window's end rather than dropped: dropping it leaves a late
joiner staring at a frozen picture until the publisher's next natural keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ThrottleDecision:
    """What the I/O shell must do: send a request now, and/or arm a timer."""

    send_now: bool
    timer_at: float | None


class KeyframeRequestThrottle:
    def __init__(self, interval: float) -> None:
        if interval <= 0:
            raise ValueError("keyframe request interval must be positive")
        self.interval = interval
        self._last_sent: float | None = None
        self._deferred = False

    @property
    def deferred(self) -> bool:
        return self._deferred

    def request(self, now: float) -> ThrottleDecision:
        """A keyframe is wanted at ``now``."""
        if self._last_sent is None or now - self._last_sent >= self.interval:
            self._last_sent = now
            self._deferred = False
            return ThrottleDecision(send_now=True, timer_at=None)
        if self._deferred:
            return ThrottleDecision(send_now=False, timer_at=None)
        self._deferred = True
        return ThrottleDecision(send_now=False, timer_at=self._last_sent + self.interval)

    def timer_fired(self, now: float) -> bool:
        """The deferral timer fired: True when the deferred request must go out now."""
        if not self._deferred:
            return False
        self._deferred = False
        self._last_sent = now
        return True
