"""One room's PTZ camera: the lease and dead-man rules driving a real camera, audited.

The pure ``PtzControl`` decides; this shell runs its commands on the camera in order,
arms the dead-man timer, records every command in the audit trail and tells the room
when the lease or the camera's state changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from devices.ptz_audit import AuditEntry, PtzAudit, now_utc
from devices.ptz_control import (
    Command,
    Home,
    Move,
    PtzControl,
    PtzDenied,
    RecallPreset,
    SetPreset,
    Stop,
)

logger = logging.getLogger(__name__)


class CameraPort(Protocol):
    """What the service needs from a PTZ camera driver (speeds normalised to -1..1)."""

    @property
    def online(self) -> bool: ...

    async def drive(self, pan: float, tilt: float, zoom: float) -> None: ...

    async def halt(self) -> None: ...

    async def recall_preset(self, preset: int) -> None: ...

    async def store_preset(self, preset: int) -> None: ...

    async def go_home(self) -> None: ...


class CameraUnavailable(Exception):
    """The camera is offline or refused the command; ``message`` is safe to show."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Operator:
    participant_id: str
    name: str
    role: str
    subject: str


SYSTEM = Operator("system", "huizhen", "system", "system")


class PtzService:
    def __init__(self, room: str, camera: CameraPort, control: PtzControl | None = None,
                 audit: PtzAudit | None = None,
                 on_state: Callable[[dict[str, Any]], None] | None = None,
                 on_command: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.room = room
        self.camera = camera
        self.control = control or PtzControl()
        self.audit = audit
        self._on_state = on_state
        self._on_command = on_command
        self._loop = asyncio.get_running_loop()
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._holder_name: str | None = None
        self._last_state: dict[str, Any] | None = None
        self.commands_sent = 0

    # ----------------------------------------------------------------- state

    def state(self) -> dict[str, Any]:
        lease = self.control.lease
        return {
            "holder": lease.holder,
            "holderName": self._holder_name if lease.holder else None,
            "holderRole": lease.role,
            "camera": "online" if self.camera.online else "offline",
            "moving": self.control.moving is not None,
        }

    def _publish_state(self) -> None:
        state = self.state()
        if state != self._last_state:
            self._last_state = state
            if self._on_state is not None:
                self._on_state(state)

    def camera_state_changed(self) -> None:
        """The driver reports the camera went offline or came back."""
        self._publish_state()

    # ----------------------------------------------------------------- requests

    async def request(self, who: Operator, action: str, pan: float = 0.0, tilt: float = 0.0,
                      zoom: float = 0.0, preset: int | None = None) -> None:
        """Run one PTZ request; raises PtzDenied or CameraUnavailable."""
        now = self._loop.time()
        control = self.control
        params: dict[str, Any] = {}
        try:
            if action == "acquire":
                commands = control.acquire(who.participant_id, who.role, now)
            elif action == "release":
                commands = control.release(who.participant_id, now)
            elif action == "move":
                params = {"pan": pan, "tilt": tilt, "zoom": zoom}
                commands = control.move(who.participant_id, who.role, pan, tilt, zoom, now)
            elif action == "stop":
                commands = control.stop(who.participant_id, who.role, now)
            elif action in ("preset-recall", "preset-set"):
                params = {"preset": preset}
                commands = control.preset(who.participant_id, who.role,
                                          preset if preset is not None else -1,
                                          action == "preset-set", now)
            elif action == "home":
                commands = control.home(who.participant_id, who.role, now)
            else:
                raise PtzDenied(f"unknown PTZ action {action!r}")
        except PtzDenied as exc:
            await self._audit(who, action, params, f"denied: {exc.message}")
            raise
        if control.lease.holder == who.participant_id:
            self._holder_name = who.name
        moving_commands = [c for c in commands if not isinstance(c, Stop)]
        if moving_commands and not self.camera.online:
            self._rearm()
            self._publish_state()
            await self._audit(who, action, params, "camera offline")
            raise CameraUnavailable("the camera is offline")
        await self._run(commands, who, action, params)
        self._rearm()
        self._publish_state()

    def participant_left(self, participant_id: str) -> None:
        """Stop at once what a departed participant was driving (dead-man on disconnect)."""
        was_holder = self.control.lease.holder == participant_id
        commands = self.control.participant_left(participant_id, self._loop.time())
        if was_holder:
            self._spawn(self._run(commands, SYSTEM, "participant-left",
                                  {"participant": participant_id}))
        self._rearm()
        self._publish_state()

    # ----------------------------------------------------------------- execution

    async def _run(self, commands: list[Command], who: Operator, action: str,
                   params: dict[str, Any]) -> None:
        if not commands:
            await self._audit(who, action, params, "ok")
            return
        async with self._lock:
            for command in commands:
                outcome = "ok"
                try:
                    await self._execute(command)
                    self.commands_sent += 1
                except Exception as exc:  # the driver's error: offline, timeout, refused
                    outcome = f"error: {type(exc).__name__}"
                    logger.warning("[%s] PTZ %s failed: %s", self.room, type(command).__name__,
                                   type(exc).__name__)
                    await self._audit(who, action, {**params, "command": _describe(command)},
                                      outcome)
                    if not isinstance(command, Stop):
                        raise CameraUnavailable("the camera did not accept the command") from None
                    continue
                await self._audit(who, action, {**params, "command": _describe(command)},
                                  outcome)
                if self._on_command is not None:
                    self._on_command({"participant": who.participant_id, "role": who.role,
                                      "action": action, "command": _describe(command)})

    async def _execute(self, command: Command) -> None:
        camera = self.camera
        if isinstance(command, Move):
            await camera.drive(command.pan, command.tilt, command.zoom)
        elif isinstance(command, Stop):
            await camera.halt()
        elif isinstance(command, RecallPreset):
            await camera.recall_preset(command.preset)
        elif isinstance(command, SetPreset):
            await camera.store_preset(command.preset)
        elif isinstance(command, Home):
            await camera.go_home()

    async def _audit(self, who: Operator, action: str, params: dict[str, Any],
                     outcome: str) -> None:
        if self.audit is None:
            return
        entry = AuditEntry(now_utc(), self.room, who.participant_id, who.subject, who.role,
                           action, params, outcome)
        try:
            await self.audit.record(entry)
        except Exception:
            logger.exception("[%s] could not write the PTZ audit entry", self.room)

    # ----------------------------------------------------------------- timers

    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.control.next_deadline()
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._tick)

    def _tick(self) -> None:
        self._timer = None
        commands = self.control.tick(self._loop.time())
        if commands:
            reason = next((c.reason for c in commands if isinstance(c, Stop)), "timer")
            self._spawn(self._run(commands, SYSTEM, "dead-man", {"reason": reason}))
        self._rearm()
        self._publish_state()

    def _spawn(self, coroutine: Any) -> None:
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop the camera if it moves, and cancel timers."""
        if self._timer is not None:
            self._timer.cancel()
        if self.control.moving is not None:
            self.control.moving = None
            with contextlib.suppress(Exception):
                await self._run([Stop("service closing")], SYSTEM, "close", {})
        for task in list(self._tasks):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task


def _describe(command: Command) -> str:
    if isinstance(command, Move):
        return f"move pan={command.pan:+.2f} tilt={command.tilt:+.2f} zoom={command.zoom:+.2f}"
    if isinstance(command, Stop):
        return f"stop ({command.reason})"
    if isinstance(command, RecallPreset):
        return f"recall preset {command.preset}"
    if isinstance(command, SetPreset):
        return f"set preset {command.preset}"
    return "home"
