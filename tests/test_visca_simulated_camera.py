"""The simulated camera (pure, time passed in) answers and moves like a camera."""

from __future__ import annotations

import pytest

from devices.visca.codec import (
    BRC_H700,
    CommandSet,
    Direction,
    PanTilt,
    address_set,
    decode_pan_tilt,
    if_clear,
)
from devices.visca.simulated_camera import PAN_TILT_RATE, Preset, SimulatedCamera

cmd = CommandSet(1)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def exchange(camera: SimulatedCamera, packet: bytes, now: float) -> list[str]:
    camera.receive(packet, now)
    return [data.hex(" ").upper() for _, data in camera.poll(now)]


def test_drive_moves_at_the_commanded_speed_until_stopped_or_a_limit() -> None:
    camera = SimulatedCamera()
    assert exchange(camera, cmd.drive(Direction.UP_RIGHT, 0x10, 0x02), 0.0) == [
        "90 41 FF", "90 51 FF",
    ]
    assert camera.position(1.0) == PanTilt(round(0x10 * PAN_TILT_RATE), round(2 * PAN_TILT_RATE))
    assert camera.position(100.0) == PanTilt(0x08DB, 0x04B0)  # held at the limits
    exchange(camera, cmd.drive(Direction.DOWN_LEFT, 1, 1), 100.0)
    exchange(camera, cmd.pan_tilt_stop(), 101.0)
    assert camera.position(200.0) == PanTilt(0x08DB - 60, 0x04B0 - 60)


def test_absolute_move_completes_when_it_arrives() -> None:
    camera = SimulatedCamera()
    assert exchange(camera, cmd.absolute(600, -120, 0x0A, 0x02), 0.0) == ["90 41 FF"]
    assert camera.next_deadline() == pytest.approx(1.0)  # 600 units at 600 units/s
    assert camera.poll(0.99) == []
    assert [d.hex() for _, d in camera.poll(1.0)] == ["9051ff"]
    assert camera.position(1.0) == PanTilt(600, -120)
    exchange(camera, cmd.relative(-100, 20, 0x18, 0x17), 2.0)
    camera.poll(5.0)
    assert camera.position(5.0) == PanTilt(500, -100)
    exchange(camera, cmd.home(), 5.0)
    camera.poll(9.0)
    assert camera.position(9.0) == PanTilt(0, 0)


def test_inquiries() -> None:
    camera = SimulatedCamera()
    exchange(camera, cmd.absolute(-0x08DB, 0x04B0, 0x18, 0x17), 0.0)
    exchange(camera, cmd.zoom_direct(0x1234), 0.0)
    # Completions come out in the order the moves finish: the zoom first.
    assert [d.hex() for _, d in camera.poll(10.0)] == ["9052ff", "9051ff"]
    assert exchange(camera, cmd.pan_tilt_position_inquiry(), 10.0) == [
        "90 50 0F 07 02 05 00 04 0B 00 FF"
    ]
    assert exchange(camera, cmd.zoom_position_inquiry(), 10.0) == ["90 50 01 02 03 04 FF"]
    assert exchange(camera, cmd.power_inquiry(), 10.0) == ["90 50 02 FF"]
    assert exchange(camera, cmd.version_inquiry(), 10.0) == ["90 50 00 20 04 02 01 00 02 FF"]
    assert exchange(camera, cmd.focus_position_inquiry(), 10.0) == ["90 50 01 00 00 00 FF"]


def test_five_nibble_pan() -> None:
    camera = SimulatedCamera(pan_nibbles=5, tilt_speed_max=0x18)
    brc = CommandSet(1, BRC_H700)
    exchange(camera, brc.absolute(-300, 40, 0x18, 0x18), 0.0)
    (_, data), = [(r, d) for r, d in camera.poll(5.0) if d.startswith(b"\x90")][-1:]
    assert data == h("90 51 FF")
    camera.receive(brc.pan_tilt_position_inquiry(), 5.0)
    (_, data), = camera.poll(5.0)
    assert decode_pan_tilt(data[2:-1], 5) == PanTilt(-300, 40)
    assert exchange(camera, cmd.absolute(0, 0, 1, 1), 6.0) == ["90 60 02 FF"]  # 4-nibble form


def test_errors_like_a_camera() -> None:
    camera = SimulatedCamera()
    assert exchange(camera, h("81 01 04 99 FF"), 0.0) == ["90 60 02 FF"]  # unknown command
    assert exchange(camera, h("81 09 04 99 FF"), 0.0) == ["90 60 02 FF"]  # unknown inquiry
    assert exchange(camera, cmd.drive(Direction.UP, 1, 1)[:4] + h("19 01 03 01 FF"), 0.0) == [
        "90 60 02 FF"  # pan speed 0x19
    ]
    assert exchange(camera, h("81 FF"), 0.0) == ["90 60 01 FF"]
    assert exchange(camera, h("82 01 06 04 FF"), 0.0) == []  # another camera's packet
    # Manual focus commands under autofocus are not executable.
    assert exchange(camera, cmd.focus_far(), 0.0) == ["90 61 41 FF"]
    exchange(camera, cmd.manual_focus(), 0.0)
    assert exchange(camera, cmd.focus_far(), 0.0) == ["90 41 FF", "90 51 FF"]


def test_command_buffer_full_when_both_sockets_are_busy() -> None:
    camera = SimulatedCamera()
    assert exchange(camera, cmd.absolute(2000, 0, 1, 1), 0.0) == ["90 41 FF"]
    assert exchange(camera, cmd.zoom_direct(0x4000), 0.0) == ["90 42 FF"]
    assert exchange(camera, cmd.home(), 0.1) == ["90 60 03 FF"]
    assert exchange(camera, cmd.power_inquiry(), 0.1) == ["90 50 02 FF"]  # no socket needed
    assert camera.busy_sockets == [1, 2] and camera.max_busy == 2


def test_standby_refuses_commands_but_answers_inquiries() -> None:
    camera = SimulatedCamera()
    exchange(camera, cmd.power_standby(), 0.0)
    assert exchange(camera, cmd.home(), 0.1) == ["90 61 41 FF"]
    assert exchange(camera, cmd.power_inquiry(), 0.1) == ["90 50 03 FF"]
    assert exchange(camera, cmd.power_on(), 0.2) == ["90 41 FF", "90 51 FF"]
    assert exchange(camera, cmd.home(), 0.3) == ["90 41 FF", "90 51 FF"]


def test_cancel_stops_the_command_where_it_is() -> None:
    camera = SimulatedCamera()
    exchange(camera, cmd.absolute(2000, 0, 1, 1), 0.0)
    assert exchange(camera, cmd.cancel(1), 1.0) == ["90 61 04 FF"]
    assert camera.position(5.0) == PanTilt(60, 0)
    assert exchange(camera, cmd.cancel(2), 1.0) == ["90 62 05 FF"]


def test_presets_and_slow_completions() -> None:
    camera = SimulatedCamera(completion_delay=0.5)
    exchange(camera, cmd.absolute(300, 100, 0x18, 0x17), 0.0)
    camera.poll(1.0)
    exchange(camera, cmd.zoom_direct(0x2000), 1.0)
    camera.poll(2.0)
    assert exchange(camera, cmd.preset_set(4), 2.0) == ["90 41 FF"]
    assert [d.hex() for _, d in camera.poll(2.5)] == ["9051ff"]  # half a second later
    exchange(camera, cmd.home(), 3.0)
    camera.poll(4.0)
    exchange(camera, cmd.preset_recall(4), 4.0)
    camera.poll(6.0)
    assert camera.position(6.0) == PanTilt(300, 100) and camera.zoom_position(6.0) == 0x2000
    exchange(camera, cmd.preset_reset(4), 6.0)
    camera.poll(6.5)
    assert 4 not in camera.presets
    assert exchange(camera, h("81 01 04 3F 01 10 FF"), 7.0) == ["90 60 02 FF"]  # preset 16


def test_reply_delay_and_silence() -> None:
    camera = SimulatedCamera(reply_delay=0.05)
    camera.receive(cmd.power_inquiry(), 0.0)
    assert camera.poll(0.04) == [] and camera.next_deadline() == pytest.approx(0.05)
    assert len(camera.poll(0.05)) == 1
    camera.responding = False
    assert exchange(camera, cmd.power_inquiry(), 1.0) == []


def test_broadcasts() -> None:
    camera = SimulatedCamera(address=3)
    assert exchange(camera, address_set(), 0.0) == ["88 30 02 FF"]
    assert camera.address == 1
    exchange(camera, cmd.absolute(2000, 0, 1, 1), 0.0)
    assert exchange(camera, if_clear(), 0.1) == ["88 01 00 01 FF"]
    assert camera.busy_sockets == []


@pytest.mark.parametrize("halt", ["cancel", "stop"])
def test_a_long_home_or_recall_is_halted_where_it_is(halt: str) -> None:
    """positioning_time: home and recall take that long; a cancel ("cancelled") or a
    pan-tilt stop (the home completes) halts the camera between start and target."""
    camera = SimulatedCamera(positioning_time=5.0)
    exchange(camera, cmd.absolute(1000, 200, 0x18, 0x17), 0.0)
    camera.poll(10.0)
    camera.presets[1] = Preset(-1000, -200, 0, 0x1000)
    for packet, target in ((cmd.home(), PanTilt(0, 0)), (cmd.preset_recall(1), None)):
        start = camera.position(10.0)
        assert exchange(camera, packet, 10.0) == ["90 41 FF"]
        assert camera.next_deadline() == pytest.approx(15.0)
        if halt == "cancel":
            assert exchange(camera, h("81 21 FF"), 10.5) == ["90 61 04 FF"]
        else:
            assert exchange(camera, cmd.pan_tilt_stop(), 10.5) == [
                "90 51 FF", "90 42 FF", "90 52 FF"]  # the home/recall ends, the stop runs
        halted = camera.position(10.5)
        assert halted != start and halted != target
        assert camera.position(20.0) == halted and camera.busy_sockets == []
        assert camera.poll(20.0) == []
        if target is not None:
            assert halted == PanTilt(900, 180)  # a tenth of the way in half a second
