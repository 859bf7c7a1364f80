"""What the pages report of their own reception (`client-stats`): parsed, checked, kept.

Every 10 s a page sends, per subscription, the numbers of its browser's ``getStats()``
(inbound video, and the selected candidate pair's round trip). They are the viewer's
truth (frozen pictures, lost packets) that the server cannot see itself. Sans-I/O: the
parser raises ``ValueError`` with a message that names the field, never its value; the
book keeps the latest report per participant and stream, bounded, for ``/metrics``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# At most as many reports as a participant may hold subscriptions (PROTOCOL.md, "Limits").
MAX_STREAMS = 32
MAX_STREAM_ID = 64
MAX_COUNT = 2**53 - 1  # what a JavaScript number holds exactly
MAX_SECONDS = 1e9


@dataclass(frozen=True, slots=True)
class StreamReport:
    """One subscription's reception, as its page measured it (seconds, not ms)."""

    stream: str
    frames_decoded: int
    freeze_count: int
    freeze_seconds: float  # totalFreezesDuration
    packets_lost: int  # cumulative; RTCP may make it negative (duplicates)
    jitter: float | None = None  # seconds
    round_trip: float | None = None  # the candidate pair's currentRoundTripTime, seconds

    @classmethod
    def parse(cls, entry: object) -> StreamReport:
        if not isinstance(entry, Mapping):
            raise ValueError("each entry of 'streams' must be an object")
        stream = entry.get("stream")
        if not isinstance(stream, str) or not stream or len(stream) > MAX_STREAM_ID:
            raise ValueError(f"'stream' must be a string of 1-{MAX_STREAM_ID} characters")
        return cls(stream,
                   _integer(entry, "framesDecoded", 0),
                   _integer(entry, "freezeCount", 0),
                   _seconds(entry, "totalFreezesDuration", required=True) or 0.0,
                   _integer(entry, "packetsLost", -MAX_COUNT),
                   _seconds(entry, "jitter"),
                   _seconds(entry, "currentRoundTripTime"))


def _integer(entry: Mapping[str, Any], key: str, lowest: int) -> int:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= MAX_COUNT:
        raise ValueError(f"'{key}' must be an integer from {lowest} to 2^53-1")
    return value


def _seconds(entry: Mapping[str, Any], key: str, required: bool = False) -> float | None:
    value = entry.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or not 0 <= value <= MAX_SECONDS:
        raise ValueError(f"'{key}' must be a number of seconds from 0 to 1e9")
    return float(value)


def parse_reports(value: object) -> tuple[StreamReport, ...]:
    """The `streams` of a `client-stats` message: 1 to MAX_STREAMS reports, one per stream."""
    if not isinstance(value, list) or not value:
        raise ValueError("'streams' must be a non-empty list")
    if len(value) > MAX_STREAMS:
        raise ValueError(f"'streams' holds more than {MAX_STREAMS} entries")
    reports = tuple(StreamReport.parse(entry) for entry in value)
    if len({r.stream for r in reports}) != len(reports):
        raise ValueError("'streams' names a stream twice")
    return reports


@dataclass(frozen=True, slots=True)
class ClientStreamStats:
    """A report with whose it is: a room's participant (opaque ids only)."""

    room: str
    participant: str
    report: StreamReport


class ClientStatsBook:
    """The latest report per participant and stream.

    Bounded: a participant's reports are kept only for streams it still receives
    (``live``, at most MAX_STREAMS), and all of them are forgotten when it leaves.
    """

    def __init__(self) -> None:
        self._reports: dict[tuple[str, str], dict[str, StreamReport]] = {}

    def update(self, room: str, participant: str, reports: Iterable[StreamReport],
               live: set[str]) -> None:
        key = (room, participant)
        kept = {stream: report for stream, report in self._reports.get(key, {}).items()
                if stream in live}
        for report in reports:
            if report.stream in live:
                kept[report.stream] = report
        while len(kept) > MAX_STREAMS:
            kept.pop(next(iter(kept)))
        self._reports[key] = kept

    def forget(self, room: str, participant: str) -> None:
        self._reports.pop((room, participant), None)

    def snapshot(self) -> tuple[ClientStreamStats, ...]:
        return tuple(ClientStreamStats(room, participant, report)
                     for (room, participant), reports in list(self._reports.items())
                     for report in reports.values())
