"""One track's media clock: extended RTP timestamps and their wall-clock time (sans-I/O).

Every time in a recording is wall-clock Unix time on the SERVER's clock. RTP
timestamps are mapped to it in two ways:

- arrival: ``min(arrival - rtp / rate)`` over the packets seen, i.e. the timing of
  the least-delayed packet (capture + encode + transit of the quickest one);
- sender report: the publisher's RTCP SR pairs an NTP time with an RTP timestamp.
  It is used only when it agrees with the arrival estimate (a publisher's clock
  cannot be ahead of our arrivals, nor far behind them); otherwise a wrongly set
  publisher clock would shift the media against the vitals.

The least delay of the last second's packets (``recent_delay``) tells a publisher that
lost media (its later timestamps arrive that much later) from a late-stamped report.
"""

from __future__ import annotations

from collections import deque

NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01
REPORT_MAX_AHEAD = 0.2  # seconds a sender report may claim later than our arrival estimate
REPORT_MAX_BEHIND = 1.0  # seconds it may claim earlier (encode + network delay)
RECENT = 1.0  # seconds of arrivals whose least delay is ``recent_delay``


def ntp_to_unix(ntp: int) -> float:
    """A 64-bit NTP timestamp (32.32 fixed point since 1900) as Unix seconds."""
    return (ntp >> 32) - NTP_EPOCH_OFFSET + (ntp & 0xFFFFFFFF) / 2**32


class MediaClock:
    def __init__(self, clock_rate: int) -> None:
        if clock_rate <= 0:
            raise ValueError("clock rate must be positive")
        self.clock_rate = clock_rate
        self._last: int | None = None
        self._arrival_offset: float | None = None
        self._report_offset: float | None = None
        # (arrival, offset) of the last RECENT seconds, offsets increasing: the first is
        # the least-delayed packet of that second.
        self._recent: deque[tuple[float, float]] = deque()

    def relative(self, timestamp: int) -> int:
        """The extended (unwrapped) value of a 32-bit timestamp near the last one seen."""
        if self._last is None:
            return timestamp
        delta = (timestamp - self._last) & 0xFFFFFFFF
        if delta >= 1 << 31:
            delta -= 1 << 32
        return self._last + delta

    def extend(self, timestamp: int) -> int:
        """Unwrap a packet's timestamp and remember it as the latest."""
        extended = self.relative(timestamp)
        self._last = extended
        return extended

    def observe_arrival(self, timestamp: int, arrival: float) -> int:
        extended = self.extend(timestamp)
        offset = arrival - extended / self.clock_rate
        if self._arrival_offset is None or offset < self._arrival_offset:
            self._arrival_offset = offset
        recent = self._recent
        while recent and recent[-1][1] >= offset:
            recent.pop()
        recent.append((arrival, offset))
        while recent[0][0] < arrival - RECENT:
            recent.popleft()
        return extended

    def recent_delay(self) -> float:
        """How much later than the arrival estimate the last second's least-delayed
        packet arrived (seconds; 0 when nothing is known)."""
        if not self._recent or self._arrival_offset is None:
            return 0.0
        return max(0.0, self._recent[0][1] - self._arrival_offset)

    def skip(self, seconds: float) -> None:
        """The publisher lost this much media (its timestamps count only what it sent): its
        later timestamps arrive that much later, which the sender reports say too."""
        if self._arrival_offset is not None:
            self._arrival_offset += seconds

    def observe_sender_report(self, ntp: int, rtp_timestamp: int) -> None:
        if self._last is None:
            return
        extended = self.relative(rtp_timestamp)
        self._report_offset = ntp_to_unix(ntp) - extended / self.clock_rate

    def arrival_wall(self, extended: int) -> float | None:
        if self._arrival_offset is None:
            return None
        return self._arrival_offset + extended / self.clock_rate

    def report_wall(self, extended: int) -> float | None:
        """Wall time by the sender report, when there is one that agrees with arrivals."""
        if self._report_offset is None or self._arrival_offset is None:
            return None
        difference = self._report_offset - self._arrival_offset
        if not -REPORT_MAX_BEHIND <= difference <= REPORT_MAX_AHEAD:
            return None
        return self._report_offset + extended / self.clock_rate

    @property
    def report_disagrees(self) -> bool:
        """A sender report exists but was rejected as inconsistent with arrivals."""
        if self._report_offset is None or self._arrival_offset is None:
            return False
        difference = self._report_offset - self._arrival_offset
        return not -REPORT_MAX_BEHIND <= difference <= REPORT_MAX_AHEAD
