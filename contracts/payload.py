"""What every payload of a room's application events offers, and which payloads exist.

The device hub builds them and sends ``to_json()``; the recorder parses a received
body with the payload of its kind and keeps ``timeline_view()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, Self

from contracts.alarms import AlarmEvent
from contracts.patient_change import PatientChanged
from contracts.ptz import PtzCommandRecord, PtzState
from contracts.vitals import VitalsEvent


class Payload(Protocol):
    KIND: ClassVar[str]
    """The event's ``type`` on the wire (the room's application event kind)."""

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Self:
        """The payload of a JSON body; ``ValueError`` naming the field when it is bad."""
        ...

    def to_json(self) -> dict[str, Any]:
        """The event body exactly as clients receive it (without ``type``)."""
        ...

    def timeline_view(self) -> dict[str, Any]:
        """The fields of its timeline record beside ``kind`` and ``t``: never a name of
        staff, whatever the body carried."""
        ...


APP_EVENTS: tuple[type[Payload], ...] = (VitalsEvent, AlarmEvent, PatientChanged, PtzState,
                                         PtzCommandRecord)
"""Every application event the device hub sends to rooms."""
