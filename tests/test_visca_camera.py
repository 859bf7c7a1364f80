"""PtzCamera against the simulated camera over a real pty (pyserial on the slave side):
the whole API, flow control, error replies, timeouts, cancel, offline and back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from devices.visca import (
    CameraOffline,
    PanTilt,
    PtzCamera,
    SerialTransport,
    ViscaCommandError,
    ViscaTimeout,
)
from devices.visca.codec import ErrorCode, address_set, if_clear
from devices.visca.simulated_camera import SimulatedCamera
from devices.visca.simulator import CameraSimulator


async def eventually(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def first_time(log: list[tuple[float, bytes]], packet: bytes) -> float:
    return next(t for t, data in log if data == packet)


class Rig:
    """A simulated camera on a pty and the driver on its slave, with a state log."""

    def __init__(self, simulator: CameraSimulator) -> None:
        self.simulator = simulator
        self.sim = simulator.camera
        self.states: list[bool] = []
        self.cameras: list[PtzCamera] = []

    async def camera(self, **options: object) -> PtzCamera:
        path = await self.simulator.open_pty()
        settings: dict[str, object] = {
            "ack_timeout": 1.0, "probe_interval": 0.05, "on_state_change": self.states.append,
        }
        settings.update(options)
        camera = PtzCamera(SerialTransport(path, 38400), **settings)  # type: ignore[arg-type]
        self.cameras.append(camera)
        await camera.open()
        return camera


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with CameraSimulator(SimulatedCamera()) as simulator:
        rig = Rig(simulator)
        yield rig
        for camera in rig.cameras:
            await camera.close()


async def test_the_whole_api_over_a_pty(rig: Rig) -> None:
    rig.sim.speed_scale = 4.0
    camera = await rig.camera()
    assert camera.online and rig.states == [True]
    # The serial chain is initialised before anything else, then the power is asked.
    received = [packet for _, packet in rig.sim.received]
    assert received[:3] == [address_set(), if_clear(), h("81 09 04 00 FF")]
    assert (await camera.version()).vendor == 0x0020
    assert await camera.position() == PanTilt(0, 0)

    await camera.move(pan_speed=10, tilt_speed=-5, zoom_speed=8)
    await asyncio.sleep(0.1)
    moving = await camera.position()
    assert moving.pan > 0 and moving.tilt < 0 and await camera.zoom_position() > 0
    await camera.stop()
    stopped = await camera.position()
    await asyncio.sleep(0.05)
    assert await camera.position() == stopped
    await camera.pan_tilt(-3, 0)
    await camera.zoom(-1)
    await asyncio.sleep(0.05)
    assert (await camera.position()).pan < stopped.pan
    await camera.stop()

    await camera.absolute(300, 200)
    assert await camera.position() == PanTilt(300, 200)
    await camera.relative(-100, -50, pan_speed=0x10, tilt_speed=0x10)
    assert await camera.position() == PanTilt(200, 150)
    await camera.zoom_to(0x1000)
    assert await camera.zoom_position() == 0x1000

    with pytest.raises(ViscaCommandError) as refused:
        await camera.focus_far()  # manual focus under autofocus
    assert refused.value.code_name == "NOT_EXECUTABLE"
    await camera.focus_manual()
    await camera.focus_to(0x5000)
    assert await camera.focus_position() == 0x5000
    await camera.focus_near()
    await camera.focus_stop()
    await camera.focus_auto()
    await camera.focus_one_push()

    await camera.preset_set(2)
    await camera.home()
    assert await camera.position() == PanTilt(0, 0)
    await camera.preset_recall(2)
    assert await camera.position() == PanTilt(200, 150)
    assert await camera.zoom_position() == 0x1000
    await camera.preset_reset(2)
    await camera.reset()
    assert await camera.position() == PanTilt(0, 0)

    await camera.power(False)
    assert await camera.power_state() is False
    with pytest.raises(ViscaCommandError) as standby:
        await camera.home()
    assert standby.value.code is ErrorCode.NOT_EXECUTABLE
    await camera.power(True)
    assert await camera.power_state() is True
    assert camera.online and rig.states == [True]


async def test_error_replies_and_bad_arguments(rig: Rig) -> None:
    camera = await rig.camera()
    with pytest.raises(ViscaCommandError) as syntax:
        await camera.request(h("81 01 04 99 FF"))
    assert syntax.value.code is ErrorCode.SYNTAX and "syntax error (SYNTAX)" in str(syntax.value)
    sent_before = len(rig.sim.received)
    bad_calls: list[Callable[[], Awaitable[None]]] = [
        lambda: camera.move(pan_speed=0x19), lambda: camera.move(tilt_speed=-0x18),
        lambda: camera.zoom(9), lambda: camera.preset_recall(16),
        lambda: camera.absolute(0x8000, 0),
    ]
    for bad in bad_calls:
        with pytest.raises(ValueError):
            await bad()
    assert len(rig.sim.received) == sent_before  # nothing went out
    assert camera.online


async def test_the_next_command_waits_for_the_previous_ack(rig: Rig) -> None:
    rig.sim.reply_delay = 0.05
    camera = await rig.camera()
    zoom, focus = camera.commands.zoom_tele(3), camera.commands.manual_focus()
    await asyncio.gather(camera.request(zoom), camera.request(focus))
    ack_sent = next(t for t, data in rig.sim.sent if data[1] >> 4 == 4 and t > 0)
    assert first_time(rig.sim.received, focus) - first_time(rig.sim.received, zoom) >= 0.05
    assert first_time(rig.sim.received, focus) >= ack_sent


async def test_at_most_two_commands_in_flight(rig: Rig) -> None:
    rig.sim.completion_delay = 0.1
    camera = await rig.camera()
    started = time.monotonic()
    await asyncio.gather(*(camera.preset_set(n) for n in range(5)))
    assert time.monotonic() - started >= 0.2  # three rounds of two sockets
    assert rig.sim.max_busy == 2
    assert sorted(rig.sim.presets) == [0, 1, 2, 3, 4]
    assert not [data for _, data in rig.sim.sent if data == h("90 60 03 FF")]


async def test_completion_timeout_keeps_the_camera_online(rig: Rig) -> None:
    rig.sim.completion_delay = 0.3
    camera = await rig.camera(completion_timeout=0.1)
    with pytest.raises(ViscaTimeout) as timeout:
        await camera.preset_set(1)
    assert timeout.value.waiting_for == "completion"
    assert camera.online and rig.states == [True]


async def test_a_silent_camera_goes_offline_and_comes_back(rig: Rig) -> None:
    camera = await rig.camera(ack_timeout=0.15)
    rig.sim.responding = False
    inquiry = asyncio.ensure_future(camera.position())
    queued = asyncio.ensure_future(camera.home())
    with pytest.raises(ViscaTimeout) as timeout:
        await inquiry
    assert timeout.value.waiting_for == "reply"
    with pytest.raises(CameraOffline):
        await queued
    assert not camera.online and rig.states == [True, False]
    with pytest.raises(CameraOffline, match="offline"):
        await camera.home()  # refused at once, nothing sent
    rig.sim.responding = True
    await eventually(lambda: camera.online)
    assert rig.states == [True, False, True]
    await camera.absolute(10, 10)
    assert await camera.position() == PanTilt(10, 10)


async def test_an_idle_camera_that_goes_silent_is_noticed(rig: Rig) -> None:
    camera = await rig.camera(ack_timeout=0.2)
    rig.sim.responding = False
    await eventually(lambda: not camera.online)  # by the periodic power inquiry
    rig.sim.responding = True
    await eventually(lambda: camera.online)
    assert rig.states == [True, False, True]


async def test_a_missing_command_ack_is_a_timeout(rig: Rig) -> None:
    camera = await rig.camera(ack_timeout=0.1)
    rig.sim.responding = False
    with pytest.raises(ViscaTimeout) as timeout:
        await camera.home()
    assert timeout.value.waiting_for == "ack" and "0.1 s" in str(timeout.value)


async def test_camera_unreachable_at_open_is_reported_offline(rig: Rig) -> None:
    rig.sim.responding = False
    camera = await rig.camera(ack_timeout=0.1)
    assert not camera.online and rig.states == [False]
    rig.sim.responding = True
    await eventually(lambda: camera.online)
    assert await camera.power_state() is True


async def test_cancelling_a_move_waits_200ms_and_holds_the_next_drive(rig: Rig) -> None:
    camera = await rig.camera()
    move = asyncio.ensure_future(camera.absolute(2000, 0, pan_speed=1, tilt_speed=1))
    await asyncio.sleep(0.05)
    move.cancel()
    with pytest.raises(asyncio.CancelledError):
        await move
    cancel = h("81 21 FF")
    await eventually(lambda: any(data == h("90 61 04 FF") for _, data in rig.sim.sent))
    absolute = next(t for t, data in rig.sim.received if data[2:4] == h("06 02"))
    assert first_time(rig.sim.received, cancel) - absolute >= 0.2
    where = await camera.position()
    assert 0 < where.pan < 2000
    await camera.pan_tilt(1, 0)
    drive = next(t for t, data in rig.sim.received if data[2:4] == h("06 01"))
    assert drive - first_time(rig.sim.sent, h("90 61 04 FF")) >= 0.2
    await camera.stop()


async def test_a_lost_port_takes_the_camera_offline(rig: Rig) -> None:
    camera = await rig.camera()
    await rig.simulator.close()  # the line goes dead
    await eventually(lambda: not camera.online)
    with pytest.raises(CameraOffline):
        await camera.position()


async def test_close_is_idempotent_and_final(rig: Rig) -> None:
    camera = await rig.camera()
    pending = asyncio.ensure_future(camera.absolute(2000, 0, pan_speed=1, tilt_speed=1))
    await asyncio.sleep(0.02)
    await camera.close()
    await camera.close()
    with pytest.raises(CameraOffline, match="closed"):
        await pending
    with pytest.raises(CameraOffline, match="closed"):
        await camera.position()
    with pytest.raises(CameraOffline, match="closed"):
        await camera.open()
    assert camera.closed


async def test_submit_resolves_on_the_ack_and_cancel_halts_the_move_in_the_camera(
        rig: Rig) -> None:
    """submit(): ``accepted`` on the ACK, ``done`` on completion; cancel() sends Command
    Cancel on the socket the ACK named and ``done`` fails with "cancelled"."""
    rig.sim.positioning_time = 5.0
    rig.sim.pan.value = 1000
    camera = await rig.camera()
    home = camera.submit(camera.commands.home(), completion_timeout=10)
    socket = await asyncio.wait_for(home.accepted, 1)
    assert socket in (1, 2) and not home.done.done()
    await asyncio.sleep(0.3)
    camera.cancel(home)
    with pytest.raises(ViscaCommandError) as cancelled:
        await asyncio.wait_for(home.done, 1)
    assert cancelled.value.code == ErrorCode.CANCELLED
    assert bytes((0x81, 0x20 | socket, 0xFF)) in [data for _, data in rig.sim.received]
    halted = rig.sim.position(rig.simulator.now())
    assert 0 < halted.pan < 1000 and rig.sim.pan.velocity == 0
    camera.cancel(home)  # already over: nothing more is sent
    rig.sim.powered = False
    refused = camera.submit(camera.commands.home())
    with pytest.raises(ViscaCommandError) as not_executable:
        await asyncio.wait_for(refused.accepted, 1)
    assert not_executable.value.code == ErrorCode.NOT_EXECUTABLE
