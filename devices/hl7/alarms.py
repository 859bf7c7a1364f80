"""Monitor alarms: abnormal OBX-8 flags and IHE PCD-04 (ORU^R40) alarm reports, sans-I/O.

Two sources become ``VitalAlarm``s:

* a measurement whose OBX-8 (HL7 table 0078) is abnormal: ``HH``/``LL``/``AA`` and the
  off-scale ``>``/``<`` (and v2.7's panic ``HU``/``LU``) are high priority, ``H``/``L``/``A``
  medium, the trend flags ``U``/``D``/``W`` low; ``N`` and the susceptibility flags are not
  alarms. An IHE PCD priority in the same field (``PH``/``PM``/``PL``/``PN``) wins.
* an ORU^R40 (IHE PCD-04, Alarm Communication Management): the OBX rows under an OBR
  describe one alarm as "facets" told apart by the last part of OBX-4 (rows sharing
  the rest of OBX-4 belong together; senders that number facets differently are
  grouped by OBR and row order, see ``AlarmGroups``). The event identification row (OBX-3
  ``MDC_EVT_...``; OBX-8 holds the priority ``PH``/``PM``/``PL`` and the source
  ``SP``/``ST``/``SA``; OBX-5 the monitor's alarm text (ST) or the source (CWE), if
  any), the source row (the
  measurement the alarm is about, e.g. ``150456^MDC_PULS_OXIM_SAT_O2^MDC``), the event
  phase (``MDC_ATTR_EVENT_PHASE``: ``start``, ``present``, ``continue``, ``update``,
  ``escalate``, ``end``, ...) and the alarm state (``MDC_ATTR_ALARM_STATE``:
  ``active``, ``latched``, ``inactive``, ...). Phase ``end`` or state ``inactive``
  means the alarm is cleared; anything else keeps it active.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from devices.vitals import VitalAlarm

PRIORITY_ORDER = ("none", "low", "medium", "high")

FLAG_PRIORITY = {
    "HH": "high", "LL": "high", "AA": "high", ">": "high", "<": "high", "HU": "high",
    "LU": "high",
    "H": "medium", "L": "medium", "A": "medium",
    "U": "low", "D": "low", "W": "low",
}
"""HL7 table 0078 abnormal flags that raise an alarm, and its priority."""

PCD_PRIORITY = {"PH": "high", "PM": "medium", "PL": "low", "PI": "low", "PU": "low",
                "PN": "none"}
"""IHE PCD alarm priorities (OBX-8 of the event identification row)."""

ALARM_SOURCES = {"SP": "physiological", "ST": "technical", "SA": "advisory"}

EVENT_PHASE_NAMES = frozenset({"MDC_ATTR_EVENT_PHASE"})
EVENT_PHASE_CODES = frozenset({"68481"})
ALARM_STATE_NAMES = frozenset({"MDC_ATTR_ALARM_STATE"})
ALARM_STATE_CODES = frozenset({"68482"})
INACTIVATION_NAMES = frozenset({"MDC_ATTR_ALARM_INACTIVATION_STATE"})
INACTIVATION_CODES = frozenset({"68483"})
CLEARED_PHASES = frozenset({"end", "stop", "ended"})
CLEARED_STATES = frozenset({"inactive", "off"})
TEXT_VALUE_TYPES = frozenset({"ST", "TX", "FT"})


def flag_priority(flags: Iterable[str]) -> str | None:
    """The alarm priority OBX-8 ``flags`` stand for, or None when they are not abnormal."""
    best: str | None = None
    pcd: str | None = None
    for flag in flags:
        flag = flag.strip().upper()
        if flag in PCD_PRIORITY:
            pcd = PCD_PRIORITY[flag]
        priority = FLAG_PRIORITY.get(flag)
        if priority is not None and (
                best is None or PRIORITY_ORDER.index(priority) > PRIORITY_ORDER.index(best)):
            best = priority
    if best is None:
        return None
    return pcd or best


def is_event_code(code: str, name: str, flags: Iterable[str]) -> bool:
    """The row identifies the alarm event (facet 1)."""
    return name.startswith("MDC_EVT_") or any(f.strip().upper() in PCD_PRIORITY for f in flags)


@dataclass
class AlarmFacets:
    """The rows of one alarm of an ORU^R40, collected in message order."""

    obr: int
    event_code: str = ""
    event_name: str = ""
    text: str | None = None
    flags: tuple[str, ...] = ()
    device_id: str = ""
    observed_at: datetime | None = None
    source_vital: str | None = None
    source_name: str = ""
    phase: str = ""
    state: str = ""
    inactivation: str = ""
    rows: list[int] = field(default_factory=list)

    @property
    def has_event(self) -> bool:
        return bool(self.event_code or self.event_name)

    def alarm(self, patient_id: str | None) -> VitalAlarm:
        assert self.observed_at is not None
        phase, state = self.phase.strip().lower(), self.state.strip().lower()
        cleared = phase in CLEARED_PHASES or state in CLEARED_STATES
        priority = next((PCD_PRIORITY[f.upper()] for f in self.flags if f.upper() in PCD_PRIORITY),
                        None) or flag_priority(self.flags) or "none"
        return VitalAlarm(
            device_id=self.device_id, code=self.event_code, name=self.event_name,
            priority=priority, state="cleared" if cleared else "active",
            observed_at=self.observed_at, source="pcd-04", vital=self.source_vital,
            text=self.text, flags=self.flags, patient_id=patient_id)


def sub_id_parent(sub_id: str) -> str:
    """OBX-4 without its last (facet) part: ``1.2.1.150456.3`` -> ``1.2.1.150456``."""
    return sub_id.rsplit(".", 1)[0] if "." in sub_id else ""


class AlarmGroups:
    """The alarms of one ORU^R40 being read, and which alarm each row belongs to.

    Rows join the alarm of their OBR that already has a row with the same OBX-4 parent;
    an event identification row otherwise starts a new alarm; other rows join the last
    alarm of their OBR (senders differ in how they number the facets of one alarm).
    Lookups are by dictionary, so a hostile message with many rows stays linear.
    """

    def __init__(self) -> None:
        self.alarms: list[AlarmFacets] = []
        self._last: dict[int, AlarmFacets] = {}
        self._by_parent: dict[tuple[int, str], AlarmFacets] = {}

    def find(self, obr_number: int, parent: str, is_event: bool) -> AlarmFacets:
        group = self._by_parent.get((obr_number, parent)) if parent else None
        if group is None or (is_event and group.has_event):
            group = self._last.get(obr_number)
            if group is None or (is_event and group.has_event):
                group = AlarmFacets(obr=obr_number)
                self.alarms.append(group)
                self._last[obr_number] = group
        if parent:
            self._by_parent.setdefault((obr_number, parent), group)
        return group
