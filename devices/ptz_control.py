"""Who may steer a room's PTZ camera, and when it must stop (sans-I/O, ``now`` passed in).

One controller at a time holds a lease that every participant sees. A participant of a
higher rank (``contracts.roles.PTZ_RANKS``: ward staff outrank experts) takes the lease
over; an equal or lower one waits until it is released or lapses after ``idle_release``
seconds without a command.

Dead-man rule: a continuous move lasts only while the controller keeps refreshing it.
A move not refreshed for ``deadman`` seconds, a controller that leaves, and a lease
that is lost or released all produce an immediate ``Stop`` (also of a running home or
preset recall). The I/O shell calls ``tick(now)`` at ``next_deadline()`` and sends the
commands it returns.

Anyone allowed to steer may ``stop`` without holding the lease: stopping is always safe,
and a camera must never keep moving because the one who may stop it is not the holder.

The shell reports back what the camera did: ``arrived()`` when a home or recall
completed, ``command_failed(command)`` when the camera refused or never acknowledged a
command, ``camera_lost()`` when it went offline, so that a repeated move is sent again
instead of being taken as already running.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from contracts.roles import PTZ_RANKS


@dataclass(frozen=True)
class Move:
    """Continuous drive; each axis in -1.0..1.0 (sign = direction, magnitude = speed)."""

    pan: float
    tilt: float
    zoom: float


@dataclass(frozen=True)
class Stop:
    reason: str


@dataclass(frozen=True)
class RecallPreset:
    preset: int


@dataclass(frozen=True)
class SetPreset:
    preset: int


@dataclass(frozen=True)
class Home:
    pass


Command = Move | Stop | RecallPreset | SetPreset | Home


@dataclass(frozen=True)
class Lease:
    holder: str | None
    role: str | None
    since: float | None


class PtzDenied(Exception):
    """The participant may not steer now; ``message`` is safe to show."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _clamp(value: float) -> float:
    if value != value:  # NaN
        raise PtzDenied("move speeds must be numbers")
    return max(-1.0, min(1.0, float(value)))


class PtzControl:
    def __init__(self, ranks: Mapping[str, int] = PTZ_RANKS, deadman: float = 0.4,
                 idle_release: float = 60.0, max_presets: int = 16) -> None:
        self.ranks = dict(ranks)
        self.deadman = deadman
        self.idle_release = idle_release
        self.max_presets = max_presets
        self.lease = Lease(None, None, None)
        self.moving: Move | None = None
        self.positioning = False
        """A home or preset recall was sent and has not completed."""
        self._last_refresh = 0.0
        self._last_command = 0.0

    # ----------------------------------------------------------------- lease

    def _rank(self, role: str) -> int:
        if role not in self.ranks:
            raise PtzDenied(f"the role '{role}' may not steer the camera")
        return self.ranks[role]

    def acquire(self, participant: str, role: str, now: float) -> list[Command]:
        """Take the lease (free, lapsed, or held by a lower rank). Returns commands to run."""
        rank = self._rank(role)
        holder, holder_role = self.lease.holder, self.lease.role
        if holder == participant:
            self._last_command = now
            return []
        commands: list[Command] = []
        if holder is not None and holder_role is not None:
            lapsed = now - self._last_command >= self.idle_release
            if not lapsed and rank <= self.ranks.get(holder_role, 0):
                raise PtzDenied("another participant is steering the camera")
            commands = self._halt("lease taken over")
        self.lease = Lease(participant, role, now)
        self._last_command = now
        return commands

    def release(self, participant: str, now: float) -> list[Command]:
        if self.lease.holder != participant:
            return []
        commands = self._halt("lease released")
        self.lease = Lease(None, None, None)
        return commands

    def participant_left(self, participant: str, now: float) -> list[Command]:
        """The controller disconnected: stop at once and free the lease."""
        return self.release(participant, now)

    # ----------------------------------------------------------------- commands

    def _require_holder(self, participant: str, role: str, now: float) -> list[Command]:
        if self.lease.holder == participant:
            self._last_command = now
            return []
        return self.acquire(participant, role, now)  # implicit acquire, same rules

    def move(self, participant: str, role: str, pan: float, tilt: float, zoom: float,
             now: float) -> list[Command]:
        """Start, change or refresh a continuous move (resend at least every deadman/2)."""
        commands = self._require_holder(participant, role, now)
        move = Move(_clamp(pan), _clamp(tilt), _clamp(zoom))
        self._last_refresh = now
        if move == Move(0.0, 0.0, 0.0):
            return commands + self._halt("move to zero")
        if self.positioning:
            commands += self._halt("move")  # a drive supersedes a running home or recall
        if move != self.moving:
            self.moving = move
            commands.append(move)
        return commands

    def stop(self, participant: str, role: str, now: float) -> list[Command]:
        """Anyone may stop (the lease is neither needed nor taken); the holder's stop
        counts as activity. An explicit stop always goes to the camera, even when nothing
        is known to move."""
        if self.lease.holder == participant:
            self._last_command = now
        self.moving = None
        self.positioning = False
        return [Stop("requested")]

    def preset(self, participant: str, role: str, number: int, store: bool,
               now: float) -> list[Command]:
        if isinstance(number, bool) or not isinstance(number, int) or not (
                0 <= number < self.max_presets):
            raise PtzDenied(f"presets are numbered 0 to {self.max_presets - 1}")
        commands = self._require_holder(participant, role, now) + self._halt("preset")
        commands.append(SetPreset(number) if store else RecallPreset(number))
        self.positioning = not store
        return commands

    def home(self, participant: str, role: str, now: float) -> list[Command]:
        commands = self._require_holder(participant, role, now) + self._halt("home")
        commands.append(Home())
        self.positioning = True
        return commands

    # ----------------------------------------------------------------- camera feedback

    def arrived(self) -> None:
        """The running home or preset recall completed (or was cancelled)."""
        self.positioning = False

    def command_failed(self, command: Command) -> None:
        """The camera refused ``command`` or never acknowledged it: it does not run."""
        if isinstance(command, Move) and self.moving == command:
            self.moving = None
        elif isinstance(command, Home | RecallPreset):
            self.positioning = False

    def camera_lost(self) -> None:
        """The camera went offline: nothing it was told is known to run any more."""
        self.moving = None
        self.positioning = False

    # ----------------------------------------------------------------- timers

    def _halt(self, reason: str) -> list[Command]:
        if self.moving is None and not self.positioning:
            return []
        self.moving = None
        self.positioning = False
        return [Stop(reason)]

    def next_deadline(self) -> float | None:
        """When ``tick`` must run next (None: nothing pending)."""
        deadlines = []
        if self.moving is not None:
            deadlines.append(self._last_refresh + self.deadman)
        if self.lease.holder is not None:
            deadlines.append(self._last_command + self.idle_release)
        return min(deadlines) if deadlines else None

    def tick(self, now: float) -> list[Command]:
        commands: list[Command] = []
        if self.moving is not None and now - self._last_refresh >= self.deadman:
            commands += self._halt("dead-man: move not refreshed")
        if self.lease.holder is not None and now - self._last_command >= self.idle_release:
            commands += self._halt("lease lapsed")
            self.lease = Lease(None, None, None)
        return commands
