"""A simulated Sony PTZ camera (sans-I/O, ``now`` passed in), for tests and demos.

It keeps pan, tilt, zoom, focus, focus mode, presets and power, and moves over time at
the commanded speeds: a continuous drive runs until stopped or a limit, an absolute or
relative move, home, reset, zoom/focus direct and preset recall complete when the
camera gets there. It answers like a camera: ACK then completion, inquiry replies,
``syntax error`` for what it does not know, ``command buffer full`` when both sockets
are busy, ``not executable`` in standby or for manual focus under autofocus, and
``cancelled`` / ``no socket`` for cancel.

Speeds: a pan or tilt speed step is ``60 * speed_scale`` position units per second
(speed 0x18 crosses the EVI-D70's ±170° pan range in about three seconds at scale 1).
Zoom speed p covers ``(p + 1) / 8`` of the zoom range per second; focus moves at half
its range per second. ``completion_delay`` delays every completion (a slow camera).
``positioning_time`` (seconds) makes home and preset recall take that long whatever the
distance, as tests of a long move need; a Command Cancel or a pan-tilt stop halts such a
move where it is (the cancel answers ``cancelled``, the stop completes it).

Replies are returned by :meth:`SimulatedCamera.poll` together with the ``reply_to``
given with the packet they answer, so a shell can route them to the right connection.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from devices.visca.codec import (
    BROADCAST,
    CAMERA,
    COMMAND,
    INQUIRY,
    INTERFACE,
    PAN_TILT,
    TERMINATOR,
    Ack,
    AddressSetReply,
    Completion,
    ErrorCode,
    ErrorReply,
    PanTilt,
    Version,
    decode_nibbles,
    encode_nibbles,
    encode_pan_tilt,
    encode_power,
    if_clear,
)

ReplyTo = Callable[[bytes], None]

PAN_TILT_RATE = 60.0
ZOOM_RANGE = (0, 0x4000)
FOCUS_RANGE = (0x1000, 0xC000)
STANDARD_ZOOM_SPEED = 3
SONY = 0x0020
DEFAULT_VERSION = Version(SONY, 0x0402, 0x0100, 2)


class _SyntaxError(Exception):
    pass


class _NotExecutable(Exception):
    pass


@dataclass(eq=False)
class Axis:
    """One axis moving at constant velocity, towards a target or until a limit."""

    low: float
    high: float
    value: float = 0.0
    velocity: float = 0.0
    target: float | None = None
    since: float = 0.0

    def at(self, now: float) -> float:
        value = self.value + self.velocity * max(0.0, now - self.since)
        if self.target is not None and (value - self.target) * self.velocity >= 0:
            value = self.target
        return min(max(value, self.low), self.high)

    def settle(self, now: float) -> None:
        self.value = self.at(now)
        self.since = now
        if self.target is not None and self.value == self.target:
            self.velocity, self.target = 0.0, None

    def drive(self, now: float, velocity: float) -> None:
        self.settle(now)
        self.velocity, self.target = velocity, None

    def move_to(self, now: float, target: float, speed: float) -> None:
        self.settle(now)
        target = min(max(target, self.low), self.high)
        if target == self.value or speed <= 0:
            self.value, self.velocity, self.target = target, 0.0, None
        else:
            self.velocity = math.copysign(speed, target - self.value)
            self.target = target

    def stop(self, now: float) -> None:
        self.drive(now, 0.0)

    def arrival(self) -> float | None:
        """When the current target is reached (None: no target)."""
        if self.target is None or self.velocity == 0:
            return None
        return self.since + abs(self.target - self.value) / abs(self.velocity)


@dataclass(eq=False)
class _Job:
    socket: int
    reply_to: ReplyTo | None
    axes: tuple[Axis, ...]
    not_before: float

    def done_at(self) -> float:
        arrivals = [a for a in (axis.arrival() for axis in self.axes) if a is not None]
        return max([self.not_before, *arrivals])


@dataclass(frozen=True)
class Preset:
    pan: float
    tilt: float
    zoom: float
    focus: float


@dataclass(order=True)
class _Pending:
    due: float
    order: int
    reply_to: ReplyTo | None = field(compare=False)
    data: bytes = field(compare=False)


class SimulatedCamera:
    def __init__(
        self,
        address: int = 1,
        *,
        pan_nibbles: int = 4,
        pan_limits: tuple[int, int] = (-0x08DB, 0x08DB),
        tilt_limits: tuple[int, int] = (-0x0190, 0x04B0),
        pan_speed_max: int = 0x18,
        tilt_speed_max: int = 0x17,
        preset_count: int = 16,
        reply_delay: float = 0.0,
        completion_delay: float = 0.0,
        speed_scale: float = 1.0,
        positioning_time: float | None = None,
        powered: bool = True,
        version: Version = DEFAULT_VERSION,
    ) -> None:
        if pan_nibbles not in (4, 5):
            raise ValueError(f"pan_nibbles must be 4 or 5, got {pan_nibbles}")
        self.address = address
        self.pan_nibbles = pan_nibbles
        self.pan_speed_max = pan_speed_max
        self.tilt_speed_max = tilt_speed_max
        self.preset_count = preset_count
        self.reply_delay = reply_delay
        self.completion_delay = completion_delay
        self.speed_scale = speed_scale
        if positioning_time is not None and positioning_time <= 0:
            raise ValueError("positioning_time must be positive")
        self.positioning_time = positioning_time
        self.version = version
        self.powered = powered
        self.auto_focus = True
        self.responding = True
        """False: the camera is unplugged -- packets are ignored, nothing is sent."""
        self.pan = Axis(*pan_limits)
        self.tilt = Axis(*tilt_limits)
        self.zoom = Axis(*ZOOM_RANGE)
        self.focus = Axis(*FOCUS_RANGE, value=FOCUS_RANGE[0])
        self.presets: dict[int, Preset] = {}
        self.received: list[tuple[float, bytes]] = []
        self.sent: list[tuple[float, bytes]] = []
        self.executed: list[bytes] = []
        self.max_busy = 0
        self._jobs: dict[int, _Job] = {}
        self._pending: list[_Pending] = []
        self._order = itertools.count()

    # -- observation -------------------------------------------------------------------

    def position(self, now: float) -> PanTilt:
        return PanTilt(round(self.pan.at(now)), round(self.tilt.at(now)))

    def zoom_position(self, now: float) -> int:
        return round(self.zoom.at(now))

    def focus_position(self, now: float) -> int:
        return round(self.focus.at(now))

    @property
    def busy_sockets(self) -> list[int]:
        return sorted(self._jobs)

    # -- I/O-free interface ------------------------------------------------------------

    def receive(self, packet: bytes, now: float, reply_to: ReplyTo | None = None) -> None:
        """One packet from the controller (framed: header .. FF)."""
        if not self.responding:
            return
        self.received.append((now, packet))
        if packet[0] == BROADCAST:
            self._broadcast(packet, now, reply_to)
            return
        if packet[0] != 0x80 | self.address:
            return  # for another camera on the chain
        if len(packet) < 3 or packet[-1] != TERMINATOR:
            self._reply(now, reply_to, ErrorReply(0, ErrorCode.MESSAGE_LENGTH))
            return
        kind = packet[1]
        try:
            if kind == COMMAND:
                self._command(packet, now, reply_to)
            elif kind == INQUIRY:
                self._reply(now, reply_to, Completion(0, self._inquiry(packet, now)))
            elif kind in (0x21, 0x22) and len(packet) == 3:
                self._cancel(kind & 0x0F, now, reply_to)
            else:
                raise _SyntaxError
        except _SyntaxError:
            self._reply(now, reply_to, ErrorReply(0, ErrorCode.SYNTAX))

    def receive_overlong(self, now: float, reply_to: ReplyTo | None = None) -> None:
        """The framer dropped a packet longer than 16 bytes."""
        if self.responding:
            self._reply(now, reply_to, ErrorReply(0, ErrorCode.MESSAGE_LENGTH))

    def poll(self, now: float) -> list[tuple[ReplyTo | None, bytes]]:
        """Replies due by ``now``, oldest first, with where each must go."""
        for socket, job in list(self._jobs.items()):
            done = job.done_at()
            if done <= now:
                del self._jobs[socket]
                self._push(done, job.reply_to, Completion(socket).serialize(self.address))
        out: list[tuple[ReplyTo | None, bytes]] = []
        while self._pending and self._pending[0].due <= now:
            pending = heapq.heappop(self._pending)
            if self.responding:
                self.sent.append((now, pending.data))
                out.append((pending.reply_to, pending.data))
        return out

    def next_deadline(self) -> float | None:
        times = [job.done_at() for job in self._jobs.values()]
        if self._pending:
            times.append(self._pending[0].due)
        return min(times) if times else None

    # -- replies -----------------------------------------------------------------------

    def _push(self, due: float, reply_to: ReplyTo | None, data: bytes) -> None:
        heapq.heappush(self._pending, _Pending(due, next(self._order), reply_to, data))

    def _reply(
        self, now: float, reply_to: ReplyTo | None, reply: Ack | Completion | ErrorReply
    ) -> None:
        self._push(now + self.reply_delay, reply_to, reply.serialize(self.address))

    # -- commands ----------------------------------------------------------------------

    def _command(self, packet: bytes, now: float, reply_to: ReplyTo | None) -> None:
        action = self._decode(packet)  # _SyntaxError before anything else
        free = [socket for socket in (1, 2) if socket not in self._jobs]
        if not free:
            self._reply(now, reply_to, ErrorReply(0, ErrorCode.BUFFER_FULL))
            return
        socket = free[0]
        is_power = packet[2:4] == bytes((CAMERA, 0x00))
        try:
            if not self.powered and not is_power:
                raise _NotExecutable
            axes = action(now)
        except _NotExecutable:
            self._reply(now, reply_to, ErrorReply(socket, ErrorCode.NOT_EXECUTABLE))
            return
        self._reply(now, reply_to, Ack(socket))
        self.executed.append(packet)
        not_before = now + self.reply_delay + self.completion_delay
        self._jobs[socket] = _Job(socket, reply_to, axes, not_before)
        self.max_busy = max(self.max_busy, len(self._jobs))

    def _decode(self, packet: bytes) -> Callable[[float], tuple[Axis, ...]]:
        """Validate a command; returns what executing it does (and the axes to wait for)."""
        if len(packet) < 5:
            raise _SyntaxError
        category, code, body = packet[2], packet[3], packet[4:-1]
        handlers: dict[tuple[int, int], Callable[[bytes], Callable[[float], tuple[Axis, ...]]]]
        handlers = {
            (PAN_TILT, 0x01): self._drive,
            (PAN_TILT, 0x02): lambda b: self._position(b, relative=False),
            (PAN_TILT, 0x03): lambda b: self._position(b, relative=True),
            (PAN_TILT, 0x04): self._home,
            (PAN_TILT, 0x05): self._home,
            (CAMERA, 0x07): self._zoom,
            (CAMERA, 0x47): lambda b: self._direct(b, self.zoom, self._zoom_rate(7), manual=False),
            (CAMERA, 0x08): self._focus,
            (CAMERA, 0x48): lambda b: self._direct(b, self.focus, self._focus_rate(), manual=True),
            (CAMERA, 0x38): self._focus_mode,
            (CAMERA, 0x18): self._one_push,
            (CAMERA, 0x3F): self._preset,
            (CAMERA, 0x00): self._power,
        }
        handler = handlers.get((category, code))
        if handler is None:
            raise _SyntaxError
        return handler(body)

    def _speed(self, value: int, high: int) -> float:
        if not 1 <= value <= high:
            raise _SyntaxError
        return value * PAN_TILT_RATE * self.speed_scale

    def _zoom_rate(self, p: int) -> float:
        return (p + 1) / 8 * (ZOOM_RANGE[1] - ZOOM_RANGE[0]) * self.speed_scale

    def _focus_rate(self) -> float:
        return (FOCUS_RANGE[1] - FOCUS_RANGE[0]) / 2 * self.speed_scale

    def _claim(self, now: float, *axes: Axis) -> None:
        """Commands that drove these axes are finished: they complete now."""
        for socket, job in list(self._jobs.items()):
            if any(axis in job.axes for axis in axes):
                del self._jobs[socket]
                self._push(now, job.reply_to, Completion(socket).serialize(self.address))

    def _drive(self, body: bytes) -> Callable[[float], tuple[Axis, ...]]:
        if len(body) != 4 or body[2] not in (1, 2, 3) or body[3] not in (1, 2, 3):
            raise _SyntaxError
        pan_speed = self._speed(body[0], self.pan_speed_max)
        tilt_speed = self._speed(body[1], self.tilt_speed_max)
        pan_sign = {1: -1, 2: 1, 3: 0}[body[2]]
        tilt_sign = {1: 1, 2: -1, 3: 0}[body[3]]

        def run(now: float) -> tuple[Axis, ...]:
            self._claim(now, self.pan, self.tilt)
            self.pan.drive(now, pan_sign * pan_speed)
            self.tilt.drive(now, tilt_sign * tilt_speed)
            return ()

        return run

    def _nibbles(self, data: bytes, *, signed: bool = True) -> int:
        try:
            return decode_nibbles(data, signed=signed)
        except ValueError:
            raise _SyntaxError from None

    def _position(self, body: bytes, *, relative: bool) -> Callable[[float], tuple[Axis, ...]]:
        n = self.pan_nibbles
        if len(body) != 2 + n + 4:
            raise _SyntaxError
        pan_speed = self._speed(body[0], self.pan_speed_max)
        if n == 5:
            if body[1] != 0:
                raise _SyntaxError
            tilt_speed = self._speed(body[0], self.pan_speed_max)
        else:
            tilt_speed = self._speed(body[1], self.tilt_speed_max)
        pan = self._nibbles(body[2 : 2 + n])
        tilt = self._nibbles(body[2 + n :])

        def run(now: float) -> tuple[Axis, ...]:
            self._claim(now, self.pan, self.tilt)
            base_pan = self.pan.at(now) if relative else 0.0
            base_tilt = self.tilt.at(now) if relative else 0.0
            self.pan.move_to(now, base_pan + pan, pan_speed)
            self.tilt.move_to(now, base_tilt + tilt, tilt_speed)
            return (self.pan, self.tilt)

        return run

    def _home(self, body: bytes) -> Callable[[float], tuple[Axis, ...]]:
        if body:
            raise _SyntaxError
        return lambda now: self._go(now, Preset(0, 0, 0, 0), lens=False)

    def _go(self, now: float, where: Preset, *, lens: bool = True) -> tuple[Axis, ...]:
        """Pan and tilt (and zoom and manual focus, with ``lens``) to ``where``, fastest."""
        self._claim(now, self.pan, self.tilt, *((self.zoom,) if lens else ()))
        self._travel(now, self.pan, where.pan, self._speed(self.pan_speed_max, self.pan_speed_max))
        self._travel(now, self.tilt, where.tilt,
                     self._speed(self.tilt_speed_max, self.tilt_speed_max))
        if not lens:
            return (self.pan, self.tilt)
        self._travel(now, self.zoom, where.zoom, self._zoom_rate(7))
        if not self.auto_focus:
            self._travel(now, self.focus, where.focus, self._focus_rate())
        return (self.pan, self.tilt, self.zoom)

    def _travel(self, now: float, axis: Axis, target: float, speed: float) -> None:
        """Move ``axis`` to ``target`` at ``speed``, or in ``positioning_time`` if set."""
        if self.positioning_time is not None:
            speed = abs(target - axis.at(now)) / self.positioning_time
        axis.move_to(now, target, speed)

    def _zoom(self, body: bytes) -> Callable[[float], tuple[Axis, ...]]:
        if len(body) != 1:
            raise _SyntaxError
        value = body[0]
        if value == 0x00:
            velocity = 0.0
        elif value in (0x02, 0x03):
            velocity = self._zoom_rate(STANDARD_ZOOM_SPEED) * (1 if value == 0x02 else -1)
        elif value >> 4 in (2, 3) and value & 0x0F <= 7:
            velocity = self._zoom_rate(value & 0x0F) * (1 if value >> 4 == 2 else -1)
        else:
            raise _SyntaxError

        def run(now: float) -> tuple[Axis, ...]:
            self._claim(now, self.zoom)
            self.zoom.drive(now, velocity)
            return ()

        return run

    def _direct(
        self, body: bytes, axis: Axis, rate: float, *, manual: bool
    ) -> Callable[[float], tuple[Axis, ...]]:
        if len(body) != 4:
            raise _SyntaxError
        target = self._nibbles(body, signed=False)

        def run(now: float) -> tuple[Axis, ...]:
            if manual and self.auto_focus:
                raise _NotExecutable
            self._claim(now, axis)
            axis.move_to(now, target, rate)
            return (axis,)

        return run

    def _focus(self, body: bytes) -> Callable[[float], tuple[Axis, ...]]:
        if len(body) != 1 or body[0] not in (0x00, 0x02, 0x03):
            raise _SyntaxError
        sign = {0x00: 0, 0x02: -1, 0x03: 1}[body[0]]  # far: towards 0x1000 (infinity)

        def run(now: float) -> tuple[Axis, ...]:
            if self.auto_focus:
                raise _NotExecutable
            self._claim(now, self.focus)
            self.focus.drive(now, sign * self._focus_rate())
            return ()

        return run

    def _focus_mode(self, body: bytes) -> Callable[[float], tuple[Axis, ...]]:
        if body not in (b"\x02", b"\x03"):
            raise _SyntaxError

        def run(now: float) -> tuple[Axis, ...]:
            self.auto_focus = body == b"\x02"
            if self.auto_focus:
                self._claim(now, self.focus)
                self.focus.stop(now)
            return ()

        return run

    def _one_push(self, body: bytes) -> Callable[[float], tuple[Axis, ...]]:
        if body != b"\x01":
            raise _SyntaxError
        return lambda now: ()

    def _preset(self, body: bytes) -> Callable[[float], tuple[Axis, ...]]:
        if len(body) != 2 or body[0] not in (0, 1, 2) or body[1] >= self.preset_count:
            raise _SyntaxError
        action, number = body

        def run(now: float) -> tuple[Axis, ...]:
            if action == 0x00:
                self.presets.pop(number, None)
                return ()
            if action == 0x01:
                self.presets[number] = Preset(
                    self.pan.at(now), self.tilt.at(now), self.zoom.at(now), self.focus.at(now)
                )
                return ()
            where = self.presets.get(number, Preset(0, 0, ZOOM_RANGE[0], FOCUS_RANGE[0]))
            return self._go(now, where)

        return run

    def _power(self, body: bytes) -> Callable[[float], tuple[Axis, ...]]:
        if body not in (b"\x02", b"\x03"):
            raise _SyntaxError

        def run(now: float) -> tuple[Axis, ...]:
            on = body == b"\x02"
            if not on:
                self._claim(now, self.pan, self.tilt, self.zoom, self.focus)
                for axis in (self.pan, self.tilt, self.zoom, self.focus):
                    axis.stop(now)
            self.powered = on
            return ()

        return run

    # -- inquiries, cancel, broadcasts -------------------------------------------------

    def _inquiry(self, packet: bytes, now: float) -> bytes:
        key = packet[2:-1]
        if key == bytes((CAMERA, 0x00)):
            return encode_power(self.powered)
        if key == bytes((CAMERA, 0x47)):
            return encode_nibbles(self.zoom_position(now), 4, signed=False)
        if key == bytes((CAMERA, 0x48)):
            return encode_nibbles(self.focus_position(now), 4, signed=False)
        if key == bytes((PAN_TILT, 0x12)):
            return encode_pan_tilt(self.position(now), self.pan_nibbles)
        if key == bytes((INTERFACE, 0x02)):
            return self.version.serialize()
        raise _SyntaxError

    def _cancel(self, socket: int, now: float, reply_to: ReplyTo | None) -> None:
        job = self._jobs.pop(socket, None)
        if job is None:
            self._reply(now, reply_to, ErrorReply(socket, ErrorCode.NO_SOCKET))
            return
        for axis in job.axes:
            axis.stop(now)
        self._reply(now, reply_to, ErrorReply(socket, ErrorCode.CANCELLED))

    def _broadcast(self, packet: bytes, now: float, reply_to: ReplyTo | None) -> None:
        if len(packet) == 4 and packet[1] == 0x30 and 1 <= packet[2] <= 7:
            self.address = packet[2]
            reply = AddressSetReply(packet[2] + 1).serialize()
        elif packet == if_clear():
            self._jobs.clear()  # buffers emptied; their commands never complete
            reply = packet
        else:
            return
        self._push(now + self.reply_delay, reply_to, reply)
