"""The contracts write exactly the JSON clients received before they existed.

tests/fixtures/contracts/wire.json was captured from the device hub and the PTZ
service of before ``contracts/`` (see tests/contract_sources.py for the sources).
Each payload parses, and serialises back byte for byte; the device hub and the PTZ
service, fed the same sources, produce the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from contracts.alarms import AlarmEvent
from contracts.patient_change import PatientChanged
from contracts.payload import APP_EVENTS, Payload
from contracts.ptz import PtzCommandRecord, PtzRequest, PtzState
from contracts.vitals import VitalsEvent
from devices.ptz_service import Operator, PtzService
from huizhen.device_hub import alarm_event, reading
from tests.contract_sources import FIXTURE, ptz_session, sources

ROOT = Path(__file__).resolve().parent.parent
WIRE: dict[str, list[dict[str, Any]]] = json.loads((ROOT / FIXTURE).read_text())
CONTRACTS: dict[str, type[Payload]] = {c.KIND: c for c in APP_EVENTS}
STAFF = ("Dr. Wang", "Nurse Li")


def text(body: object) -> str:
    """The JSON text a client receives (key order included)."""
    return json.dumps(body, ensure_ascii=False)


def captured() -> list[tuple[str, dict[str, Any]]]:
    return [(kind, body) for kind, bodies in WIRE.items() for body in bodies]


def test_every_kind_the_hub_sends_was_captured() -> None:
    assert set(WIRE) == set(CONTRACTS) == {
        "vitals", "alarm", "patient-changed", "ptz-state", "ptz-command"}
    samples = [s for body in WIRE["vitals"] for s in body["samples"]]
    # the optional keys are all exercised: waveforms, text results, OBX-7/8
    assert {"values", "text", "referenceRange", "flags"} <= {k for s in samples for k in s}
    assert any(s["value"] is None for s in samples if "value" in s)


@pytest.mark.parametrize(("kind", "body"), captured(),
                         ids=[f"{k}-{i}" for i, (k, _) in enumerate(captured())])
def test_captured_payload_parses_and_serialises_to_the_same_bytes(
        kind: str, body: dict[str, Any]) -> None:
    payload = CONTRACTS[kind].parse(body)
    assert text(payload.to_json()) == text(body)
    assert type(payload).parse(payload.to_json()) == payload


def test_the_device_hub_builds_the_captured_vitals_and_alarms() -> None:
    batches, alarms = sources()
    built = [VitalsEvent(batch[0].device_id, tuple(reading(s) for s in batch)).to_json()
             for batch in batches]
    assert text(built) == text(WIRE["vitals"])
    assert text([alarm_event(a).to_json() for a in alarms]) == text(WIRE["alarm"])
    changed = PatientChanged(batches[1][0].device_id, batches[1][0].observed_at)
    assert text([changed.to_json()]) == text(WIRE["patient-changed"])


async def test_the_ptz_service_sends_the_captured_states_and_commands() -> None:
    async def request(service: PtzService, who: Operator, action: str,
                      fields: dict[str, Any]) -> None:
        await service.request(who, PtzRequest.parse({"action": action, **fields}))

    states, commands = await ptz_session(PtzService, request, Operator)
    assert all(isinstance(s, PtzState) for s in states)
    assert all(isinstance(c, PtzCommandRecord) for c in commands)
    assert text([s.to_json() for s in states]) == text(WIRE["ptz-state"])
    assert text([c.to_json() for c in commands]) == text(WIRE["ptz-command"])


@pytest.mark.parametrize(("kind", "body"), captured(),
                         ids=[f"{k}-{i}" for i, (k, _) in enumerate(captured())])
def test_timeline_view_is_todays_record_without_staff_names(
        kind: str, body: dict[str, Any]) -> None:
    view = CONTRACTS[kind].parse(body).timeline_view()
    if kind == "ptz-state":  # the state, under "state", without the holder's name
        assert view == {"state": {k: v for k, v in body.items() if k != "holderName"}}
    else:
        assert view == body
    assert not any(name in text(view) for name in STAFF)


def test_an_alarm_keeps_its_event_name_in_the_timeline() -> None:
    """``name`` of an alarm is the event's code text (MDC_EVT_LO), not a person's."""
    body = next(b for b in WIRE["alarm"] if b["source"] == "pcd-04")
    assert AlarmEvent.parse(body).timeline_view()["name"] == "MDC_EVT_LO"


def test_the_protocols_examples_are_what_the_contracts_write() -> None:
    """signaling/PROTOCOL.md's device payload examples parse and serialise unchanged."""
    document = (ROOT / "signaling" / "PROTOCOL.md").read_text()
    section = document.split("### Device payloads", 1)[1]
    block = section.split("```json", 1)[1].split("```", 1)[0]
    examples = _objects(block)
    assert {e["type"] for e in examples} == set(CONTRACTS)
    for example in examples:
        body = {k: v for k, v in example.items() if k != "type"}
        assert text(CONTRACTS[example["type"]].parse(body).to_json()) == text(body)


def _objects(block: str) -> list[dict[str, Any]]:
    """The JSON objects of a code block, one after another."""
    decoder, found, index = json.JSONDecoder(), [], 0
    while (start := block.find("{", index)) >= 0:
        example, index = decoder.raw_decode(block, start)
        found.append(example)
    return found
