"""The codes serial oximeter readings are given (pure).

Serial oximeters send bare numbers, no codes. Their readings are coded with the same
IEEE 11073 MDC codes an HL7 (IHE PCD-01) feed sends, ``code_system="MDC"``, so SpO2
from a Nonin, a CMS50D+ and a bedside monitor's HL7 gateway are one series downstream;
which device sent a reading is ``VitalSample.device_id``.

A vital that the device cannot measure at the moment (Nonin dashes, CMS50D+ finger
out) becomes a sample with ``value=None``, ``status="X"`` (OBX-11 "cannot be obtained")
and the reason in ``text``; never a number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from devices.vitals import VitalSample

CODE_SYSTEM = "MDC"

STATUS_VALID = "R"
"""OBX-11 for a measured value."""
STATUS_UNAVAILABLE = "X"
"""OBX-11 "results cannot be obtained for this observation"."""

NO_READING = "no-reading"
"""``text`` of an unavailable reading: the device has no value (Nonin dashes, CMS50D+ sentinel)."""
FINGER_OUT = "finger-out"
"""``text`` of an unavailable reading: no finger in the sensor, or the sensor is off/faulty."""
SEARCHING = "searching"
"""``text`` of an unavailable reading: the sensor is searching for a pulse."""


@dataclass(frozen=True)
class VitalCode:
    code: str
    name: str
    vital: str
    unit: str | None
    loinc: str | None


SPO2 = VitalCode("150456", "MDC_PULS_OXIM_SAT_O2", "spo2", "%", "59408-5")
PULSE_RATE = VitalCode("149530", "MDC_PULS_OXIM_PULS_RATE", "pr", "/min", "8889-8")
PLETH = VitalCode("150452", "MDC_PULS_OXIM_PLETH", "pleth", None, None)
"""Plethysmogram in the device's raw units (CMS50D+: 0..127); no UCUM unit, no LOINC."""


def as_utc(now: datetime) -> datetime:
    """``now`` in UTC; a naive datetime is refused rather than guessed."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    return now.astimezone(UTC)


def reading(code: VitalCode, device_id: str, at: datetime, value: int | None,
            reason: str = NO_READING) -> VitalSample:
    """A numeric reading, or (``value`` None) an unavailable one carrying ``reason``."""
    if value is None:
        return VitalSample(device_id=device_id, code=code.code, code_system=CODE_SYSTEM,
                           name=code.name, observed_at=at, status=STATUS_UNAVAILABLE,
                           unit=code.unit, loinc=code.loinc, vital=code.vital, text=reason)
    return VitalSample(device_id=device_id, code=code.code, code_system=CODE_SYSTEM,
                       name=code.name, observed_at=at, status=STATUS_VALID, value=float(value),
                       unit=code.unit, loinc=code.loinc, vital=code.vital)


def waveform(code: VitalCode, device_id: str, at: datetime, values: Sequence[float],
             sample_rate: float) -> VitalSample:
    """A batch of waveform samples; ``at`` is the time of the first one."""
    return VitalSample(device_id=device_id, code=code.code, code_system=CODE_SYSTEM,
                       name=code.name, observed_at=at, status=STATUS_VALID,
                       values=tuple(values), sample_rate=sample_rate, unit=code.unit,
                       loinc=code.loinc, vital=code.vital)
