"""When to ask a publisher again for the packets the server is missing (sans-I/O).

aiortc's receiver sends one NACK when a gap appears and never again: a lost NACK,
or a lost retransmission, leaves a hole that every viewer then asks the server
for in vain, until somebody's decoder gives up and asks for a keyframe.

``NackScheduler`` tracks each missing sequence number (16-bit, wrapping) of one
stream. The first NACK waits a short reorder window (a packet merely overtaken
arrives on its own); then the packet is asked for again every
``max(RTT * rtt_factor, min_interval)`` until it arrives, it has been asked for
``max_nacks`` times, or it is older than ``max_age`` (too late to be shown). A
jump of more than ``max_gap`` packets, or more than ``max_missing`` holes at
once, is not worth retrying packet by packet: the scheduler gives those up and
says a keyframe is the better request. The round-trip time is measured from a
NACK to the retransmission that answers it, and smoothed.

The I/O shell (``aiortc_hooks.ReceiverTap``) calls ``received`` for each packet
and ``poll`` when ``next_wakeup`` says something is due; ``now`` is always passed
in (seconds, any monotonic clock).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

SEQ_MOD = 0x10000
SEQ_HALF = 0x8000
RTT_GAIN = 1 / 8  # RFC 6298's alpha


@dataclass(frozen=True, slots=True)
class NackSettings:
    """How eagerly to ask again. Times in seconds."""

    reorder_window: float = 0.010  # wait before the first NACK of a new hole
    min_interval: float = 0.020  # never ask for one packet more often than this
    rtt_factor: float = 1.1  # retry after this many round trips
    initial_rtt: float = 0.100  # until the first retransmission is timed
    max_nacks: int = 10  # NACKs per packet before giving up
    max_age: float = 1.0  # a hole older than this is given up
    max_missing: int = 512  # holes tracked at once (bounded memory)
    max_gap: int = 256  # a jump over more packets than this asks for a keyframe

    def __post_init__(self) -> None:
        for name in ("min_interval", "rtt_factor", "initial_rtt", "max_age"):
            if getattr(self, name) <= 0:
                raise ValueError(f"NackSettings.{name} must be positive")
        if self.reorder_window < 0:
            raise ValueError("NackSettings.reorder_window must not be negative")
        for name in ("max_nacks", "max_missing", "max_gap"):
            if getattr(self, name) < 1:
                raise ValueError(f"NackSettings.{name} must be at least 1")


@dataclass(slots=True)
class RecoveryCounters:
    """Upstream loss recovery of one producer, for the stats snapshot."""

    nacks_sent: int = 0  # sequence numbers asked for (each retry counts once more)
    retransmissions_received: int = 0  # RTX packets from the publisher
    retransmissions_unused: int = 0  # of those, duplicates not forwarded
    packets_recovered: int = 0  # holes filled (by a retransmission or a late original)
    packets_given_up: int = 0  # holes abandoned: too old, too many NACKs, gap too large
    keyframes_instead: int = 0  # times a keyframe was asked for in place of NACKs
    rtt_ms: float | None = None  # smoothed NACK-to-retransmission time


class Arrival(enum.Enum):
    """What one received packet meant to the scheduler."""

    NEW = "new"  # the newest so far (it may have opened holes)
    RECOVERED = "recovered"  # it filled a hole
    DUPLICATE = "duplicate"  # seen before, or older than anything tracked
    RESET = "reset"  # a jump too large to retry: ask for a keyframe now


@dataclass(frozen=True, slots=True)
class NackRound:
    """What ``poll`` decided: the sequence numbers to NACK now, and whether a keyframe
    is needed because a hole was given up (nobody downstream can decode past it)."""

    sequence_numbers: tuple[int, ...] = ()
    keyframe_needed: bool = False


class _Hole:
    __slots__ = ("due", "first_nack", "first_seen", "nacks")

    def __init__(self, first_seen: float, due: float) -> None:
        self.first_seen = first_seen
        self.due = due
        self.first_nack = 0.0
        self.nacks = 0


class NackScheduler:
    """Missing packets of one RTP stream and when to NACK each again."""

    def __init__(self, settings: NackSettings | None = None,
                 counters: RecoveryCounters | None = None) -> None:
        self.settings = settings or NackSettings()
        self.counters = counters if counters is not None else RecoveryCounters()
        self._srtt: float | None = None
        self._highest: int | None = None  # extended (unwrapped) sequence number
        self._holes: dict[int, _Hole] = {}  # extended seq -> hole, in ascending order
        self._keyframe_pending = False

    # ----------------------------------------------------------------- state

    @property
    def rtt(self) -> float:
        """The smoothed round-trip time (the initial guess until one is measured)."""
        return self._srtt if self._srtt is not None else self.settings.initial_rtt

    @property
    def retry_interval(self) -> float:
        settings = self.settings
        return max(self.rtt * settings.rtt_factor, settings.min_interval)

    @property
    def missing(self) -> list[int]:
        """The 16-bit sequence numbers still missing, oldest first."""
        return [ext % SEQ_MOD for ext in self._holes]

    def next_wakeup(self) -> float | None:
        """When ``poll`` has something to do next; None while nothing is missing."""
        if self._keyframe_pending:
            return 0.0
        if not self._holes:
            return None
        max_age = self.settings.max_age
        return min(min(h.due, h.first_seen + max_age) for h in self._holes.values())

    # ----------------------------------------------------------------- events

    def received(self, seq: int, now: float, retransmission: bool = False) -> Arrival:
        """A packet with 16-bit sequence number ``seq`` arrived (``retransmission``: over
        RTX, so its arrival times the NACK that asked for it)."""
        highest = self._highest
        if highest is None:
            self._highest = seq & 0xFFFF
            return Arrival.NEW
        delta = (seq - highest) % SEQ_MOD
        ext = highest + delta if delta < SEQ_HALF else highest - (SEQ_MOD - delta)
        if ext > highest:
            self._highest = ext
            return self._advance(highest, ext, now)
        hole = self._holes.pop(ext, None)
        if hole is None:
            return Arrival.DUPLICATE
        self.counters.packets_recovered += 1
        if retransmission and hole.nacks:
            self._sample_rtt(now - hole.first_nack, unambiguous=hole.nacks == 1)
        return Arrival.RECOVERED

    def _advance(self, highest: int, ext: int, now: float) -> Arrival:
        gap = ext - highest - 1
        if gap == 0:
            return Arrival.NEW
        settings = self.settings
        if gap > settings.max_gap:
            self._give_up(len(self._holes) + gap)
            self._holes.clear()
            self.counters.keyframes_instead += 1
            return Arrival.RESET
        due = now + settings.reorder_window
        holes = self._holes
        start = max(highest + 1, ext - settings.max_missing)
        for missing in range(start, ext):
            holes[missing] = _Hole(now, due)
        excess = len(holes) - settings.max_missing
        if excess > 0:  # the oldest holes make room: their frames are lost anyway
            for old in list(holes)[:excess]:
                del holes[old]
        dropped = max(excess, 0) + start - (highest + 1)
        if dropped:
            self._give_up(dropped)
            self._keyframe_pending = True
        return Arrival.NEW

    def poll(self, now: float) -> NackRound:
        """The sequence numbers to NACK at ``now``; holes past their limits are given up."""
        settings = self.settings
        keyframe, self._keyframe_pending = self._keyframe_pending, False
        interval = self.retry_interval
        due: list[int] = []
        expired: list[int] = []
        for ext, hole in self._holes.items():
            if hole.first_seen + settings.max_age <= now:
                expired.append(ext)
            elif hole.due <= now:
                if hole.nacks >= settings.max_nacks:
                    expired.append(ext)
                    continue
                if not hole.nacks:
                    hole.first_nack = now
                hole.nacks += 1
                hole.due = now + interval
                due.append(ext % SEQ_MOD)
        for ext in expired:
            del self._holes[ext]
        if expired:
            self._give_up(len(expired))
            keyframe = True
        if keyframe:
            self.counters.keyframes_instead += 1
        self.counters.nacks_sent += len(due)
        return NackRound(tuple(due), keyframe)

    # ----------------------------------------------------------------- helpers

    def _give_up(self, count: int) -> None:
        self.counters.packets_given_up += count

    def _sample_rtt(self, sample: float, unambiguous: bool) -> None:
        """Smooth one NACK-to-retransmission time.

        A packet NACKed more than once may answer any of its NACKs (Karn's problem);
        timed from the first one, such a sample can only overestimate, so it may raise
        the estimate (when retries came too early) but never lower it.
        """
        if sample <= 0:
            return
        srtt = self._srtt
        if srtt is None:
            self._srtt = sample
        elif unambiguous or sample > srtt:
            self._srtt = srtt + RTT_GAIN * (sample - srtt)
        self.counters.rtt_ms = round(self.rtt * 1000, 1)


def nack_batches(sequence_numbers: tuple[int, ...] | list[int],
                 max_per_packet: int = 64) -> list[list[int]]:
    """Split one round's sequence numbers (oldest first) into the lists of RTCP NACK
    packets: each list ascends without wrapping and is at most ``max_per_packet`` long.

    aiortc packs a NACK's PID/BLP pairs assuming ascending numbers: across a wrap
    (65535 then 0) it shifts by a negative count and raises.
    """
    batches: list[list[int]] = []
    current: list[int] = []
    for seq in sequence_numbers:
        if current and (seq <= current[-1] or len(current) >= max_per_packet):
            batches.append(current)
            current = []
        current.append(seq)
    if current:
        batches.append(current)
    return batches
