"""Sign-in throttling, pure (``now`` is always passed in).

Two guards: a per-username lockout (5 failures lock the name for 15 minutes; kept in the
users table for real accounts, and in a bounded in-memory table for names that do not
exist, so that unknown names lock exactly like real ones and the answer never tells whether
a name exists) and a per-client-address token bucket that only failed attempts drain, so a
hospital whose staff share one outgoing address is not locked out by its own successful
sign-ins at a shift change.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

LOCK_AFTER = 5
LOCK_FOR = timedelta(minutes=15)
ADDRESS_BURST = 20
ADDRESS_WINDOW = timedelta(minutes=5)
MAX_TRACKED = 10_000


@dataclass(frozen=True)
class Failures:
    """How often a name failed since its last success, and until when it is locked."""

    count: int = 0
    locked_until: datetime | None = None


def retry_after(failures: Failures, now: datetime) -> int:
    """Seconds until the name may try again (0: not locked)."""
    if failures.locked_until is None or failures.locked_until <= now:
        return 0
    return max(1, math.ceil((failures.locked_until - now).total_seconds()))


def after_failure(failures: Failures, now: datetime) -> Failures:
    """The state after one more failure; a lock that has run out starts a fresh count."""
    count = failures.count
    if failures.locked_until is not None and failures.locked_until <= now:
        count = 0
    count += 1
    if count >= LOCK_AFTER:
        return Failures(count, now + LOCK_FOR)
    return Failures(count, None)


class UnknownNames:
    """Failure counts of names that are not accounts, at most ``limit`` (oldest dropped)."""

    def __init__(self, limit: int = MAX_TRACKED) -> None:
        self._limit = limit
        self._names: OrderedDict[str, Failures] = OrderedDict()

    def get(self, name: str) -> Failures:
        return self._names.get(name, Failures())

    def fail(self, name: str, now: datetime) -> Failures:
        state = after_failure(self.get(name), now)
        self._names[name] = state
        self._names.move_to_end(name)
        while len(self._names) > self._limit:
            self._names.popitem(last=False)
        return state


class AddressLimiter:
    """A token bucket per client address: ``burst`` failed attempts, refilled evenly over
    ``window``. Full buckets are forgotten (bounded memory)."""

    def __init__(self, burst: int = ADDRESS_BURST, window: timedelta = ADDRESS_WINDOW,
                 limit: int = MAX_TRACKED) -> None:
        self._burst = float(burst)
        self._rate = burst / window.total_seconds()
        self._limit = limit
        self._buckets: OrderedDict[str, tuple[float, datetime]] = OrderedDict()

    def _level(self, address: str, now: datetime) -> float:
        tokens, at = self._buckets.get(address, (self._burst, now))
        elapsed = max(0.0, (now - at).total_seconds())
        return min(self._burst, tokens + elapsed * self._rate)

    def retry_after(self, address: str, now: datetime) -> int:
        """Seconds until this address may try again (0: it may try now)."""
        level = self._level(address, now)
        if level >= 1:
            return 0
        return max(1, math.ceil(round((1 - level) / self._rate, 6)))  # no float residue

    def fail(self, address: str, now: datetime) -> None:
        level = self._level(address, now) - 1
        self._buckets[address] = (max(level, 0.0), now)
        self._buckets.move_to_end(address)
        while len(self._buckets) > self._limit:
            self._buckets.popitem(last=False)
