"""PTZ that obeys: a stop reaches the camera at once whatever runs, the socket stays
responsive during a long move, and anyone allowed to steer may stop.

Through the real signalling WebSocket of a real server, against the simulated camera
over Sony VISCA over IP (UDP), with home and preset recall taking 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devices.visca.simulated_camera import FOCUS_RANGE, Preset
from signaling import ROOM_SERVICES
from signaling.client import SignalingError
from tests.conftest import stop_process
from tests.test_devices_room import ROOM, Bedside, bedside_server, wait_until

LONG_MOVE = 5.0
START = (1500, 300)
TARGETS = {"home": (0, 0), "preset-recall": (-1500, -200)}
PRESET = 3
CANCELS = {bytes.fromhex("81 21 FF"), bytes.fromhex("81 22 FF")}


@pytest.fixture
async def bedside(tmp_path: Path) -> AsyncIterator[Bedside]:
    async with bedside_server(tmp_path) as server:
        yield server


def place(bedside: Bedside) -> None:
    """Home and preset recall take 5 s; the camera starts away from both targets."""
    camera, now = bedside.camera, bedside.simulator.now()
    camera.positioning_time = LONG_MOVE
    camera.pan.value, camera.pan.since = START[0], now
    camera.tilt.value, camera.tilt.since = START[1], now
    camera.presets[PRESET] = Preset(*TARGETS["preset-recall"], zoom=0, focus=FOCUS_RANGE[0])


def request(action: str) -> dict[str, object]:
    fields = {"preset": PRESET} if action == "preset-recall" else {}
    return {"type": "ptz", "action": action, **fields}


def is_pan_tilt_stop(packet: bytes) -> bool:
    return packet[:4] == bytes.fromhex("81 01 06 01") and packet[6:] == bytes.fromhex("03 03 FF")


def halted_between(bedside: Bedside, action: str) -> tuple[int, int]:
    """The camera stands still strictly between where it started and the target."""
    position = bedside.camera.position(bedside.simulator.now())
    for start, target, at in zip(START, TARGETS[action], (position.pan, position.tilt),
                                 strict=True):
        assert min(start, target) < at < max(start, target), (position, action)
    assert bedside.camera.pan.velocity == 0 and bedside.camera.tilt.velocity == 0
    return position.pan, position.tilt


@pytest.mark.parametrize("stopper", ["controller", "ward"])
@pytest.mark.parametrize("action", ["home", "preset-recall"])
async def test_a_stop_half_a_second_into_a_long_move_halts_the_camera_there(
        bedside: Bedside, action: str, stopper: str) -> None:
    place(bedside)
    camera, loop = bedside.camera, asyncio.get_running_loop()
    expert = await bedside.client("expert", "Dr. Li")
    ward = await bedside.client("ward", "Nurse Wang") if stopper == "ward" else expert
    assert (await expert.request(request(action)))["type"] == "ptz-ok"
    assert camera.busy_sockets, "ptz-ok came on the ACK, while the move runs"
    await asyncio.sleep(0.5)

    asked = loop.time()
    assert (await expert.request({"type": "ping"}))["type"] == "pong"
    pong_after = loop.time() - asked

    sent = bedside.simulator.now()
    assert (await ward.request({"type": "ptz", "action": "stop"}))["type"] == "ptz-ok"
    arrived = [(at - sent, packet) for at, packet in camera.received if at >= sent]
    cancel_after = next(after for after, packet in arrived if packet in CANCELS)
    stop_after = next(after for after, packet in arrived if is_pan_tilt_stop(packet))
    print(f"\n{action}, stopped by {stopper}: ping answered in {pong_after * 1000:.1f} ms; "
          f"cancel reached the camera after {cancel_after * 1000:.1f} ms, "
          f"pan-tilt stop after {stop_after * 1000:.1f} ms")
    assert pong_after < 0.05
    assert cancel_after < 0.1 and stop_after < 0.1
    halted = halted_between(bedside, action)
    await asyncio.sleep(0.3)
    assert halted_between(bedside, action) == halted  # it stays where it stopped

    audit = bedside.app[ROOM_SERVICES].audit  # type: ignore[attr-defined]
    await wait_until(lambda: any(e.outcome == "cancelled" for e in audit.entries(ROOM)))
    outcomes = [(e.action, e.role, e.outcome) for e in audit.entries(ROOM)]
    assert (action, "expert", "acknowledged") in outcomes
    assert (action, "expert", "cancelled") in outcomes
    assert ("stop", "ward" if stopper == "ward" else "expert", "acknowledged") in outcomes
    for client in {expert, ward}:
        await client.close()


@pytest.mark.parametrize("action", ["home", "preset-recall"])
async def test_the_controller_disconnecting_during_a_long_move_stops_the_camera(
        bedside: Bedside, action: str) -> None:
    place(bedside)
    argument = f"{action}:{PRESET}" if action == "preset-recall" else action
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.ptz_client", bedside.ws_url, bedside.token("expert"),
         argument], stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert child.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, child.stdout.readline)
        assert line.strip() == "moving"
        await asyncio.sleep(0.5)
        assert bedside.camera.busy_sockets  # the long move runs
        killed = bedside.simulator.now()
        os.kill(child.pid, signal.SIGKILL)
        await wait_until(lambda: bedside.camera.pan.velocity == 0, timeout=2)
        stopped_after = bedside.camera.pan.since - killed
        print(f"\n{action}: camera stopped {stopped_after * 1000:.0f} ms after kill -9 "
              "of its controller")
        assert stopped_after < 0.5
        halted_between(bedside, action)
    finally:
        stop_process(child)


async def test_anyone_allowed_to_steer_may_stop_without_the_lease_and_it_is_audited(
        bedside: Bedside) -> None:
    holder = await bedside.client("expert", "Dr. A")
    other = await bedside.client("expert", "Dr. B")
    observer = await bedside.client("observer")
    move = {"type": "ptz", "action": "move", "pan": 1, "tilt": 0, "zoom": 0}

    async def keep_moving() -> None:
        # As a page does while the pad is held: the dead-man stops a move not refreshed
        # for 0.4 s, which a slow machine could otherwise reach before the checks below.
        while True:
            await holder.request(move)
            await asyncio.sleep(0.1)

    refresher = asyncio.create_task(keep_moving())
    await wait_until(lambda: bedside.camera.pan.velocity != 0)
    with pytest.raises(SignalingError) as denied:
        await other.request({"type": "ptz", "action": "move", "pan": -1, "tilt": 0, "zoom": 0})
    assert denied.value.code == "ptz-denied"  # the lease still rules moves
    with pytest.raises(SignalingError) as forbidden:
        await observer.request({"type": "ptz", "action": "stop"})
    assert forbidden.value.code == "forbidden"  # no `ptz` grant, no stop
    refresher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await refresher
    assert bedside.camera.pan.velocity != 0
    assert (await other.request({"type": "ptz", "action": "stop"}))["type"] == "ptz-ok"
    assert bedside.camera.pan.velocity == 0  # stopped before the reply
    hub = bedside.app[ROOM_SERVICES]
    assert hub.room_state(ROOM)["ptz"]["holderName"] == "Dr. A"  # type: ignore[attr-defined]
    entries = hub.audit.entries(ROOM)  # type: ignore[attr-defined]
    stop = entries[-1]
    assert (stop.action, stop.participant_id, stop.outcome) == (
        "stop", other.joined["participant"]["id"], "acknowledged")  # type: ignore[index]
    assert stop.params == {"holder": holder.joined["participant"]["id"],  # type: ignore[index]
                           "command": "stop (requested)"}
    for client in (holder, other, observer):
        await client.close()
