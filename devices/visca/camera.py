"""PtzCamera: the asyncio API the application steers a VISCA camera with.

A thin shell: :class:`~devices.visca.session.ViscaSession` decides what is sent when,
a :class:`~devices.visca.transport.ViscaTransport` carries the bytes, and this class
turns session events into awaited results and exceptions. It also watches the camera:
a command without ACK (or an inquiry without reply) marks it offline, which fails what
is pending with :class:`CameraOffline`; every ``probe_interval`` it reconnects and asks
for the power state until the camera answers again (and, while online and idle, asks
the same to notice a camera that went quiet).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from devices.visca.codec import (
    EVI_D70,
    AddressSetReply,
    CameraProfile,
    CommandSet,
    Direction,
    PanTilt,
    Version,
    address_set,
    decode_focus_position,
    decode_pan_tilt,
    decode_power,
    decode_version,
    decode_zoom_position,
    if_clear,
    parse_broadcast_reply,
)
from devices.visca.errors import (
    CameraOffline,
    MalformedReply,
    ViscaCommandError,
    ViscaError,
    ViscaTimeout,
)
from devices.visca.session import (
    Acked,
    Completed,
    Failed,
    SendPacket,
    SessionEvent,
    ViscaSession,
)
from devices.visca.transport import ViscaTransport

logger = logging.getLogger(__name__)

ZOOM_SPEEDS = 8
StateCallback = Callable[[bool], None]


def _scale(value: float, top: int, axis: str) -> int:
    """-1..1 onto -top..top, never rounding a non-zero value down to 0."""
    if not -1.0 <= value <= 1.0:  # also refuses NaN
        raise ValueError(f"{axis} must be -1..1, got {value}")
    if value == 0:
        return 0
    return int(math.copysign(max(1, round(abs(value) * top)), value))


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a failed future's exception as seen (nobody may be waiting for it)."""
    if not future.cancelled():
        future.exception()


@dataclass(eq=False)
class Submitted:
    """A command handed to flow control: ``accepted`` resolves to its socket on the ACK
    (or fails: refused, timeout, offline); ``done`` resolves on its completion (or fails:
    cancelled, refused while executing, timeout). Awaiting either never cancels the
    command; :meth:`PtzCamera.cancel` does."""

    request_id: int
    packet: bytes
    accepted: asyncio.Future[int]
    done: asyncio.Future[bytes]


class _Sink:
    """What the transport reports, forwarded to the camera (keeps those methods private)."""

    def __init__(self, camera: PtzCamera) -> None:
        self._camera = camera

    def packet_received(self, packet: bytes) -> None:
        self._camera._packet_received(packet)

    def reply_lost(self) -> None:
        self._camera._reply_lost()

    def message_rejected(self, error: ViscaError) -> None:
        self._camera._message_rejected(error)

    def connection_lost(self, exc: Exception | None) -> None:
        self._camera._connection_lost(exc)


class PtzCamera:
    """One VISCA PTZ camera behind one transport.

    Speeds are VISCA units: pan 1..``profile.pan_speed_max`` (0x18), tilt
    1..``profile.tilt_speed_max`` (0x17); positions are the camera's own units.
    Moves that end somewhere (absolute, relative, home, reset, zoom_to, focus_to,
    preset_recall, power on) return when the camera reports completion, and cancelling
    the awaiting task cancels the command in the camera. Errors: :class:`ViscaTimeout`,
    :class:`ViscaCommandError` (``code_name``), :class:`CameraOffline`; bad arguments
    raise ValueError before anything is sent.
    """

    def __init__(
        self,
        transport: ViscaTransport,
        *,
        address: int = 1,
        profile: CameraProfile = EVI_D70,
        ack_timeout: float = 1.0,
        completion_timeout: float = 5.0,
        move_timeout: float = 60.0,
        probe_interval: float = 3.0,
        initialise_chain: bool | None = None,
        on_state_change: StateCallback | None = None,
        name: str = "ptz",
    ) -> None:
        """``on_state_change(online)`` is called (on the event loop, so it must not block)
        whenever the camera is found online or offline, the first time included."""
        if transport.fixed_address is not None and address != transport.fixed_address:
            raise ValueError(f"{transport!r} reaches camera address {transport.fixed_address} only")
        if probe_interval <= 0 or move_timeout <= 0:
            raise ValueError("probe interval and move timeout must be positive")
        self.name = name
        self.commands = CommandSet(address, profile)
        self.move_timeout = move_timeout
        self.probe_interval = probe_interval
        self.on_state_change = on_state_change
        self._transport = transport
        self._initialise_chain = (
            transport.broadcast if initialise_chain is None else initialise_chain
        )
        self._session = ViscaSession(
            address, ack_timeout=ack_timeout, completion_timeout=completion_timeout
        )
        self._sink = _Sink(self)
        self._waiters: dict[int, asyncio.Future[bytes]] = {}
        self._accepted: dict[int, asyncio.Future[int]] = {}
        self._online: bool | None = None
        self._closed = False
        self._timer: asyncio.TimerHandle | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._last_heard = -math.inf
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle and state -----------------------------------------------------------

    @property
    def address(self) -> int:
        return self.commands.address

    @property
    def profile(self) -> CameraProfile:
        return self.commands.profile

    @property
    def online(self) -> bool:
        return bool(self._online)

    @property
    def closed(self) -> bool:
        return self._closed

    async def open(self) -> None:
        """Connect and probe once, then keep watching. An unreachable camera is reported
        offline (never raised) and re-probed every ``probe_interval``."""
        if self._closed:
            raise CameraOffline(f"camera {self.name} is closed")
        if self._loop is not None:
            return  # already open (or opening)
        self._loop = asyncio.get_running_loop()
        await self._connect()
        if not self._closed:
            self._supervisor = asyncio.create_task(self._supervise(), name=f"visca-{self.name}")

    async def close(self) -> None:
        """Fail what is pending, stop probing, release the transport. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._online = False  # no callback: the owner closed it
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        self._session.abort(CameraOffline(f"camera {self.name} is closed"))
        if self._loop is not None:
            self._pump()
        if self._timer is not None:
            self._timer.cancel()
        await self._transport.close()

    async def __aenter__(self) -> PtzCamera:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- pan, tilt, zoom ---------------------------------------------------------------

    async def move(self, pan_speed: int = 0, tilt_speed: int = 0, zoom_speed: int = 0) -> None:
        """Continuous pan, tilt and zoom until :meth:`stop` (or a limit).

        pan_speed > 0 pans right, < 0 left; tilt_speed > 0 tilts up, < 0 down; 0 holds
        the axis. zoom_speed in -8..8: > 0 zooms in (tele), < 0 out (wide), 0 stops the
        zoom; its magnitude 1..8 is VISCA zoom speed 0 (slow)..7 (fast).
        """
        await self._all([self._drive_packet(pan_speed, tilt_speed), self._zoom_packet(zoom_speed)])

    async def move_normalised(self, pan: float, tilt: float, zoom: float = 0.0) -> None:
        """:meth:`move` with each axis in -1..1: the sign is the direction, the magnitude
        the fraction of the top speed (any non-zero value moves at least at the slowest)."""
        await self.move(
            _scale(pan, self.profile.pan_speed_max, "pan"),
            _scale(tilt, self.profile.tilt_speed_max, "tilt"),
            _scale(zoom, ZOOM_SPEEDS, "zoom"),
        )

    async def pan_tilt(self, pan_speed: int, tilt_speed: int) -> None:
        """Continuous pan-tilt only (signs as in :meth:`move`); both 0 stops it."""
        await self.request(self._drive_packet(pan_speed, tilt_speed))

    async def zoom(self, speed: int) -> None:
        """Continuous zoom only (as ``zoom_speed`` in :meth:`move`); 0 stops it."""
        await self.request(self._zoom_packet(speed))

    async def stop(self) -> None:
        """Stop pan, tilt and zoom."""
        await self._all([self.commands.pan_tilt_stop(), self.commands.zoom_stop()])

    async def absolute(
        self, pan: int, tilt: int, *, pan_speed: int | None = None, tilt_speed: int | None = None
    ) -> None:
        """Move to (pan, tilt); fastest unless speeds are given."""
        await self._move(self.commands.absolute(pan, tilt, *self._speeds(pan_speed, tilt_speed)))

    async def relative(
        self, pan: int, tilt: int, *, pan_speed: int | None = None, tilt_speed: int | None = None
    ) -> None:
        """Move by (pan, tilt) from where the camera is."""
        await self._move(self.commands.relative(pan, tilt, *self._speeds(pan_speed, tilt_speed)))

    async def home(self) -> None:
        await self._move(self.commands.home())

    async def reset(self) -> None:
        """Pan-tilt reset (the camera re-initialises its pan and tilt)."""
        await self._move(self.commands.pan_tilt_reset())

    async def position(self) -> PanTilt:
        payload = await self.request(self.commands.pan_tilt_position_inquiry())
        return decode_pan_tilt(payload, self.profile.pan_nibbles)

    async def zoom_to(self, position: int) -> None:
        await self._move(self.commands.zoom_direct(position))

    async def zoom_position(self) -> int:
        return decode_zoom_position(await self.request(self.commands.zoom_position_inquiry()))

    # -- focus -------------------------------------------------------------------------

    async def focus_auto(self) -> None:
        await self.request(self.commands.auto_focus())

    async def focus_manual(self) -> None:
        await self.request(self.commands.manual_focus())

    async def focus_one_push(self) -> None:
        await self.request(self.commands.one_push_af())

    async def focus_far(self) -> None:
        await self.request(self.commands.focus_far())

    async def focus_near(self) -> None:
        await self.request(self.commands.focus_near())

    async def focus_stop(self) -> None:
        await self.request(self.commands.focus_stop())

    async def focus_to(self, position: int) -> None:
        await self._move(self.commands.focus_direct(position))

    async def focus_position(self) -> int:
        return decode_focus_position(await self.request(self.commands.focus_position_inquiry()))

    # -- presets, power, version -------------------------------------------------------

    async def preset_set(self, number: int) -> None:
        await self.request(self.commands.preset_set(number))

    async def preset_recall(self, number: int) -> None:
        await self._move(self.commands.preset_recall(number))

    async def preset_reset(self, number: int) -> None:
        await self.request(self.commands.preset_reset(number))

    async def power(self, on: bool) -> None:
        """Power on (returns once the camera is up) or standby."""
        if on:
            await self._move(self.commands.power_on())
        else:
            await self.request(self.commands.power_standby())

    async def power_state(self) -> bool:
        """True when on, False in standby."""
        return decode_power(await self.request(self.commands.power_inquiry()))

    async def version(self) -> Version:
        return decode_version(await self.request(self.commands.version_inquiry()))

    async def initialise_chain(self) -> int:
        """Broadcast Address Set then IF_Clear (serial daisy chains); returns the number
        of cameras on the chain."""
        if self._closed:
            raise CameraOffline(f"camera {self.name} is closed")
        reply = parse_broadcast_reply(await self._exchange(address_set(), None))
        if not isinstance(reply, AddressSetReply):
            raise ViscaError("address set was answered with an IF_Clear reply")
        if self.address > reply.cameras:
            raise ViscaError(f"camera {self.address} is not on a chain of {reply.cameras}")
        await self._exchange(if_clear(), None)
        return reply.cameras

    async def request(self, packet: bytes, *, completion_timeout: float | None = None) -> bytes:
        """Send any VISCA packet through flow control; returns an inquiry's payload."""
        self._check_usable()
        return await self._exchange(packet, completion_timeout)

    def submit(self, packet: bytes, *, completion_timeout: float | None = None) -> Submitted:
        """Queue a command now (in call order) without waiting; see :class:`Submitted`.

        Raises :class:`CameraOffline` at once when the camera is offline or closed."""
        self._check_usable()
        loop = self._loop or asyncio.get_running_loop()
        request_id = self._session.submit(packet, loop.time(), completion_timeout)
        accepted: asyncio.Future[int] = loop.create_future()
        done: asyncio.Future[bytes] = loop.create_future()
        accepted.add_done_callback(_retrieve)
        done.add_done_callback(_retrieve)
        self._accepted[request_id] = accepted
        self._waiters[request_id] = done

        def forget(_: asyncio.Future[bytes]) -> None:
            self._accepted.pop(request_id, None)
            self._waiters.pop(request_id, None)

        done.add_done_callback(forget)
        self._pump()
        return Submitted(request_id, packet, accepted, done)

    def cancel(self, submitted: Submitted) -> None:
        """Withdraw a queued command, or cancel it in the camera (Command Cancel on its
        socket) once it executes; its ``done`` then fails with "cancelled"."""
        if submitted.done.done() or self._closed or self._loop is None:
            return
        self._session.cancel(submitted.request_id, self._loop.time())
        self._pump()

    def drive_packets(self, pan: float, tilt: float, zoom: float) -> list[bytes]:
        """The commands of :meth:`move_normalised` (pan-tilt, then zoom)."""
        return [
            self._drive_packet(_scale(pan, self.profile.pan_speed_max, "pan"),
                               _scale(tilt, self.profile.tilt_speed_max, "tilt")),
            self._zoom_packet(_scale(zoom, ZOOM_SPEEDS, "zoom")),
        ]

    def stop_packets(self) -> list[bytes]:
        """The commands of :meth:`stop` (pan-tilt stop, zoom stop)."""
        return [self.commands.pan_tilt_stop(), self.commands.zoom_stop()]

    # -- building packets --------------------------------------------------------------

    def _drive_packet(self, pan_speed: int, tilt_speed: int) -> bytes:
        if pan_speed == 0 and tilt_speed == 0:
            return self.commands.pan_tilt_stop()
        direction = Direction.from_signs(pan_speed, tilt_speed)
        return self.commands.drive(direction, abs(pan_speed) or 1, abs(tilt_speed) or 1)

    def _zoom_packet(self, speed: int) -> bytes:
        if not -ZOOM_SPEEDS <= speed <= ZOOM_SPEEDS:
            raise ValueError(f"zoom speed must be -{ZOOM_SPEEDS}..{ZOOM_SPEEDS}, got {speed}")
        if speed == 0:
            return self.commands.zoom_stop()
        if speed > 0:
            return self.commands.zoom_tele(speed - 1)
        return self.commands.zoom_wide(-speed - 1)

    def _speeds(self, pan_speed: int | None, tilt_speed: int | None) -> tuple[int, int]:
        return (
            self.profile.pan_speed_max if pan_speed is None else pan_speed,
            self.profile.tilt_speed_max if tilt_speed is None else tilt_speed,
        )

    # -- requests ----------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._closed:
            raise CameraOffline(f"camera {self.name} is closed")
        if not self._online:
            raise CameraOffline(f"camera {self.name} is offline")

    async def _move(self, packet: bytes) -> None:
        await self.request(packet, completion_timeout=self.move_timeout)

    async def _all(self, packets: Sequence[bytes]) -> None:
        """Queue several commands at once (they go in order) and wait for all of them."""
        self._check_usable()
        tasks = [asyncio.ensure_future(self._exchange(packet, None)) for packet in packets]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _exchange(self, packet: bytes, completion_timeout: float | None) -> bytes:
        loop = asyncio.get_running_loop()
        request_id = self._session.submit(packet, loop.time(), completion_timeout)
        future: asyncio.Future[bytes] = loop.create_future()
        self._waiters[request_id] = future
        self._pump()
        try:
            return await future
        except asyncio.CancelledError:
            if request_id in self._waiters:
                self._session.cancel(request_id, loop.time())
                self._pump()
            raise
        finally:
            self._waiters.pop(request_id, None)

    def _pump(self) -> None:
        """Run the session: send what it allows, settle futures, re-arm the timer."""
        loop = self._loop or asyncio.get_running_loop()
        while True:
            silent: str | None = None
            for event in self._session.poll(loop.time()):
                silent = self._handle(event) or silent
            if silent is None:
                break
            self._went_offline(silent)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self._session.next_deadline()
        if deadline is not None and not self._closed:
            self._timer = loop.call_at(deadline, self._pump)

    def _handle(self, event: SessionEvent) -> str | None:
        """Apply one session event; returns a reason when it shows the camera is silent."""
        match event:
            case SendPacket(_, packet):
                logger.debug("[%s] -> %s", self.name, packet.hex(" "))
                try:
                    self._transport.send(packet)
                except OSError as exc:
                    return f"send failed: {exc}"
            case Acked(request_id, socket):
                accepted = self._accepted.get(request_id)
                if accepted is not None and not accepted.done():
                    accepted.set_result(socket)
            case Completed(request_id, payload):
                accepted = self._accepted.get(request_id)
                if accepted is not None and not accepted.done():
                    accepted.set_result(0)
                future = self._waiters.get(request_id)
                if future is not None and not future.done():
                    future.set_result(payload)
            case Failed(request_id, error):
                accepted = self._accepted.get(request_id)
                if accepted is not None and not accepted.done():
                    accepted.set_exception(error)
                future = self._waiters.get(request_id)
                if future is not None and not future.done():
                    future.set_exception(error)
                if isinstance(error, ViscaTimeout) and error.waiting_for != "completion":
                    return str(error)
        return None

    # -- what the transport reports ----------------------------------------------------

    def _packet_received(self, packet: bytes) -> None:
        loop = asyncio.get_running_loop()
        self._last_heard = loop.time()
        logger.debug("[%s] <- %s", self.name, packet.hex(" "))
        try:
            self._session.packet_received(packet, loop.time())
        except ValueError as exc:
            # The camera answered, but unreadably: what waits for that answer fails now
            # (a clear error rather than a timeout that would mark the camera offline).
            logger.warning("[%s] malformed reply %s: %s", self.name, packet.hex(" "), exc)
            self._session.fail_in_transit(MalformedReply(str(exc)), loop.time())
        self._pump()

    def _reply_lost(self) -> None:
        self._session.reply_lost(asyncio.get_running_loop().time())
        self._pump()

    def _message_rejected(self, error: ViscaError) -> None:
        self._session.fail_in_transit(error, asyncio.get_running_loop().time())
        self._pump()

    def _connection_lost(self, exc: Exception | None) -> None:
        self._went_offline("connection lost" if exc is None else f"connection lost: {exc}")
        asyncio.get_running_loop().call_soon(self._pump)  # may be reported from inside _pump

    # -- online / offline --------------------------------------------------------------

    def _set_online(self, online: bool, reason: str = "") -> None:
        if self._online is online or self._closed:
            return
        self._online = online
        if online:
            logger.info("[%s] camera online", self.name)
        else:
            logger.info("[%s] camera offline: %s", self.name, reason)
        if self.on_state_change is not None:
            try:
                self.on_state_change(online)
            except Exception:
                logger.exception("[%s] camera state callback failed", self.name)

    def _went_offline(self, reason: str) -> None:
        self._set_online(False, reason)
        self._session.abort(CameraOffline(f"camera {self.name} is offline: {reason}"))

    async def _connect(self) -> None:
        """(Re)open the transport and probe; any failure leaves the camera offline."""
        try:
            await self._transport.close()
            await self._transport.open(self._sink)
            if self._initialise_chain:
                await self.initialise_chain()
            await self._probe()
        except (OSError, ViscaError) as exc:
            logger.debug("[%s] connect failed: %r", self.name, exc)
            await self._transport.close()
            self._went_offline(str(exc) or type(exc).__name__)
            self._pump()

    async def _probe(self) -> None:
        """Ask for the power state; an answer of any kind means the camera is there."""
        with contextlib.suppress(ViscaCommandError):
            await self._exchange(self.commands.power_inquiry(), None)
        self._set_online(True)

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.probe_interval)
            try:
                if not self._online:
                    await self._connect()
                elif self._session.idle and loop.time() - self._last_heard >= self.probe_interval:
                    await self._probe()
            except ViscaError as exc:
                logger.debug("[%s] probe failed: %r", self.name, exc)
            except Exception:
                logger.exception("[%s] camera supervision failed; retrying", self.name)
