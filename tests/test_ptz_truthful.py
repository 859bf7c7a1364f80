"""Truthful PTZ state: ``ptz-ok`` and ``moving`` follow what the camera answered, the
audit trail records what the camera did, and a dead, refusing or garbling camera is an
error to the client, never a success nor a crash.

Through the real signalling WebSocket of a real server, against the simulated camera
over Sony VISCA over IP (UDP).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from signaling import ROOM_SERVICES
from signaling.client import SignalingClient, SignalingError
from tests.test_devices_room import ROOM, Bedside, bedside_server, wait_until

MOVE = {"type": "ptz", "action": "move", "pan": 1, "tilt": 0, "zoom": 0}
STOP = {"type": "ptz", "action": "stop"}


@pytest.fixture
async def bedside(tmp_path: Path) -> AsyncIterator[Bedside]:
    async with bedside_server(tmp_path) as server:
        yield server


async def outcome(client: SignalingClient, message: dict[str, Any]) -> str:
    """``ptz-ok`` or the error code."""
    try:
        return str((await client.request(message))["type"])
    except SignalingError as exc:
        return exc.code


def audit_counts(bedside: Bedside) -> dict[tuple[str, str], int]:
    """(action, outcome) -> rows, counted in the database."""
    engine = bedside.app[ROOM_SERVICES].store.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT action, outcome, COUNT(*) FROM ptz_audit WHERE room = :room "
            "GROUP BY action, outcome"), {"room": ROOM})
        return {(action, result): count for action, result, count in rows}


def replies(bedside: Bedside, kind: int) -> list[float]:
    """When the camera sent ACKs (kind 0x40) or completions (0x50) of commands."""
    return [at for at, data in bedside.camera.sent
            if data[1] & 0xF0 == kind and data[1] & 0x0F]


async def test_with_the_camera_dead_no_move_or_stop_gets_ptz_ok(bedside: Bedside) -> None:
    expert = await bedside.client("expert")
    await bedside.simulator.close()  # the camera's port is closed: nothing answers
    # The first move finds out (no ACK); then 50 repeats of the held move and stops.
    assert await outcome(expert, MOVE) == "camera-offline"
    answers = []
    for i in range(50):
        answers.append(await outcome(expert, STOP if i % 5 == 4 else MOVE))
        await asyncio.sleep(0.05)
    print(f"\n{answers.count('ptz-ok')} of 50 repeated moves and stops got ptz-ok")
    assert answers == ["camera-offline"] * 50
    state = await expert.next_event("ptz-state")
    while state["camera"] != "offline":
        state = await expert.next_event("ptz-state")
    assert state["moving"] is False
    counts = audit_counts(bedside)
    assert counts[("move", "offline")] == 41 and counts[("stop", "offline")] == 10
    # (the dead-man's stop of the first, unanswered move is there too, as "offline")
    assert {result for _, result in counts} == {"offline"}
    await expert.close()


async def test_moving_and_ptz_ok_come_only_after_the_camera_acknowledged(
        bedside: Bedside) -> None:
    bedside.camera.reply_delay = 0.3  # a slow camera: its ACK comes 300 ms late
    loop = asyncio.get_running_loop()
    expert = await bedside.client("expert")
    observer = await bedside.client("observer")
    async def timed(message: dict[str, Any]) -> tuple[str, float]:
        return await outcome(expert, message), loop.time()

    sent = loop.time()
    reply = asyncio.ensure_future(timed(MOVE))
    await asyncio.sleep(0.1)
    repeat = asyncio.ensure_future(timed(MOVE))  # the held button, before the ACK came
    state = await observer.next_event("ptz-state")
    while not state["moving"]:
        state = await observer.next_event("ptz-state")
    moving_at = loop.time()
    (ok, ok_at), (repeat_ok, repeat_at) = await reply, await repeat
    assert ok == repeat_ok == "ptz-ok"
    acks = replies(bedside, 0x40)
    assert acks and sent < acks[0] <= moving_at and acks[0] <= ok_at and acks[0] <= repeat_at
    assert state["motion"] == "move"
    drives = [p for _, p in bedside.camera.received
              if p[2:4] == bytes.fromhex("06 01") and p[6:8] != bytes.fromhex("03 03")]
    assert len(drives) == 1  # the repeat sent nothing new
    await expert.request(STOP)
    state = await observer.next_event("ptz-state")
    assert (state["moving"], state["motion"]) == (False, None)
    for client in (expert, observer):
        await client.close()


@pytest.mark.parametrize("action", ["home", "preset-recall"])
async def test_the_end_of_a_home_or_recall_arrives_in_ptz_state(
        bedside: Bedside, action: str) -> None:
    camera, loop = bedside.camera, asyncio.get_running_loop()
    camera.positioning_time = 1.0
    now = bedside.simulator.now()
    camera.pan.value, camera.pan.since = 1000, now
    expert = await bedside.client("expert")
    observer = await bedside.client("observer")
    fields = {"preset": 5} if action == "preset-recall" else {}
    assert (await expert.request({"type": "ptz", "action": action, **fields}))["type"] == \
        "ptz-ok"
    state = await observer.next_event("ptz-state")
    assert (state["moving"], state["motion"]) == (True, action)
    assert camera.busy_sockets  # still on its way
    state = await observer.next_event("ptz-state", timeout=5)
    arrived_at = loop.time()
    assert (state["moving"], state["motion"]) == (False, None)
    completions = replies(bedside, 0x50)
    assert completions and completions[-1] <= arrived_at
    assert camera.position(bedside.simulator.now()).pan == 0  # preset 5 unset: (0, 0)
    await wait_until(lambda: (action, "completed") in audit_counts(bedside))
    assert audit_counts(bedside) == {(action, "acknowledged"): 1, (action, "completed"): 1}
    for client in (expert, observer):
        await client.close()


async def test_an_error_or_a_malformed_reply_is_an_error_to_the_client(
        bedside: Bedside) -> None:
    expert = await bedside.client("expert")
    bedside.camera.powered = False  # in standby the camera answers "not executable"
    with pytest.raises(SignalingError) as refused:
        await expert.request(MOVE)
    assert refused.value.code == "camera-error"
    assert "NOT_EXECUTABLE" in refused.value.message
    bedside.camera.powered = True
    bedside.simulator.corrupt_replies = 1  # the ACK of the drive comes garbled
    with pytest.raises(SignalingError) as garbled:
        await expert.request(MOVE)
    assert garbled.value.code == "camera-error"
    assert "unreadable" in garbled.value.message
    # The camera may have started that drive: the server stops it.
    await wait_until(lambda: bedside.camera.pan.velocity == 0)
    # Nothing crashed: the socket answers, the camera is online and steers again.
    assert (await expert.request({"type": "ping"}))["type"] == "pong"
    assert (await expert.request(MOVE))["type"] == "ptz-ok"
    await wait_until(lambda: bedside.camera.pan.velocity != 0)
    await expert.request(STOP)
    hub = bedside.app[ROOM_SERVICES]
    assert hub.room_state(ROOM)["ptz"]["camera"] == "online"  # type: ignore[attr-defined]
    counts = audit_counts(bedside)
    assert counts[("move", "error: NOT_EXECUTABLE")] == 1
    assert counts[("move", "error: MALFORMED_REPLY")] == 1
    assert counts[("move", "acknowledged")] == 1
    await expert.close()
