"""The ``vitals`` event: a monitor's samples as clients and recordings see them.

Measurements only: a sample carries no patient identifier (the monitors' PID-3 never
leaves the device hub). ``name`` is the observation code's text (e.g.
``MDC_PULS_OXIM_SAT_O2``), never a person's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Self

from contracts.fields import (
    MAX_LONG_TEXT,
    iso_time,
    json_object,
    number,
    numbers,
    optional_text,
    text,
    texts,
    timestamp,
)

MAX_SAMPLES = 10_000
"""Samples in one event (a monitor message holds a few dozen)."""


@dataclass(frozen=True)
class Reading:
    """One sample of a ``vitals`` event: a numeric value, or a waveform chunk (``values``
    at ``sample_rate``), or a textual result (``text``, ``value`` None)."""

    vital: str | None
    """Short display key: "spo2", "hr", "pleth", ... (None when the code is unmapped)."""
    code: str
    code_system: str
    name: str
    unit: str | None
    loinc: str | None
    status: str
    observed_at: datetime
    value: float | None = None
    values: tuple[float, ...] | None = None
    sample_rate: float | None = None
    text: str | None = None
    reference_range: str | None = None
    flags: tuple[str, ...] = ()

    @classmethod
    def parse(cls, data: Mapping[str, Any], where: str = "") -> Self:
        data = json_object(data, where)
        waveform = "values" in data
        return cls(
            vital=optional_text(data, "vital", where), code=text(data, "code", where),
            code_system=text(data, "codeSystem", where), name=text(data, "name", where),
            unit=optional_text(data, "unit", where), loinc=optional_text(data, "loinc", where),
            status=text(data, "status", where), observed_at=timestamp(data, "observedAt", where),
            value=None if waveform else number(data, "value", where, nullable=True),
            values=numbers(data, "values", where) if waveform else None,
            sample_rate=number(data, "sampleRate", where, nullable=True) if waveform else None,
            text=optional_text(data, "text", where, required=False, max_length=MAX_LONG_TEXT),
            reference_range=optional_text(data, "referenceRange", where, required=False),
            flags=texts(data, "flags", where, required=False))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "vital": self.vital, "code": self.code, "codeSystem": self.code_system,
            "name": self.name, "unit": self.unit, "loinc": self.loinc,
            "status": self.status, "observedAt": iso_time(self.observed_at),
        }
        if self.reference_range is not None:
            out["referenceRange"] = self.reference_range
        if self.flags:
            out["flags"] = list(self.flags)
        if self.values is not None:
            out["values"] = list(self.values)
            out["sampleRate"] = self.sample_rate
        else:
            out["value"] = self.value
        if self.text is not None:
            out["text"] = self.text
        return out


@dataclass(frozen=True)
class VitalsEvent:
    """The ``vitals`` event: samples of one device, in the order it sent them."""

    KIND: ClassVar[str] = "vitals"

    device: str
    samples: tuple[Reading, ...]

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Self:
        data = json_object(data)
        samples = data.get("samples")
        if not isinstance(samples, list):
            raise ValueError("'samples' must be a list")
        if len(samples) > MAX_SAMPLES:
            raise ValueError(f"'samples' holds more than {MAX_SAMPLES} samples")
        return cls(text(data, "device"),
                   tuple(Reading.parse(s, f"samples[{i}].") for i, s in enumerate(samples)))

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "samples": [s.to_json() for s in self.samples]}

    def timeline_view(self) -> dict[str, Any]:
        return self.to_json()  # measurements only: nothing to leave out
