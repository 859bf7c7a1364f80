"""Bedside devices in a live room: PTZ over signalling to the VISCA simulator, vitals to clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import hl7
import hl7.mllp
import pytest
from aiohttp import web

from config import Settings
from devices.hl7.oru import decode_oru
from devices.visca.simulated_camera import SimulatedCamera
from devices.visca.simulator import CameraSimulator
from huizhen.app import create_app, token_authority
from signaling import ROOM_SERVICES
from signaling.client import SignalingClient, SignalingError
from tests.conftest import free_port, make_settings, stop_process
from tests.test_hl7_fixtures import (
    GE_CONTROL_ID,
    GE_PATIENT_DATA,
    GE_SAMPLE,
    ORF_CONTROL_ID,
    ORF_DEVICE,
    ORF_SAMPLE,
    R40_END,
    R40_START,
)

ROOM = "bed-1"
MONITOR = "080019FFFE0B4020"  # OBX-18 of the GE sample's B40


@dataclass
class Bedside:
    base_url: str
    camera: SimulatedCamera
    simulator: CameraSimulator
    hl7_port: int
    app: web.Application
    settings: Settings

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http", "ws", 1) + "/ws"

    def token(self, role: str, name: str | None = None) -> str:
        return token_authority(self.settings).mint(room=ROOM, role=role, name=name or role, ttl=600)

    def pan(self) -> int:
        return self.camera.position(self.simulator.now()).pan

    async def client(self, role: str, name: str | None = None) -> SignalingClient:
        client = SignalingClient(self.ws_url)
        await client.connect()
        await client.join(self.token(role, name))
        return client


@contextlib.asynccontextmanager
async def bedside_server(tmp_path: Path) -> AsyncIterator[Bedside]:
    """A real server with one bed: a simulated camera over Sony VISCA over IP, HL7 in."""
    camera = SimulatedCamera()
    simulator = CameraSimulator(camera)
    _, camera_port = await simulator.serve_udp("127.0.0.1", 0)
    hl7_port = free_port()
    settings = make_settings(
        HUIZHEN_STORAGE_DATA_DIR=str(tmp_path),
        HUIZHEN_DEVICES_HL7_LISTEN=f"127.0.0.1:{hl7_port}",
        HUIZHEN_DEVICES_BEDS=json.dumps([{"room": ROOM,
                                          "camera": f"visca-udp://127.0.0.1:{camera_port}",
                                          "monitor": f"hl7:{MONITOR}"}]),
    )
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.server.port).start()
    try:
        yield Bedside(settings.server.base_url, camera, simulator, hl7_port, app, settings)
    finally:
        await runner.cleanup()
        await simulator.close()


@pytest.fixture
async def bedside(tmp_path: Path) -> AsyncIterator[Bedside]:
    async with bedside_server(tmp_path) as server:
        yield server


async def wait_until(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_joined_reports_the_camera_and_the_monitor(bedside: Bedside):
    expert = await bedside.client("expert", "Dr. Li")
    assert expert.joined is not None
    assert expert.joined["ptz"] == {"holder": None, "holderName": None, "holderRole": None,
                                    "camera": "online", "moving": False, "motion": None}
    assert expert.joined["vitals"] == []
    await expert.close()


async def test_hl7_client_gets_aa_and_the_samples_reach_the_room(bedside: Bedside):
    expert = await bedside.client("expert")
    observer = await bedside.client("observer")
    reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", bedside.hl7_port,
                                                        encoding="utf-8")
    writer.writemessage(hl7.parse(GE_SAMPLE))
    await writer.drain()
    ack = await asyncio.wait_for(reader.readmessage(), 5)
    writer.close()
    assert str(ack.segment("MSA")).startswith(f"MSA|AA|{GE_CONTROL_ID}")
    for client in (expert, observer):
        event = await client.next_event("vitals", 5)
        assert event["device"] == MONITOR
        values = {s["vital"]: (s["value"], s["unit"], s["loinc"]) for s in event["samples"]}
        assert values == {"spo2": (100, "%", "59408-5"), "rr": (18, "/min", "9279-1"),
                          "temp": (37.1, "Cel", "8310-5")}
        assert "HED12" not in json.dumps(event)  # no patient identifier goes to clients
    # A participant joining later gets the latest numbers in `joined`.
    late = await bedside.client("observer")
    assert late.joined is not None
    assert {s["vital"]: s["value"] for s in late.joined["vitals"]} == {
        "spo2": 100, "rr": 18, "temp": 37.1}
    for client in (expert, observer, late):
        await client.close()


async def send_with_python_hl7(port: int, text: str) -> str:
    """One message from python-hl7's MLLP client; the ACK's MSA segment."""
    reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", port, encoding="utf-8")
    writer.writemessage(hl7.parse(text))
    await writer.drain()
    ack = await asyncio.wait_for(reader.readmessage(), 5)
    writer.close()
    return str(ack.segment("MSA"))


async def test_orf_r04_values_reach_the_room(bedside: Bedside):
    """ORF^R04 (as some Philips monitors send) is acknowledged and its values reach the room."""
    expert = await bedside.client("expert")
    philips = ORF_SAMPLE.replace(ORF_DEVICE, MONITOR)  # MSH-3 of the bound monitor
    msa = await send_with_python_hl7(bedside.hl7_port, philips)
    assert msa.startswith(f"MSA|AA|{ORF_CONTROL_ID}")
    event = await expert.next_event("vitals", 5)
    assert event["device"] == MONITOR
    values = {s["vital"]: (s["value"], s["unit"]) for s in event["samples"]}
    assert values == {"hr": (128, "bpm"), "spo2": (96, "%"), "rr": (17, "rpm")}
    hr = next(s for s in event["samples"] if s["vital"] == "hr")
    assert (hr["referenceRange"], hr["flags"]) == ("50-120", ["H"])
    assert hr["observedAt"] == "2024-03-05T10:14:55.000+08:00"  # the sender's offset kept
    assert not any(p in json.dumps(event) for p in GE_PATIENT_DATA)
    await expert.close()


async def test_alarms_reach_the_room_and_late_joiners_until_cleared(bedside: Bedside):
    hub = bedside.app[ROOM_SERVICES]
    expert = await bedside.client("expert")
    start = decode_oru(R40_START.replace("0012A1FFFE000001", MONITOR).encode())
    hub.route(start.samples, start.alarms)  # type: ignore[attr-defined]
    raised = await expert.next_event("alarm", 5)
    assert {k: raised[k] for k in ("device", "code", "name", "vital", "priority", "state",
                                   "text", "flags", "observedAt")} == {
        "device": MONITOR, "code": "196670", "name": "MDC_EVT_LO", "vital": "spo2",
        "priority": "high", "state": "active", "text": "SpO2 LOW", "flags": ["PH", "SP"],
        "observedAt": "2024-03-05T10:15:58.000+08:00"}
    assert not any(p in json.dumps(raised) for p in GE_PATIENT_DATA)
    late = await bedside.client("observer")
    assert late.joined is not None
    assert [(a["id"], a["state"]) for a in late.joined["alarms"]] == [(raised["id"], "active")]
    end = decode_oru(R40_END.replace("0012A1FFFE000001", MONITOR).encode())
    hub.route(end.samples, end.alarms)  # type: ignore[attr-defined]
    for client in (expert, late):
        cleared = await client.next_event("alarm", 5)
        assert (cleared["id"], cleared["state"]) == (raised["id"], "cleared")
    later = await bedside.client("observer")
    assert later.joined is not None and later.joined["alarms"] == []
    # An OBX-8 flag over MLLP: the value reaches the room with its flags; its alarm
    # (as the listener hands it over) is raised, and a normal value clears it.
    flagged = decode_oru(GE_SAMPLE.replace("|100|262688^MDC_DIM_PERCENT^MDC||",
                                           "|80|262688^MDC_DIM_PERCENT^MDC|90-100|LL").encode())
    hub.route(flagged.samples, flagged.alarms)  # type: ignore[attr-defined]
    alarm = await expert.next_event("alarm", 5)
    assert (alarm["source"], alarm["vital"], alarm["priority"], alarm["flags"]) == (
        "obx-8", "spo2", "high", ["LL"])
    probe_off = decode_oru(GE_SAMPLE.replace("|100|262688^MDC_DIM_PERCENT^MDC|||||R|",
                                             "||262688^MDC_DIM_PERCENT^MDC|||||X|").encode())
    hub.route(probe_off.samples)  # type: ignore[attr-defined]
    assert [a["id"] for a in hub.room_state(ROOM)["alarms"]] == [alarm["id"]]  # no value: kept
    hub.route(decode_oru(GE_SAMPLE.encode()).samples)  # type: ignore[attr-defined]
    recovered = await expert.next_event("alarm", 5)
    assert (recovered["id"], recovered["state"]) == (alarm["id"], "cleared")
    assert hub.room_state(ROOM)["alarms"] == []  # type: ignore[attr-defined]
    for client in (expert, late, later):
        await client.close()


async def test_alarms_sent_over_mllp_reach_the_room_once(bedside: Bedside):
    """The whole path, no shortcut: a python-hl7 client sends a flagged value and an IHE
    PCD-04 alarm to the real listener; each is stored, acknowledged and raised once."""
    expert = await bedside.client("expert")
    flagged = GE_SAMPLE.replace("|100|262688^MDC_DIM_PERCENT^MDC||",
                                "|80|262688^MDC_DIM_PERCENT^MDC|90-100|LL")
    assert (await send_with_python_hl7(bedside.hl7_port, flagged)).startswith(
        f"MSA|AA|{GE_CONTROL_ID}")
    alarm = await expert.next_event("alarm", 5)
    assert (alarm["source"], alarm["vital"], alarm["priority"], alarm["state"],
            alarm["flags"]) == ("obx-8", "spo2", "high", "active", ["LL"])
    vitals = await expert.next_event("vitals", 5)
    spo2 = next(s for s in vitals["samples"] if s["vital"] == "spo2")
    assert (spo2["value"], spo2["referenceRange"], spo2["flags"]) == (80, "90-100", ["LL"])
    # A resend after a lost ACK: acknowledged again, raised nowhere a second time.
    assert (await send_with_python_hl7(bedside.hl7_port, flagged)).startswith("MSA|AA")
    start = R40_START.replace("0012A1FFFE000001", MONITOR)
    assert (await send_with_python_hl7(bedside.hl7_port, start)).startswith("MSA|AA")
    raised = await expert.next_event("alarm", 5)  # the PCD-04 one, not a repeat
    assert (raised["source"], raised["name"], raised["state"]) == (
        "pcd-04", "MDC_EVT_LO", "active")
    end = R40_END.replace("0012A1FFFE000001", MONITOR)
    assert (await send_with_python_hl7(bedside.hl7_port, end)).startswith("MSA|AA")
    cleared = await expert.next_event("alarm", 5)
    assert (cleared["id"], cleared["state"]) == (raised["id"], "cleared")
    assert [a["id"] for a in bedside.app[ROOM_SERVICES].room_state(ROOM)["alarms"]] == [
        alarm["id"]]  # type: ignore[attr-defined]
    assert not any(p in json.dumps([alarm, raised, cleared]) for p in GE_PATIENT_DATA)
    await expert.close()


async def test_a_new_patient_on_the_bed_raises_patient_changed(bedside: Bedside):
    expert = await bedside.client("expert")
    assert (await send_with_python_hl7(bedside.hl7_port, GE_SAMPLE)).startswith("MSA|AA")
    await expert.next_event("vitals", 5)
    # The same patient in a new message (a resend of the same control id is not routed
    # again): nothing.
    again = await send_with_python_hl7(bedside.hl7_port,
                                       GE_SAMPLE.replace(GE_CONTROL_ID, "004097134535A"))
    assert again.startswith("MSA|AA")
    await expert.next_event("vitals", 5)
    other = GE_SAMPLE.replace("HED12^^^PID^MR||LAZY^KITTY", "ZZZ77^^^PID^MR||BUSY^BEE")
    other = other.replace(GE_CONTROL_ID, "004097134536")
    assert (await send_with_python_hl7(bedside.hl7_port, other)).startswith("MSA|AA")
    changed = await expert.next_event("patient-changed", 5)  # MSH-7 in the bed's zone (+08:00)
    assert changed == {"type": "patient-changed", "device": MONITOR,
                       "changedAt": "2013-01-22T13:41:00.000+08:00"}
    assert not any(p in json.dumps(changed) for p in ("ZZZ77", "BUSY", *GE_PATIENT_DATA))
    late = await bedside.client("observer")
    assert late.joined is not None
    assert late.joined["patientChanged"] == {"device": MONITOR,
                                             "changedAt": "2013-01-22T13:41:00.000+08:00"}
    for client in (expert, late):
        await client.close()


async def test_expert_steers_the_camera_and_every_command_is_audited(bedside: Bedside):
    expert = await bedside.client("expert", "Dr. Li")
    start = bedside.pan()
    await expert.request({"type": "ptz", "action": "move", "pan": 1, "tilt": 0, "zoom": 0})
    state = await expert.next_event("ptz-state")
    assert state["holderName"] == "Dr. Li" and state["moving"] is True
    command = await expert.next_event("ptz-command")
    assert command == {"type": "ptz-command", "participant": expert.joined["participant"]["id"],
                       "role": "expert", "action": "move",
                       "command": "move pan=+1.00 tilt=+0.00 zoom=+0.00"}
    await asyncio.sleep(0.3)
    await expert.request({"type": "ptz", "action": "stop"})
    moved = bedside.pan()
    assert moved > start
    await asyncio.sleep(0.2)
    assert bedside.pan() == moved  # stopped
    await expert.request({"type": "ptz", "action": "preset-set", "preset": 2})
    await expert.request({"type": "ptz", "action": "home"})
    await wait_until(lambda: bedside.pan() == 0)
    await expert.request({"type": "ptz", "action": "preset-recall", "preset": 2})
    await wait_until(lambda: bedside.pan() == moved)
    hub = bedside.app[ROOM_SERVICES]
    audit = hub.audit  # type: ignore[attr-defined]
    await wait_until(lambda: sum(e.outcome == "completed" for e in audit.entries(ROOM)) == 2)
    entries = audit.entries(ROOM)
    actions = [(e.action, e.params.get("command")) for e in entries]
    assert actions[:2] == [("move", "move pan=+1.00 tilt=+0.00 zoom=+0.00"),
                           ("stop", "stop (requested)")]
    assert ("preset-recall", "recall preset 2") in actions
    assert {e.role for e in entries} == {"expert"}
    # What the camera did: every command acknowledged, home and the recall also completed.
    assert {e.outcome for e in entries} == {"acknowledged", "completed"}
    assert [e.action for e in entries if e.outcome == "completed"] == ["home", "preset-recall"]
    await expert.close()


async def test_lease_equal_rank_is_denied_and_ward_takes_over(bedside: Bedside):
    first = await bedside.client("expert", "Dr. A")
    second = await bedside.client("expert", "Dr. B")
    ward = await bedside.client("ward", "Nurse C")
    observer = await bedside.client("observer")
    await first.request({"type": "ptz", "action": "move", "pan": 0.5, "tilt": 0, "zoom": 0})
    with pytest.raises(SignalingError) as denied:
        await second.request({"type": "ptz", "action": "move", "pan": -1, "tilt": 0, "zoom": 0})
    assert denied.value.code == "ptz-denied"
    with pytest.raises(SignalingError) as forbidden:
        await observer.request({"type": "ptz", "action": "acquire"})
    assert forbidden.value.code == "forbidden"
    await ward.request({"type": "ptz", "action": "acquire"})
    await wait_until(lambda: bedside.camera.pan.velocity == 0)  # the expert's move stopped
    state = await observer.next_event("ptz-state")
    while state["holderName"] != "Nurse C":
        state = await observer.next_event("ptz-state")
    assert state == {"type": "ptz-state", "holder": ward.joined["participant"]["id"],
                     "holderName": "Nurse C", "holderRole": "ward", "camera": "online",
                     "moving": False, "motion": None}
    for client in (first, second, ward, observer):
        await client.close()


async def test_dead_man_a_move_not_refreshed_stops_within_500_ms(bedside: Bedside):
    expert = await bedside.client("expert")
    await expert.request({"type": "ptz", "action": "move", "pan": 1, "tilt": 0, "zoom": 0})
    sent = bedside.simulator.now()
    await wait_until(lambda: bedside.camera.pan.velocity != 0)
    await wait_until(lambda: bedside.camera.pan.velocity == 0, timeout=2)
    stopped_after = bedside.camera.pan.since - sent
    print(f"\nunrefreshed move stopped {stopped_after * 1000:.0f} ms after the last move")
    assert stopped_after < 0.5
    await expert.close()


async def test_dead_man_killing_the_controlling_client_stops_the_camera(bedside: Bedside):
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.ptz_client", bedside.ws_url, bedside.token("expert")],
        stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert child.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, child.stdout.readline)
        assert line.strip() == "moving"
        await asyncio.sleep(1.0)  # it keeps refreshing: the camera keeps moving
        assert bedside.camera.pan.velocity != 0
        killed = bedside.simulator.now()
        os.kill(child.pid, signal.SIGKILL)
        await wait_until(lambda: bedside.camera.pan.velocity == 0, timeout=2)
        stopped_after = bedside.camera.pan.since - killed
        print(f"\ncamera stopped {stopped_after * 1000:.0f} ms after kill -9 of its controller")
        assert stopped_after < 0.5
    finally:
        stop_process(child)
    audit = bedside.app[ROOM_SERVICES].audit  # type: ignore[attr-defined]
    # The audit row is written once the camera acknowledged the stop, on its own thread.
    await wait_until(lambda: audit.entries(ROOM)[-1].action != "move")
    entries = audit.entries(ROOM)
    assert entries[-1].action in ("participant-left", "dead-man")
    assert entries[-1].outcome == "acknowledged"
    assert entries[-1].params["command"].startswith("stop")


async def test_a_serial_oximeter_bound_to_a_room_reaches_its_clients(tmp_path: Path):
    """A Nonin oximeter on a real pty, bound by configuration: numbers reach the room."""
    from devices.hl7.storage import SampleStore
    from devices.serial_monitors.simulator import (
        NoninSimulator,
        PtyDevice,
        SimulatedPatient,
        run_simulator,
    )

    device = PtyDevice(link=tmp_path / "ttyNONIN")
    device.plug()
    writer = asyncio.create_task(run_simulator(NoninSimulator(SimulatedPatient(seed=5)),
                                               device, speed=10))
    settings = make_settings(
        HUIZHEN_STORAGE_DATA_DIR=str(tmp_path),
        HUIZHEN_DEVICES_BEDS=json.dumps([{"room": "bed-9",
                                          "monitor": f"nonin://{device.port}"}]))
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.server.port).start()
    try:
        client = SignalingClient(settings.server.base_url.replace("http", "ws", 1) + "/ws")
        await client.connect()
        await client.join(token_authority(settings).mint(room="bed-9", role="expert", name="e",
                                                         ttl=60))
        event = await client.next_event("vitals", 10)
        assert event["device"] == f"nonin:{device.port}"
        vitals = {s["vital"]: s for s in event["samples"]}
        assert 90 <= vitals["spo2"]["value"] <= 100 and vitals["spo2"]["unit"] == "%"
        assert 40 <= vitals["pr"]["value"] <= 140 and vitals["pr"]["unit"] == "/min"
        await client.close()
    finally:
        await runner.cleanup()
        writer.cancel()
        device.close()
    # ... and what reached the room was stored first (kept for the recorder).
    store = SampleStore(f"sqlite:///{tmp_path / 'devices.sqlite3'}")
    await store.open()
    stored = await store.samples_since(device_id=f"nonin:{device.port}")
    await store.close()
    assert {s.sample.vital for s in stored} >= {"spo2", "pr"}
