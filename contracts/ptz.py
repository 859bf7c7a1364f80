"""PTZ payloads: a participant's request, the room's ``ptz-state``, and ``ptz-command``.

The WebSocket ``ptz`` message is parsed once, into a ``PtzRequest``, and travels as
that to the camera's service. The ranges checked here are the wire's (speeds -1..1,
presets 0..255); the lease rules (who may steer, how many presets the camera has)
are the PTZ service's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from contracts.fields import (
    boolean,
    choice,
    json_object,
    optional_choice,
    optional_text,
    text,
)

PTZ_ACTIONS = ("acquire", "release", "move", "stop", "preset-recall", "preset-set", "home")
"""What a participant may ask for (the ``action`` of a ``ptz`` message)."""
CAMERA_ACTIONS = ("move", "stop", "preset-recall", "preset-set", "home")
"""Requests that are camera commands (``acquire`` and ``release`` change the lease only)."""
PRESET_ACTIONS = ("preset-recall", "preset-set")
SERVER_ACTIONS = ("dead-man", "participant-left", "safety-stop", "close")
"""Why the server itself sent a command: an unrefreshed move or a lapsed lease, a
departed controller, a drive the camera partly refused, the service closing."""
CAMERA_STATES = ("online", "offline")
MOTIONS = ("move", "home", "preset-recall")
"""What the camera acknowledged and is doing."""
MAX_PRESET = 255


@dataclass(frozen=True)
class PtzRequest:
    """One ``ptz`` message (without ``type`` and ``id``); speeds are -1..1 (sign =
    direction: pan > 0 right, tilt > 0 up, zoom > 0 in), ``preset`` 0..255."""

    action: str
    pan: float = 0.0
    tilt: float = 0.0
    zoom: float = 0.0
    preset: int | None = None

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Self:
        data = json_object(data)
        action = data.get("action")
        if not isinstance(action, str) or action not in PTZ_ACTIONS:
            raise ValueError(f"'action' must be one of {', '.join(PTZ_ACTIONS)}")
        if action == "move":
            return cls(action, _speed(data, "pan"), _speed(data, "tilt"), _speed(data, "zoom"))
        if action in PRESET_ACTIONS:
            preset = data.get("preset")
            if isinstance(preset, bool) or not isinstance(preset, int) or not (
                    0 <= preset <= MAX_PRESET):
                raise ValueError(f"'preset' must be an integer from 0 to {MAX_PRESET}")
            return cls(action, preset=preset)
        return cls(action)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action}
        if self.action == "move":
            out.update(pan=self.pan, tilt=self.tilt, zoom=self.zoom)
        elif self.action in PRESET_ACTIONS:
            out["preset"] = self.preset
        return out


def _speed(data: Mapping[str, Any], key: str) -> float:
    """An axis speed; an absent axis does not move."""
    value = data.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or \
            not -1 <= value <= 1:
        raise ValueError(f"'{key}' must be a number from -1 to 1")
    return float(value)


@dataclass(frozen=True)
class PtzState:
    """The ``ptz-state`` event (and ``joined.ptz``): the lease and what the camera does."""

    KIND: ClassVar[str] = "ptz-state"

    holder: str | None
    """The participant id holding the lease, or None."""
    holder_name: str | None
    """The holder's display name (staff): shown live, never recorded."""
    holder_role: str | None
    camera: str
    """"online" or "offline"."""
    moving: bool
    """True only once the camera acknowledged a move, home or recall."""
    motion: str | None
    """"move", "home", "preset-recall", or None."""

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Self:
        data = json_object(data)
        return cls(holder=optional_text(data, "holder"),
                   holder_name=optional_text(data, "holderName"),
                   holder_role=optional_text(data, "holderRole"),
                   camera=choice(data, "camera", CAMERA_STATES),
                   moving=boolean(data, "moving"),
                   motion=optional_choice(data, "motion", MOTIONS))

    def to_json(self) -> dict[str, Any]:
        return {"holder": self.holder, "holderName": self.holder_name,
                "holderRole": self.holder_role, **self._recorded()}

    def timeline_view(self) -> dict[str, Any]:
        """``{"state": ...}``: the state without the holder's name."""
        return {"state": {"holder": self.holder, "holderRole": self.holder_role,
                          **self._recorded()}}

    def _recorded(self) -> dict[str, Any]:
        return {"camera": self.camera, "moving": self.moving, "motion": self.motion}


@dataclass(frozen=True)
class PtzCommandRecord:
    """The ``ptz-command`` event: one command the camera acknowledged, and on whose behalf
    (``role`` "system" and a server action for the server's own stops)."""

    KIND: ClassVar[str] = "ptz-command"

    participant: str
    role: str
    action: str
    command: str
    """What was sent, e.g. ``move pan=+1.00 tilt=+0.00 zoom=+0.00``, ``stop (requested)``."""

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Self:
        data = json_object(data)
        return cls(participant=text(data, "participant"), role=text(data, "role"),
                   action=choice(data, "action", PTZ_ACTIONS + SERVER_ACTIONS),
                   command=text(data, "command"))

    def to_json(self) -> dict[str, Any]:
        return {"participant": self.participant, "role": self.role, "action": self.action,
                "command": self.command}

    def timeline_view(self) -> dict[str, Any]:
        return self.to_json()  # ids and roles only: no name to leave out
