"""One room's PTZ camera: the lease and dead-man rules driving a real camera, audited.

The pure ``PtzControl`` decides; this shell runs its commands on the camera, arms the
dead-man timer, records in the audit trail what the camera actually did and tells the
room when the lease or the camera's state changes.

Nothing here waits for a move to end: a request returns once the camera acknowledged
its commands (ACK), and the completion of a home or preset recall arrives later, in
``ptz-state`` and the audit trail. There is no lock: the driver's flow control keeps
the commands in the order they were submitted, and a stop never queues behind a move
(the port cancels a running home or recall, then sends the stops).

Audit outcomes: ``acknowledged`` (the camera accepted the command), ``completed`` /
``cancelled`` / ``error: CODE`` (how a home or recall ended), ``offline`` (nothing was
sent: the camera is offline or did not acknowledge), ``error: CODE`` (the camera
refused the command), ``denied: ...`` (the lease rules refused it), ``lease`` (a lease
change that needed no camera command), ``nothing sent`` (a zero move, nothing moving).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from contracts.ptz import CAMERA_ACTIONS, PtzCommandRecord, PtzRequest, PtzState
from contracts.roles import SYSTEM_ROLE
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
    """What the service needs from a PTZ camera driver (speeds normalised to -1..1).

    Every method returns once the camera acknowledged the command (ACK) and raises
    :class:`CameraUnavailable` (offline, no ACK) or :class:`CameraRefused` (an error
    reply). ``halt`` first cancels a running home or recall. ``go_home`` and
    ``recall_preset`` return an awaitable of how the move ended: ``"completed"``,
    ``"cancelled"`` or ``"error: CODE"`` (it never raises)."""

    @property
    def online(self) -> bool: ...

    async def drive(self, pan: float, tilt: float, zoom: float) -> None: ...

    async def halt(self) -> None: ...

    async def recall_preset(self, preset: int) -> Awaitable[str]: ...

    async def store_preset(self, preset: int) -> None: ...

    async def go_home(self) -> Awaitable[str]: ...


class CameraUnavailable(Exception):
    """The camera is offline or did not acknowledge; ``message`` is safe to show."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CameraRefused(Exception):
    """The camera answered with an error (or unreadably); ``code`` and ``message`` are
    safe to show (``code`` e.g. ``NOT_EXECUTABLE``, ``SYNTAX``, ``MALFORMED_REPLY``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Operator:
    participant_id: str
    name: str
    role: str
    subject: str


SYSTEM = Operator("system", "huizhen", SYSTEM_ROLE, "system")

_MOTIONS = {Home: "home", RecallPreset: "preset-recall"}


class PtzService:
    def __init__(self, room: str, camera: CameraPort, control: PtzControl | None = None,
                 audit: PtzAudit | None = None,
                 on_state: Callable[[PtzState], None] | None = None,
                 on_command: Callable[[PtzCommandRecord], None] | None = None) -> None:
        self.room = room
        self.camera = camera
        self.control = control or PtzControl()
        self.audit = audit
        self._on_state = on_state
        self._on_command = on_command
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._watchers: set[asyncio.Task[None]] = set()
        self._holder_name: str | None = None
        self._last_state: PtzState | None = None
        self._motion: str | None = None
        """What the camera acknowledged and is doing: "move", "home", "preset-recall"."""
        self._motion_seq = 0
        self._move_ack: asyncio.Future[None] | None = None
        self.commands_sent = 0

    # ----------------------------------------------------------------- state

    def state(self) -> PtzState:
        lease = self.control.lease
        return PtzState(holder=lease.holder,
                        holder_name=self._holder_name if lease.holder else None,
                        holder_role=lease.role,
                        camera="online" if self.camera.online else "offline",
                        moving=self._motion is not None, motion=self._motion)

    def _publish_state(self) -> None:
        state = self.state()
        if state != self._last_state:
            self._last_state = state
            if self._on_state is not None:
                self._on_state(state)

    def _set_motion(self, motion: str | None) -> int:
        self._motion = motion
        self._motion_seq += 1
        return self._motion_seq

    def camera_state_changed(self) -> None:
        """The driver reports the camera went offline or came back."""
        if not self.camera.online:
            self.control.camera_lost()
            self._set_motion(None)
            self._rearm()
        self._publish_state()

    # ----------------------------------------------------------------- requests

    async def request(self, who: Operator, request: PtzRequest) -> None:
        """Run one PTZ request; returns once the camera acknowledged what it needed.

        Raises PtzDenied, CameraUnavailable or CameraRefused."""
        action, pan, tilt, zoom = request.action, request.pan, request.tilt, request.zoom
        preset = request.preset
        now = self._loop.time()
        control = self.control
        params: dict[str, Any] = {}
        refresh_of = control.moving
        try:
            if action == "acquire":
                commands = control.acquire(who.participant_id, who.role, now)
            elif action == "release":
                commands = control.release(who.participant_id, now)
            elif action == "move":
                params = {"pan": pan, "tilt": tilt, "zoom": zoom}
                commands = control.move(who.participant_id, who.role, pan, tilt, zoom, now)
            elif action == "stop":
                holder = control.lease.holder
                if holder != who.participant_id:
                    params = {"holder": holder}  # anyone may stop: say whose move it was
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
        if not self.camera.online:
            await self._offline(who, action, params, commands)
            return
        if not commands:
            self._rearm()
            self._publish_state()
            if action == "move" and refresh_of is not None:
                await self._refreshed()
            else:  # a lease change, or a zero move with nothing moving
                await self._audit(who, action, params,
                                  "nothing sent" if action in CAMERA_ACTIONS else "lease")
            return
        ack: asyncio.Future[None] | None = None
        if any(isinstance(c, Move) for c in commands):
            # Repeats of this move, arriving before the camera answered it, wait for it.
            ack = self._move_ack = self._loop.create_future()
            ack.add_done_callback(_retrieve)
        self._rearm()
        task = self._spawn(self._run(commands, who, action, params, ack))
        try:
            # Shielded: a caller that goes away does not withdraw what was sent, nor its audit.
            await asyncio.shield(task)
        finally:
            self._rearm()
            self._publish_state()

    async def _offline(self, who: Operator, action: str, params: dict[str, Any],
                       commands: list[Command]) -> None:
        """Nothing can be sent: every camera command fails, a lease change still holds."""
        self.control.camera_lost()
        self._set_motion(None)
        self._rearm()
        self._publish_state()
        if action not in CAMERA_ACTIONS:
            for command in commands:
                await self._audit(who, action, {**params, "command": _describe(command)},
                                  "offline")
            if not commands:
                await self._audit(who, action, params, "lease")
            return
        await self._audit(who, action, params, "offline")
        raise CameraUnavailable("the camera is offline")

    async def _refreshed(self) -> None:
        """A repeated move: answer as the camera answered the move it repeats."""
        ack = self._move_ack
        if ack is None:
            return
        await asyncio.wait([ack])
        if ack.cancelled():
            raise CameraUnavailable("the camera did not acknowledge the move")
        error = ack.exception()
        if error is not None:
            raise error

    def participant_left(self, participant_id: str) -> None:
        """Stop at once what a departed participant was driving (dead-man on disconnect)."""
        was_holder = self.control.lease.holder == participant_id
        commands = self.control.participant_left(participant_id, self._loop.time())
        if was_holder and commands:
            self._spawn(self._run_quietly(commands, "participant-left",
                                          {"participant": participant_id}))
        self._rearm()
        self._publish_state()

    # ----------------------------------------------------------------- execution

    async def _run(self, commands: list[Command], who: Operator, action: str,
                   params: dict[str, Any], ack: asyncio.Future[None] | None = None) -> None:
        try:
            for command in commands:
                await self._execute(command, who, action,
                                    {**params, "command": _describe(command)})
            if ack is not None and not ack.done():
                ack.set_result(None)
        except (CameraUnavailable, CameraRefused) as exc:
            if ack is not None and not ack.done():
                ack.set_exception(exc)  # the move was refused, or never sent
            raise
        finally:
            if ack is not None and not ack.done():
                ack.cancel()  # cancelled (service closing): repeats must not wait forever

    async def _run_quietly(self, commands: list[Command], action: str,
                           params: dict[str, Any]) -> None:
        """The server's own commands (dead-man, departure): failures are audited only."""
        with contextlib.suppress(CameraUnavailable, CameraRefused):
            if not self.camera.online:
                for command in commands:
                    await self._audit(SYSTEM, action,
                                      {**params, "command": _describe(command)}, "offline")
                return
            await self._run(commands, SYSTEM, action, params)
        self._publish_state()

    async def _execute(self, command: Command, who: Operator, action: str,
                       params: dict[str, Any]) -> None:
        camera = self.camera
        completion: Awaitable[str] | None = None
        try:
            if isinstance(command, Move):
                await camera.drive(command.pan, command.tilt, command.zoom)
            elif isinstance(command, Stop):
                await camera.halt()
            elif isinstance(command, RecallPreset):
                completion = await camera.recall_preset(command.preset)
            elif isinstance(command, SetPreset):
                await camera.store_preset(command.preset)
            elif isinstance(command, Home):
                completion = await camera.go_home()
        except (CameraUnavailable, CameraRefused) as exc:
            self._failed(command, exc)
            outcome = "offline" if isinstance(exc, CameraUnavailable) else f"error: {exc.code}"
            logger.warning("[%s] PTZ %s: %s", self.room, type(command).__name__, outcome)
            await self._audit(who, action, params, outcome)
            raise
        self.commands_sent += 1
        if isinstance(command, Move):
            self._set_motion("move")
        elif isinstance(command, Stop):
            self._set_motion(None)
        elif completion is not None:
            seq = self._set_motion(_MOTIONS[type(command)])
            watcher = self._loop.create_task(self._watch(completion, seq, who, action, params))
            self._watchers.add(watcher)
            watcher.add_done_callback(self._watchers.discard)
        self._publish_state()
        await self._audit(who, action, params, "acknowledged")
        if self._on_command is not None:
            self._on_command(PtzCommandRecord(who.participant_id, who.role, action,
                                              _describe(command)))

    def _failed(self, command: Command, exc: CameraUnavailable | CameraRefused) -> None:
        self.control.command_failed(command)
        if isinstance(command, Move):
            if isinstance(exc, CameraRefused):
                # Part of the drive may run (pan-tilt accepted, zoom refused; an unreadable
                # ACK): no dead-man would stop it any more, so stop it now.
                self._spawn(self._run_quietly([Stop("move refused")], "safety-stop", {}))
        elif isinstance(command, Stop) and isinstance(exc, CameraUnavailable):
            self._set_motion(None)

    async def _watch(self, completion: Awaitable[str], seq: int, who: Operator, action: str,
                     params: dict[str, Any]) -> None:
        """Wait for a home or recall to end; report it in ``ptz-state`` and the audit."""
        outcome = await completion
        if self._motion_seq == seq:  # nothing newer was acknowledged meanwhile
            self.control.arrived()
            self._set_motion(None)
            self._publish_state()
        await self._audit(who, action, params, outcome)

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
            self._spawn(self._run_quietly(commands, "dead-man", {"reason": reason}))
        self._rearm()
        self._publish_state()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_retrieve)
        return task

    async def close(self) -> None:
        """Stop the camera if it moves, cancel timers and the completion watchers."""
        if self._timer is not None:
            self._timer.cancel()
        control = self.control
        if control.moving is not None or control.positioning or self._motion is not None:
            control.camera_lost()
            with contextlib.suppress(Exception):
                await self._run_quietly([Stop("service closing")], "close", {})
        for watcher in list(self._watchers):
            watcher.cancel()
        for task in [*self._tasks, *self._watchers]:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a failure as seen: the caller that would have awaited it may be gone."""
    if not future.cancelled():
        future.exception()


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
