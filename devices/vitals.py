"""The normalised vital-sign sample that every monitor protocol produces.

HL7 ORU^R01 (IHE PCD-01), Nonin ASCII and CMS50D+ packets all become
``VitalSample``s. Identifiers (``patient_id``) are carried for storage and binding
only: they are never logged at INFO nor put into error messages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class VitalSample:
    device_id: str
    """The sending device: EUI-64 from OBX-18/MSH-3, or a configured serial device id."""
    code: str
    """Observation code as sent: an MDC code ("150456"), or a vendor's code kept as-is."""
    code_system: str
    """"MDC", a vendor system ("MDIL", "99MNDRY"), or the serial protocol ("NONIN", "CMS50D")."""
    name: str
    """The code's text, e.g. "MDC_PULS_OXIM_SAT_O2"."""
    observed_at: datetime
    """Observation time, timezone-aware (the configured zone when the sender gave none)."""
    status: str = "R"
    """HL7 result status (OBX-11): R, F, ... Serial readings are "R"."""
    value: float | None = None
    """A numeric value (NM), or None for waveforms and non-numeric results."""
    values: tuple[float, ...] | None = None
    """Waveform samples (NA), in order."""
    sample_rate: float | None = None
    """Samples per second of a waveform, when known."""
    unit: str | None = None
    """UCUM unit ("%", "/min", "mm[Hg]", "Cel"), or the sender's unit when unmapped."""
    loinc: str | None = None
    """LOINC code where the mapping table knows one."""
    vital: str | None = None
    """Short key for displays: "spo2", "hr", "pr", "rr", "temp", "nibp_sys", "pleth", ..."""
    patient_id: str | None = None
    """The sender's patient identifier (PID-3); never logged."""
    text: str | None = None
    """A textual value (ST/CWE) when the result is not numeric."""
    reference_range: str | None = None
    """OBX-7 as sent (unescaped), e.g. "90-100"; None when absent."""
    abnormal_flags: tuple[str, ...] = ()
    """OBX-8 repetitions (HL7 table 0078: "H", "HH", "L", "LL", "A", "AA", "N", ...)."""

    @property
    def is_waveform(self) -> bool:
        return self.values is not None


@dataclass(frozen=True)
class VitalAlarm:
    """An alarm raised by a monitor: an IHE PCD-04 (ORU^R40) event, or an abnormal OBX-8 flag.

    Like samples, alarms carry no patient identity beyond ``patient_id`` (never logged).
    """

    device_id: str
    code: str
    """The event code (MDC_EVT_...) or, for a flagged measurement, the observation code."""
    name: str
    priority: str
    """"high", "medium", "low" or "none"."""
    state: str
    """"active" or "cleared"."""
    observed_at: datetime
    source: str
    """"pcd-04" for ORU^R40 alarm messages, "obx-8" for a flagged measurement."""
    vital: str | None = None
    text: str | None = None
    flags: tuple[str, ...] = ()
    patient_id: str | None = None


SampleSink = Callable[[Sequence[VitalSample]], Awaitable[None]]
"""Where a monitor feed delivers samples. It returns only once they are stored durably:
an HL7 listener acknowledges (MSA AA) after this returns, never before."""
