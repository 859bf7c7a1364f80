"""The ``alarm`` event: a monitor's alarm condition raised, changed or cleared.

``name`` is the event's or the flagged measurement's code text (e.g. ``MDC_EVT_LO``),
never a person's; an alarm carries no patient identifier.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Self

from contracts.fields import (
    MAX_LONG_TEXT,
    choice,
    iso_time,
    json_object,
    optional_text,
    text,
    texts,
    timestamp,
)

SOURCES = ("pcd-04", "obx-8")
"""An IHE PCD-04 (ORU^R40) alarm report, or a measurement flagged abnormal in OBX-8."""
PRIORITIES = ("none", "low", "medium", "high")
STATES = ("active", "cleared")


@dataclass(frozen=True)
class AlarmEvent:
    KIND: ClassVar[str] = "alarm"

    id: str
    """The alarm condition: a later event with the same id updates or clears it."""
    device: str
    source: str
    code: str
    name: str
    vital: str | None
    priority: str
    state: str
    text: str | None
    """The monitor's alarm text, or None."""
    flags: tuple[str, ...]
    """OBX-8 as sent, e.g. ("LL",) or ("PH", "SP")."""
    observed_at: datetime

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Self:
        data = json_object(data)
        return cls(id=text(data, "id", max_length=4096), device=text(data, "device"),
                   source=choice(data, "source", SOURCES), code=text(data, "code"),
                   name=text(data, "name"), vital=optional_text(data, "vital"),
                   priority=choice(data, "priority", PRIORITIES),
                   state=choice(data, "state", STATES),
                   text=optional_text(data, "text", max_length=MAX_LONG_TEXT),
                   flags=texts(data, "flags"), observed_at=timestamp(data, "observedAt"))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "device": self.device, "source": self.source,
                "code": self.code, "name": self.name, "vital": self.vital,
                "priority": self.priority, "state": self.state, "text": self.text,
                "flags": list(self.flags), "observedAt": iso_time(self.observed_at)}

    def timeline_view(self) -> dict[str, Any]:
        return self.to_json()  # the condition's codes and texts: no person's name
