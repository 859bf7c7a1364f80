"""The vitals of a recording as a time series on the teaching video's clock (pure).

Numeric samples are placed at the timeline event's ``t`` (the wall-clock ms at which
the server received them and the live page showed them), on the same clock as the
tracks' ``start_ms``; their ``observedAt`` (the monitor's own clock) is not used. A
numeric vital holds its value until the next one, and counts as stale after the same
limits the live vitals panel uses (web_client/vitals.js).

A waveform chunk is placed sample by sample from its own time: one vitals event may
carry several chunks of one waveform (a monitor sends several waveform OBX in one
message), so the event's ``t`` cannot be every chunk's start. A chunk's first sample
was observed at its ``observedAt`` (monitor clock) and the others follow at
``sampleRate``. The monitor's clock is mapped onto the server's by the smallest
delay between a chunk's last sample and the event that brought it, over the events
within OFFSET_WINDOW_S (the fastest delivery is taken as no delay; a sliding window
follows a monitor clock that drifts; delays more than OUTLIER_MS off the window's
median are not trusted). The chunks of an event without a usable ``observedAt``
follow each other, the last ending at the event's ``t`` (as if delivered without
delay), and fill only time that no timed chunk covers.

Then the waveform is cleaned so that time strictly increases: chunks in order of
start, samples less than half a period after the last kept one dropped (overlaps,
re-sent messages); a chunk that starts more than GAP_PERIODS periods after the last
kept sample leaves a gap, and nothing draws a line across a gap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recorder.vod_input import parse_time

STALE_S: dict[str, float] = {"temp": 600.0, "nibp_sys": 900.0, "nibp_dia": 900.0,
                             "nibp_mean": 900.0}
"""Seconds after which a value is shown as stale; 30 s for anything not listed."""
DEFAULT_STALE_S = 30.0
WAVE_WINDOW_S = 4.0
"""Seconds of waveform shown by the overlay."""
JSON_VERSION = 1
OFFSET_WINDOW_S = 60.0
"""Half-width of the window of events whose smallest delay maps a monitor's clock."""
MAX_SAMPLE_RATE = 10_000.0
"""A waveform claiming more samples per second than this (or an infinite rate) is not
one: it is left out."""
OUTLIER_MS = 5000.0
"""A chunk whose delivery delay is further than this from the median of its window has
a time that cannot be trusted (a monitor clock being set): it is placed as if untimed,
and its delay is not used for its neighbours."""
GAP_PERIODS = 1.5
"""More than this many sample periods between two samples is a gap in the waveform."""


def sample_key(sample: Mapping[str, Any]) -> str:
    """The display key of a sample: "hr", "spo2", "pleth", ... (as web_client/vitals.js)."""
    return str(sample.get("vital") or sample.get("name") or sample.get("code") or "")


def stale_after(key: str) -> float:
    return STALE_S.get(key, DEFAULT_STALE_S)


@dataclass
class _Numeric:
    unit: str = ""
    times: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class RawChunk:
    """One waveform chunk as it arrived, before placement."""

    event_ms: float
    """Wall-clock ms of the event that brought it (server clock)."""
    observed_ms: float | None
    """Monitor-clock ms of its first sample, if the sample said."""
    values: tuple[float | None, ...]
    source: str = ""
    """The sending device, whose clock ``observed_ms`` is on."""


@dataclass(frozen=True)
class Chunk:
    """A placed, cleaned run of samples: ``start`` (s on the video's clock) of the first,
    the others every 1 / rate; ``gap_before``: no line joins it to the previous chunk."""

    start: float
    values: tuple[float | None, ...]
    gap_before: bool


@dataclass
class _Wave:
    unit: str = ""
    rate: float = 0.0
    raw: list[RawChunk] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)
    times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    values: np.ndarray = field(default_factory=lambda: np.zeros(0))


def place_chunks(raw: list[RawChunk], rate: float, origin_ms: float) -> list[Chunk]:
    """Waveform chunks placed from their own times and cleaned (pure; see the module's
    docstring): the chunks' samples are strictly increasing in time."""
    period_ms = 1000.0 / rate
    # Monitor clock -> server clock, per source: the smallest delivery delay nearby.
    offsets: dict[int, float] = {}
    by_source: dict[str, list[int]] = {}
    for i, chunk in enumerate(raw):
        if chunk.observed_ms is not None:
            by_source.setdefault(chunk.source, []).append(i)
    for indices in by_source.values():
        indices.sort(key=lambda i: raw[i].event_ms)
        events = np.array([raw[i].event_ms for i in indices])
        delays = np.array([raw[i].event_ms - (raw[i].observed_ms or 0.0)
                           - len(raw[i].values) * period_ms for i in indices])
        window = OFFSET_WINDOW_S * 1000.0
        lo_index = np.searchsorted(events, events - window, side="left")
        hi_index = np.searchsorted(events, events + window, side="right")
        for k, i in enumerate(indices):
            nearby = delays[lo_index[k]:hi_index[k]]
            typical = float(np.median(nearby))
            if abs(delays[k] - typical) > OUTLIER_MS:
                continue  # a time far off its neighbours' (a clock set): placed untimed
            offsets[i] = float(nearby[np.abs(nearby - typical) <= OUTLIER_MS].min())
    # Start of each chunk on the server clock.
    # A chunk without a (trusted) time: the untimed chunks of one event follow each other
    # and the last ends at the event, as a timed chunk delivered without delay would.
    untimed = [i for i in range(len(raw)) if i not in offsets]
    pending: dict[float, float] = {}  # event ms -> samples of its untimed chunks
    for i in untimed:
        pending[raw[i].event_ms] = pending.get(raw[i].event_ms, 0.0) + len(raw[i].values)
    timed: list[tuple[float, tuple[float | None, ...]]] = []
    guessed: list[tuple[float, tuple[float | None, ...]]] = []
    for i, chunk in enumerate(raw):
        observed = chunk.observed_ms
        if observed is not None and i in offsets:
            timed.append((observed + offsets[i], chunk.values))
        else:
            start_ms = chunk.event_ms - pending[chunk.event_ms] * period_ms
            pending[chunk.event_ms] -= len(chunk.values)
            guessed.append((start_ms, chunk.values))
    kept = _clean(timed, period_ms)
    if guessed:
        # An untimed chunk only fills time no timed chunk covers: its samples within half
        # a period of a timed chunk's span are left out.
        spans = [(s - period_ms / 2, s + (len(v) - 0.5) * period_ms) for s, v in kept]
        kept = _clean(kept + _outside(guessed, spans, period_ms), period_ms)
    out: list[Chunk] = []
    last_ms: float | None = None
    for first_ms, values in kept:
        gap = last_ms is None or first_ms - last_ms > GAP_PERIODS * period_ms
        out.append(Chunk((first_ms - origin_ms) / 1000.0, values, gap))
        last_ms = first_ms + (len(values) - 1) * period_ms
    return out


Placed = list[tuple[float, tuple[float | None, ...]]]
"""Chunks as (start ms, samples)."""


def _clean(chunks: Placed, period_ms: float) -> Placed:
    """In order of start; samples less than half a period after the last kept one left
    out (so time strictly increases); empty chunks dropped."""
    out: Placed = []
    last_ms: float | None = None
    for start_ms, values in sorted(chunks, key=lambda c: c[0]):
        skip = 0
        if last_ms is not None:
            skip = max(0, int(np.floor((last_ms + period_ms / 2 - start_ms) / period_ms)) + 1)
        kept = values[skip:]
        if not kept:
            continue
        first_ms = start_ms + skip * period_ms
        out.append((first_ms, tuple(kept)))
        last_ms = first_ms + (len(kept) - 1) * period_ms
    return out


def _outside(chunks: Placed, spans: list[tuple[float, float]], period_ms: float) -> Placed:
    """The runs of ``chunks``' samples that fall in none of ``spans`` (sorted, disjoint)."""
    lows = np.array([lo for lo, _ in spans])
    highs = np.array([hi for _, hi in spans])
    out: Placed = []
    for start_ms, values in chunks:
        times = start_ms + np.arange(len(values)) * period_ms
        k = np.searchsorted(lows, times, side="right") - 1
        inside = (k >= 0) & (times <= highs[np.maximum(k, 0)]) if len(spans) else \
            np.zeros(len(times), dtype=bool)
        run_start: int | None = None
        for j in range(len(values) + 1):
            free = j < len(values) and not inside[j]
            if free and run_start is None:
                run_start = j
            elif not free and run_start is not None:
                out.append((start_ms + run_start * period_ms, values[run_start:j]))
                run_start = None
    return out


@dataclass(frozen=True)
class VitalsState:
    """What the overlay shows at one instant."""

    values: dict[str, float]
    """Latest value per vital that is not stale."""
    stale: dict[str, float]
    """Latest value per vital that has gone stale (shown greyed)."""
    waves: dict[str, np.ndarray]
    """Per waveform, the samples of the last WAVE_WINDOW_S seconds, as (n, 2) [t, value]."""


class VitalsSeries:
    """Numeric vitals and waveforms of one recording, in seconds from the video's start."""

    def __init__(self, origin_ms: float) -> None:
        self.origin_ms = origin_ms
        self._numeric: dict[str, _Numeric] = {}
        self._waves: dict[str, _Wave] = {}
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def from_events(cls, events: Iterable[Mapping[str, Any]], origin_ms: float) -> VitalsSeries:
        series = cls(origin_ms)
        for event in events:
            if event.get("kind") == "vitals":
                device = event.get("device")
                series.add(float(event["t"]), event.get("samples"),
                           device if isinstance(device, str) else "")
        series.freeze()
        return series

    def add(self, t_ms: float, samples: object, device: str = "") -> None:
        if not isinstance(samples, list):
            return
        t = (t_ms - self.origin_ms) / 1000.0
        for sample in samples:
            if not isinstance(sample, Mapping):
                continue
            key = sample_key(sample)
            unit = sample.get("unit")
            unit = unit if isinstance(unit, str) else ""
            values = sample.get("values")
            if isinstance(values, list):
                raw_rate = sample.get("sampleRate")
                rate = float(raw_rate) if _number(raw_rate) else 0.0  # type: ignore[arg-type]
                if 0 < rate <= MAX_SAMPLE_RATE and key:
                    wave = self._waves.setdefault(key, _Wave(unit=unit, rate=rate))
                    if rate != wave.rate:
                        continue  # another rate under the same key: not one waveform
                    observed = parse_time(sample.get("observedAt"))
                    wave.raw.append(RawChunk(
                        t_ms, observed.timestamp() * 1000.0 if observed else None,
                        tuple(float(v) if _number(v) else None for v in values), device))
                continue
            value = sample.get("value")
            if key and _number(value):
                numeric = self._numeric.setdefault(key, _Numeric(unit=unit))
                numeric.times.append(t)
                numeric.values.append(float(value))  # type: ignore[arg-type]
                numeric.unit = unit or numeric.unit

    def freeze(self) -> None:
        """Sort what was added and build the lookup arrays."""
        for key, numeric in self._numeric.items():
            order = sorted(range(len(numeric.times)), key=numeric.times.__getitem__)
            numeric.times = [numeric.times[i] for i in order]
            numeric.values = [numeric.values[i] for i in order]
            self._arrays[key] = (np.asarray(numeric.times), np.asarray(numeric.values))
        for wave in self._waves.values():
            wave.chunks = place_chunks(wave.raw, wave.rate, self.origin_ms)
            times: list[np.ndarray] = []
            values: list[np.ndarray] = []
            for chunk in wave.chunks:
                if chunk.gap_before and times:
                    # A NaN between the two sides of a gap: no line is drawn across it.
                    times.append(np.array([chunk.start - 0.5 / wave.rate]))
                    values.append(np.array([np.nan]))
                times.append(chunk.start + np.arange(len(chunk.values)) / wave.rate)
                values.append(np.array([np.nan if v is None else v for v in chunk.values],
                                       dtype=float))
            wave.times = np.concatenate(times) if times else np.zeros(0)
            wave.values = np.concatenate(values) if values else np.zeros(0)

    @property
    def empty(self) -> bool:
        return not self._numeric and not self._waves

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self._numeric)

    def unit(self, key: str) -> str:
        numeric = self._numeric.get(key)
        return numeric.unit if numeric else ""

    def value_at(self, key: str, t: float) -> tuple[float, float] | None:
        """(value, age in s) of the latest ``key`` at or before ``t``, or None."""
        arrays = self._arrays.get(key)
        if arrays is None:
            return None
        times, values = arrays
        i = int(np.searchsorted(times, t, side="right")) - 1
        if i < 0:
            return None
        return float(values[i]), t - float(times[i])

    def state_at(self, t: float) -> VitalsState:
        fresh: dict[str, float] = {}
        stale: dict[str, float] = {}
        for key in self._numeric:
            found = self.value_at(key, t)
            if found is None:
                continue
            value, age = found
            (stale if age > stale_after(key) else fresh)[key] = value
        waves: dict[str, np.ndarray] = {}
        for key, wave in self._waves.items():
            lo = int(np.searchsorted(wave.times, t - WAVE_WINDOW_S, side="left"))
            hi = int(np.searchsorted(wave.times, t, side="right"))
            if hi - lo >= 2:
                waves[key] = np.stack([wave.times[lo:hi], wave.values[lo:hi]], axis=1)
        return VitalsState(fresh, stale, waves)

    def to_json(self, duration: float) -> dict[str, Any]:
        """The document the recordings page looks vitals up in (``vod/vitals.json``).

        Times are seconds from the start of the teaching video. A waveform's chunks are
        in order, each starting after the previous one's last sample (``t`` + i /
        ``sampleRate`` strictly increases across them); ``gap``: no line joins a chunk
        to the one before it.
        """
        return {
            "version": JSON_VERSION,
            "originMs": self.origin_ms,
            "duration": round(duration, 3),
            "staleAfter": {key: stale_after(key) for key in self._numeric},
            "vitals": {key: {"unit": n.unit, "t": [round(t, 3) for t in n.times],
                             "v": n.values} for key, n in self._numeric.items()},
            "waves": {key: {"unit": w.unit, "sampleRate": w.rate,
                            "chunks": [{"t": round(c.start, 4), "values": list(c.values),
                                        "gap": c.gap_before} for c in w.chunks]}
                      for key, w in self._waves.items()},
        }


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value
