"""The ``patient-changed`` event: a monitor now reports another patient than before.

It says only that the patient changed, never who either patient is: staff check the
patient's identity at the bed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Self

from contracts.fields import iso_time, json_object, text, timestamp


@dataclass(frozen=True)
class PatientChanged:
    KIND: ClassVar[str] = "patient-changed"

    device: str
    changed_at: datetime
    """The observation time of the first sample or alarm of the new patient."""

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Self:
        data = json_object(data)
        return cls(text(data, "device"), timestamp(data, "changedAt"))

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "changedAt": iso_time(self.changed_at)}

    def timeline_view(self) -> dict[str, Any]:
        return self.to_json()
