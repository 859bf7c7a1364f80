"""Hostile and malformed payloads: every one is a ValueError naming the field, never the value."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from contracts.alarms import AlarmEvent
from contracts.patient_change import PatientChanged
from contracts.payload import APP_EVENTS, Payload
from contracts.ptz import PTZ_ACTIONS, PtzCommandRecord, PtzRequest, PtzState
from contracts.roles import (
    BEDSIDE_ROLE,
    PTZ_RANKS,
    RECORDER_ROLE,
    ROLE_GRANTS,
    TOKEN_ROLES,
    Role,
)
from contracts.vitals import Reading, VitalsEvent
from tests.contract_sources import FIXTURE

ROOT = Path(__file__).resolve().parent.parent
WIRE: dict[str, list[dict[str, Any]]] = json.loads((ROOT / FIXTURE).read_text())
SECRET = "HED12-LAZY-KITTY"
"""Put into bad fields: no error message may repeat it."""


def wire(kind: str, index: int = 0) -> dict[str, Any]:
    return copy.deepcopy(WIRE[kind][index])


def waveform_vitals() -> dict[str, Any]:
    return copy.deepcopy(next(b for b in WIRE["vitals"]
                              if any("values" in s for s in b["samples"])))


def refused(contract: type[Payload], body: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        contract.parse(body)  # type: ignore[arg-type]
    assert str(info.value) == message
    assert SECRET not in str(info.value)


# --------------------------------------------------------------------------- PTZ request

def test_ptz_request_reads_each_action() -> None:
    assert PtzRequest.parse({"type": "ptz", "id": 3, "action": "move", "pan": 1,
                             "tilt": -0.5}) == PtzRequest("move", 1.0, -0.5, 0.0)
    assert PtzRequest.parse({"action": "preset-recall", "preset": 255}) == PtzRequest(
        "preset-recall", preset=255)
    # fields another action would need are ignored, as before
    assert PtzRequest.parse({"action": "stop", "pan": "left", "preset": -1}) == PtzRequest("stop")
    for action in PTZ_ACTIONS:
        fields = {"preset": 1} if action.startswith("preset") else {}
        request = PtzRequest.parse({"action": action, **fields})
        assert PtzRequest.parse(request.to_json()) == request


def test_ptz_request_move_is_serialised_with_its_speeds() -> None:
    assert PtzRequest("move", 0.5, 0.0, -1.0).to_json() == {
        "action": "move", "pan": 0.5, "tilt": 0.0, "zoom": -1.0}
    assert PtzRequest("preset-set", preset=4).to_json() == {"action": "preset-set", "preset": 4}
    assert PtzRequest("home").to_json() == {"action": "home"}


ACTIONS = "'action' must be one of acquire, release, move, stop, preset-recall, preset-set, home"


@pytest.mark.parametrize(("body", "message"), [
    ({}, ACTIONS),
    ({"action": "dance"}, ACTIONS),
    ({"action": SECRET}, ACTIONS),
    ({"action": ["move"]}, ACTIONS),
    ({"action": None}, ACTIONS),
    ({"action": "dead-man"}, ACTIONS),  # the server's own actions are not requests
    ({"action": "move", "pan": float("nan")}, "'pan' must be a number from -1 to 1"),
    ({"action": "move", "tilt": float("inf")}, "'tilt' must be a number from -1 to 1"),
    ({"action": "move", "zoom": 10**400}, "'zoom' must be a number from -1 to 1"),
    ({"action": "move", "pan": 1.0000001}, "'pan' must be a number from -1 to 1"),
    ({"action": "move", "pan": True}, "'pan' must be a number from -1 to 1"),
    ({"action": "move", "pan": "1"}, "'pan' must be a number from -1 to 1"),
    ({"action": "move", "pan": None}, "'pan' must be a number from -1 to 1"),
    ({"action": "preset-set"}, "'preset' must be an integer from 0 to 255"),
    ({"action": "preset-set", "preset": 256}, "'preset' must be an integer from 0 to 255"),
    ({"action": "preset-recall", "preset": -1}, "'preset' must be an integer from 0 to 255"),
    ({"action": "preset-recall", "preset": 1.0}, "'preset' must be an integer from 0 to 255"),
    ({"action": "preset-recall", "preset": False}, "'preset' must be an integer from 0 to 255"),
    ({"action": "preset-recall", "preset": 2**80}, "'preset' must be an integer from 0 to 255"),
    (["move"], "'payload' must be a JSON object"),
])
def test_bad_ptz_requests_are_refused(body: object, message: str) -> None:
    refused(PtzRequest, body, message)


# --------------------------------------------------------------------------- PTZ state/command

@pytest.mark.parametrize(("change", "message"), [
    ({"camera": "standby"}, "'camera' must be one of online, offline"),
    ({"moving": 1}, "'moving' must be true or false"),
    ({"motion": "dance"}, "'motion' must be one of move, home, preset-recall or null"),
    ({"holder": 7}, "'holder' must be a string or null"),
    ({"holderName": ["Dr.", SECRET]}, "'holderName' must be a string or null"),
    ({"holderRole": "x" * 2000}, "'holderRole' is longer than 1024 characters"),
])
def test_bad_ptz_states_are_refused(change: dict[str, Any], message: str) -> None:
    refused(PtzState, {**wire("ptz-state"), **change}, message)


@pytest.mark.parametrize("key", ["holder", "holderName", "holderRole", "camera", "moving",
                                 "motion"])
def test_a_ptz_state_needs_every_field(key: str) -> None:
    body = wire("ptz-state")
    del body[key]
    refused(PtzState, body, f"'{key}' is missing")


@pytest.mark.parametrize(("change", "message"), [
    ({"action": "dance"}, "'action' must be one of acquire, release, move, stop, "
                          "preset-recall, preset-set, home, dead-man, participant-left, "
                          "safety-stop, close"),
    ({"participant": ""}, "'participant' must be a non-empty string"),
    ({"role": None}, "'role' must be a non-empty string"),
    ({"command": {"move": 1}}, "'command' must be a non-empty string"),
])
def test_bad_ptz_commands_are_refused(change: dict[str, Any], message: str) -> None:
    refused(PtzCommandRecord, {**wire("ptz-command"), **change}, message)


def test_the_servers_own_ptz_commands_are_records_too() -> None:
    record = PtzCommandRecord.parse(wire("ptz-command", -1))
    assert (record.role, record.action) == ("system", "participant-left")


# --------------------------------------------------------------------------- vitals

@pytest.mark.parametrize(("change", "message"), [
    ({"value": float("nan")}, "'samples[0].value' must be a finite number or null of "
                              "magnitude at most 2^53"),
    ({"value": float("-inf")}, "'samples[0].value' must be a finite number or null of "
                               "magnitude at most 2^53"),
    ({"value": 10**400}, "'samples[0].value' must be a finite number or null of magnitude "
                         "at most 2^53"),
    ({"value": 1e300}, "'samples[0].value' must be a finite number or null of magnitude "
                       "at most 2^53"),
    ({"value": "98"}, "'samples[0].value' must be a finite number or null of magnitude "
                      "at most 2^53"),
    ({"value": True}, "'samples[0].value' must be a finite number or null of magnitude "
                      "at most 2^53"),
    ({"code": 150456}, "'samples[0].code' must be a non-empty string"),
    ({"code": ""}, "'samples[0].code' must be a non-empty string"),
    ({"vital": ["spo2"]}, "'samples[0].vital' must be a string or null"),
    ({"name": "x" * 100_000}, "'samples[0].name' is longer than 1024 characters"),
    ({"observedAt": "yesterday"}, "'samples[0].observedAt' must be an ISO 8601 time with a "
                                  "UTC offset"),
    ({"observedAt": "2024-03-05T10:14:55"}, "'samples[0].observedAt' must be an ISO 8601 "
                                            "time with a UTC offset"),
    ({"observedAt": 1709604895}, "'samples[0].observedAt' must be an ISO 8601 time with a "
                                 "UTC offset"),
    ({"flags": "H"}, "'samples[0].flags' must be a list of strings"),
    ({"flags": ["H"] * 1000}, "'samples[0].flags' must hold at most 64 strings of at most "
                              "1024 characters"),
    ({"referenceRange": 90}, "'samples[0].referenceRange' must be a string or null"),
])
def test_bad_samples_are_refused(change: dict[str, Any], message: str) -> None:
    body = wire("vitals")
    body["samples"][0].update(change)
    refused(VitalsEvent, body, message)


@pytest.mark.parametrize("key", ["vital", "code", "codeSystem", "name", "unit", "loinc",
                                 "status", "observedAt", "value"])
def test_a_sample_needs_every_field_the_hub_always_writes(key: str) -> None:
    body = wire("vitals")
    del body["samples"][0][key]
    refused(VitalsEvent, body, f"'samples[0].{key}' is missing")


def test_a_waveform_needs_finite_values_and_its_rate() -> None:
    body = waveform_vitals()
    index, sample = next((i, s) for i, s in enumerate(body["samples"]) if "values" in s)
    sample["values"][5] = float("nan")
    refused(VitalsEvent, body, f"'samples[{index}].values' must be a list of finite numbers")
    sample["values"][5] = None
    refused(VitalsEvent, body, f"'samples[{index}].values' must be a list of finite numbers")
    sample["values"][5] = 1.0
    del sample["sampleRate"]
    refused(VitalsEvent, body, f"'samples[{index}].sampleRate' is missing")


@pytest.mark.parametrize(("body", "message"), [
    ({"samples": []}, "'device' is missing"),
    ({"device": "m-1"}, "'samples' must be a list"),
    ({"device": "m-1", "samples": {"0": {}}}, "'samples' must be a list"),
    ({"device": "m-1", "samples": ["hr=72"]}, "'samples[0]' must be a JSON object"),
    ({"device": "m-1", "samples": [{}] * 10_001}, "'samples' holds more than 10000 samples"),
    ({"device": 42, "samples": []}, "'device' must be a non-empty string"),
    ("vitals", "'payload' must be a JSON object"),
    (None, "'payload' must be a JSON object"),
    ({1: "m-1"}, "'payload' must be a JSON object"),
])
def test_bad_vitals_events_are_refused(body: object, message: str) -> None:
    refused(VitalsEvent, body, message)


def test_unknown_keys_are_not_read() -> None:
    """A field the contract does not know is neither refused nor kept."""
    body = wire("vitals")
    body["nurse"] = SECRET
    body["samples"][0]["enteredBy"] = SECRET
    event = VitalsEvent.parse(body)
    assert SECRET not in json.dumps(event.to_json())
    assert event.to_json() == WIRE["vitals"][0]


def test_a_text_result_has_a_null_value() -> None:
    body = next(b for b in WIRE["vitals"] if any("text" in s for s in b["samples"]))
    sample = next(s for s in VitalsEvent.parse(body).samples if s.text is not None)
    assert (sample.value, sample.values, sample.text) == (None, None, "finger-out")
    assert isinstance(sample, Reading) and sample.to_json()["value"] is None


# --------------------------------------------------------------------------- alarms, patient

@pytest.mark.parametrize(("change", "message"), [
    ({"priority": "urgent"}, "'priority' must be one of none, low, medium, high"),
    ({"state": "on"}, "'state' must be one of active, cleared"),
    ({"source": SECRET}, "'source' must be one of pcd-04, obx-8"),
    ({"flags": None}, "'flags' must be a list of strings"),
    ({"flags": [1]}, "'flags' must be a list of strings"),
    ({"text": 3}, "'text' must be a string or null"),
    ({"text": "x" * 70_000}, "'text' is longer than 65536 characters"),
    ({"observedAt": "2024-13-45T99:00:00+08:00"}, "'observedAt' must be an ISO 8601 time "
                                                  "with a UTC offset"),
    ({"id": None}, "'id' must be a non-empty string"),
])
def test_bad_alarms_are_refused(change: dict[str, Any], message: str) -> None:
    refused(AlarmEvent, {**wire("alarm"), **change}, message)


@pytest.mark.parametrize("key", ["id", "device", "source", "code", "name", "vital", "priority",
                                 "state", "text", "flags", "observedAt"])
def test_an_alarm_needs_every_field(key: str) -> None:
    body = wire("alarm")
    del body[key]
    refused(AlarmEvent, body, f"'{key}' is missing")


@pytest.mark.parametrize(("body", "message"), [
    ({"device": "m-1"}, "'changedAt' is missing"),
    ({"changedAt": "2024-03-05T10:14:55.000+08:00"}, "'device' is missing"),
    ({"device": "m-1", "changedAt": "x" * 10_000}, "'changedAt' must be an ISO 8601 time with "
                                                   "a UTC offset"),
])
def test_bad_patient_changes_are_refused(body: dict[str, Any], message: str) -> None:
    refused(PatientChanged, body, message)


def test_a_patient_change_never_carries_the_patient() -> None:
    body = {**wire("patient-changed"), "patient": SECRET, "patientName": SECRET}
    changed = PatientChanged.parse(body)
    assert changed.to_json() == changed.timeline_view() == WIRE["patient-changed"][0]


# --------------------------------------------------------------------------- roles

def test_role_vocabulary() -> None:
    assert TOKEN_ROLES == ("ward", "expert", "observer", "operator")
    assert dict(ROLE_GRANTS) == {
        "ward": {"publish", "subscribe", "ptz"}, "expert": {"publish", "subscribe", "ptz"},
        "observer": {"subscribe"}, "operator": {"stats"}, "edge": {"subscribe", "edge"}}
    assert dict(PTZ_RANKS) == {"ward": 3, "expert": 2}
    assert PTZ_RANKS[BEDSIDE_ROLE] > PTZ_RANKS[Role.EXPERT]  # the bedside takes the camera back
    assert RECORDER_ROLE == "recorder" and RECORDER_ROLE not in ROLE_GRANTS  # never in a token
    assert {r.value for r in Role} == {*TOKEN_ROLES, RECORDER_ROLE, "edge"}
    with pytest.raises(TypeError):
        ROLE_GRANTS["observer"] = frozenset({"ptz"})  # type: ignore[index]


def test_every_payload_names_its_kind() -> None:
    assert [c.KIND for c in APP_EVENTS] == [
        "vitals", "alarm", "patient-changed", "ptz-state", "ptz-command"]
