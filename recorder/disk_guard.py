"""The free-space policy of the recordings directory (pure: samples and ``now`` passed in).

Three states, from the free bytes of the file system that holds the recordings:

- ``ok``: at or above the warn threshold;
- ``low``: below it (recording goes on; one warning, health shows it);
- ``full``: below the stop threshold, or a write failed with ENOSPC/EDQUOT: recording
  stops while a reserve remains, so every manifest can still be written.

``full`` lasts until the free space reaches the resume threshold (above the stop one:
the hysteresis that keeps a recording from starting and stopping around one value), and,
after a refused write, at least ``failure_hold`` seconds: a quota (EDQUOT) is not seen in
the file system's free space, so samples alone would resume into the same failure.
A threshold is the larger of its bytes and its percentage of the file system's size.
While the state is not ``ok``, the guard asks for a log line on each change and then at
most once per ``log_interval`` seconds.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Literal

DiskState = Literal["ok", "low", "full"]
OUT_OF_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
MIB = 1024 * 1024


def is_out_of_space(exc: BaseException) -> bool:
    """True for a write refused because the disk (or the quota) is full."""
    return isinstance(exc, OSError) and exc.errno in OUT_OF_SPACE_ERRNOS


@dataclass(frozen=True)
class DiskSample:
    free: int
    """Bytes an unprivileged writer may still use (``f_bavail * f_frsize``)."""
    total: int


@dataclass(frozen=True)
class DiskPolicy:
    warn_bytes: int = 2048 * MIB
    warn_percent: float = 5.0
    stop_bytes: int = 256 * MIB
    stop_percent: float = 1.0
    resume_bytes: int = 512 * MIB
    """Free space needed to record again after a stop (at least the stop threshold)."""
    log_interval: float = 60.0
    failure_hold: float = 60.0
    """Seconds ``full`` lasts at least after a write refused for lack of space."""

    def __post_init__(self) -> None:
        for name in ("warn_bytes", "stop_bytes", "resume_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"disk guard {name} must be >= 0")
        for name in ("warn_percent", "stop_percent"):
            if not 0 <= getattr(self, name) < 100:
                raise ValueError(f"disk guard {name} must be in [0, 100)")
        if self.log_interval <= 0:
            raise ValueError("disk guard log_interval must be > 0")
        if self.failure_hold < 0:
            raise ValueError("disk guard failure_hold must be >= 0")

    def warn_at(self, total: int) -> int:
        return max(self.warn_bytes, round(total * self.warn_percent / 100))

    def stop_at(self, total: int) -> int:
        return max(self.stop_bytes, round(total * self.stop_percent / 100))

    def resume_at(self, total: int) -> int:
        return max(self.resume_bytes, self.stop_at(total))


@dataclass(frozen=True)
class DiskVerdict:
    state: DiskState
    changed: bool
    """The state differs from the previous verdict's."""
    log: bool
    """Write a log line now (a change, or the state lasted another ``log_interval``)."""
    free: int


class DiskGuard:
    """The state machine: feed it samples (and write failures), it says the state."""

    def __init__(self, policy: DiskPolicy) -> None:
        self.policy = policy
        self.state: DiskState = "ok"
        self.free: int | None = None
        self.total: int | None = None
        self._last_log = float("-inf")
        self._failed_at = float("-inf")

    def observe(self, sample: DiskSample, now: float) -> DiskVerdict:
        self.free, self.total = sample.free, sample.total
        held = now - self._failed_at < self.policy.failure_hold
        return self._become("full" if held else self._next_state(sample), now)

    def write_failed(self, now: float) -> DiskVerdict:
        """A write failed for lack of space: ``full`` (and nothing free) whatever the last
        sample said, until a sample says otherwise."""
        self.free = 0
        self._failed_at = now
        return self._become("full", now)

    def _next_state(self, sample: DiskSample) -> DiskState:
        policy = self.policy
        if sample.free < policy.stop_at(sample.total):
            return "full"
        if self.state == "full" and sample.free < policy.resume_at(sample.total):
            return "full"
        return "low" if sample.free < policy.warn_at(sample.total) else "ok"

    def _become(self, state: DiskState, now: float) -> DiskVerdict:
        changed = state != self.state
        self.state = state
        log = changed or (state != "ok" and now - self._last_log >= self.policy.log_interval)
        if log:
            self._last_log = now
        return DiskVerdict(state, changed, log, self.free if self.free is not None else 0)
