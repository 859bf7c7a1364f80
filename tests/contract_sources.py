"""What the device hub turned into wire JSON when tests/fixtures/contracts/wire.json was
captured (with the device hub and PTZ service of before ``contracts/``): HL7 messages
(the GE and Philips samples, the simulator's vitals with a pleth waveform and flagged
values, PCD-04 alarm reports), serial-monitor readings, and one PTZ session.

Shared by the capture and by tests/test_contracts_wire.py, so both see the same sources.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from devices.hl7.oru import OruConfig, decode_oru
from devices.hl7.simulator import MonitorProfile, MonitorSimulator, compose_alarm
from devices.serial_monitors import codes
from devices.vitals import VitalAlarm, VitalSample
from tests.test_hl7_fixtures import GE_SAMPLE, ORF_SAMPLE, r40, spo2_alarm_rows

FIXTURE = "tests/fixtures/contracts/wire.json"
NOW = datetime(2024, 3, 5, 2, 16, tzinfo=UTC)
CHINA = timezone(timedelta(hours=8))


def hl7_messages() -> list[bytes]:
    profile = MonitorProfile()
    simulator = MonitorSimulator("127.0.0.1", 0, seed=3)
    simulator.hold("spo2", 82)
    simulator.hold("hr", 130)
    return [
        GE_SAMPLE.encode(), ORF_SAMPLE.encode(), simulator.next_message(NOW)[1],
        compose_alarm(profile, control_id="A1", now=NOW, vital="spo2", value=82,
                      phase="start", text="SpO2 LOW").encode(),
        compose_alarm(profile, control_id="A2", now=NOW, vital="hr", value=70, phase="end",
                      priority="PM", high=True).encode(),
        r40(*spo2_alarm_rows("start")).encode(),
    ]


def sources() -> tuple[list[list[VitalSample]], list[VitalAlarm]]:
    """Samples (one list per message, as the hub sends them) and alarms, in order."""
    config = OruConfig(default_zone=CHINA)
    batches: list[list[VitalSample]] = []
    alarms: list[VitalAlarm] = []
    for raw in hl7_messages():
        message = decode_oru(raw, config)
        if message.samples:
            batches.append(list(message.samples))
        alarms.extend(message.alarms)
    batches.append([
        codes.reading(codes.PULSE_RATE, "nonin-1", NOW, 72),
        codes.reading(codes.PULSE_RATE, "nonin-1", NOW, None, codes.FINGER_OUT),
        codes.waveform(codes.PLETH, "nonin-1", NOW, [12.0, 40.0, 75.0], 75.0),
    ])
    return batches, alarms


class FakeCamera:
    """A camera port that acknowledges everything; homes and recalls complete at once."""

    online = True

    async def drive(self, pan: float, tilt: float, zoom: float) -> None:
        return None

    async def halt(self) -> None:
        return None

    async def recall_preset(self, preset: int) -> Awaitable[str]:
        return self._done()

    async def store_preset(self, preset: int) -> None:
        return None

    async def go_home(self) -> Awaitable[str]:
        return self._done()

    async def _done(self) -> str:
        return "completed"


PTZ_SESSION: list[tuple[str, str, dict[str, Any]]] = [
    ("expert", "acquire", {}),
    ("expert", "move", {"pan": 1.0, "tilt": -0.5, "zoom": 0.0}),
    ("ward", "stop", {}),
    ("expert", "preset-set", {"preset": 2}),
    ("expert", "preset-recall", {"preset": 2}),
    ("ward", "home", {}),
    ("ward", "move", {"pan": 0.0, "tilt": 0.25, "zoom": 0.5}),
]
"""(who, action, fields) in order; then the ward (moving, holding the lease) leaves."""


async def ptz_session(service_factory: Callable[..., Any],
                      request: Callable[[Any, Any, str, dict[str, Any]], Awaitable[None]],
                      operator: Callable[..., Any]) -> tuple[list[Any], list[Any]]:
    """Run PTZ_SESSION on a service; what it sent as ``ptz-state`` and ``ptz-command``."""
    states: list[Any] = []
    commands: list[Any] = []
    service = service_factory("bed-1", FakeCamera(), on_state=states.append,
                              on_command=commands.append)
    people = {"expert": operator("p-expert", "Dr. Wang", "expert", "u-wang"),
              "ward": operator("p-ward", "Nurse Li", "ward", "u-li")}
    for who, action, fields in PTZ_SESSION:
        await request(service, people[who], action, fields)
        for _ in range(5):
            await asyncio.sleep(0)  # a home or recall completes
    service.participant_left("p-ward")
    for _ in range(5):
        await asyncio.sleep(0)
    await service.close()
    return states, commands
