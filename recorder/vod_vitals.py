"""The vitals of a recording as a time series on the teaching video's clock (pure).

Samples are placed at the timeline event's ``t`` (the wall-clock ms at which the
server received them and the live page showed them), on the same clock as the
tracks' ``start_ms``; ``observedAt`` (the monitor's own clock) is kept for display
only. A numeric vital holds its value until the next one, and counts as stale after
the same limits the live vitals panel uses (web_client/vitals.js). A waveform
chunk's samples start at its ``t`` and follow at ``sampleRate``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

STALE_S: dict[str, float] = {"temp": 600.0, "nibp_sys": 900.0, "nibp_dia": 900.0,
                             "nibp_mean": 900.0}
"""Seconds after which a value is shown as stale; 30 s for anything not listed."""
DEFAULT_STALE_S = 30.0
WAVE_WINDOW_S = 4.0
"""Seconds of waveform shown by the overlay."""
JSON_VERSION = 1


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


@dataclass
class _Wave:
    unit: str = ""
    rate: float = 0.0
    chunks: list[tuple[float, list[float | None]]] = field(default_factory=list)
    times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    values: np.ndarray = field(default_factory=lambda: np.zeros(0))


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
                series.add(float(event["t"]), event.get("samples"))
        series.freeze()
        return series

    def add(self, t_ms: float, samples: object) -> None:
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
                rate = sample.get("sampleRate")
                if isinstance(rate, int | float) and rate > 0 and key:
                    wave = self._waves.setdefault(key, _Wave(unit=unit, rate=float(rate)))
                    wave.chunks.append((t, [float(v) if _number(v) else None for v in values]))
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
            wave.chunks.sort(key=lambda c: c[0])
            times: list[np.ndarray] = []
            values: list[np.ndarray] = []
            for start, chunk in wave.chunks:
                times.append(start + np.arange(len(chunk)) / wave.rate)
                values.append(np.array([np.nan if v is None else v for v in chunk], dtype=float))
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

        Times are seconds from the start of the teaching video.
        """
        return {
            "version": JSON_VERSION,
            "originMs": self.origin_ms,
            "duration": round(duration, 3),
            "staleAfter": {key: stale_after(key) for key in self._numeric},
            "vitals": {key: {"unit": n.unit, "t": [round(t, 3) for t in n.times],
                             "v": n.values} for key, n in self._numeric.items()},
            "waves": {key: {"unit": w.unit, "sampleRate": w.rate,
                            "chunks": [{"t": round(t, 3), "values": v} for t, v in w.chunks]}
                      for key, w in self._waves.items()},
        }


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value
