"""The recorder keeps the room's application events through their contracts.

A real room and SessionRecorder, no media: the bodies carry name-like fields no
contract knows (and the names the live page shows), one body is malformed. The
timeline holds the vitals, alarm, patient-changed, ptz-state and ptz-command records
as before, and no staff or patient name at all; the malformed body is skipped and
counted, and the recording goes on.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from mediaserver import MediaConfig, MediaServer
from recorder.session_recorder import SessionRecorder
from recorder.timeline import read_timeline
from tests.contract_sources import FIXTURE
from tests.fakes import Member

ROOT = Path(__file__).resolve().parent.parent
WIRE: dict[str, list[dict[str, Any]]] = json.loads((ROOT / FIXTURE).read_text())
NAMES = ("Dr. Wang", "Nurse Li", "Zhang San", "LAZY KITTY")
"""Staff (the PTZ fixture's holders) and patients: none may reach the timeline."""


def with_names(kind: str) -> list[dict[str, Any]]:
    """Today's bodies of ``kind``, each with name-like fields added (new ones, one day)."""
    bodies = copy.deepcopy(WIRE[kind])
    for body in bodies:
        body.update(operatorName="Nurse Li", displayName="Dr. Wang",
                    acknowledgedBy={"name": "Nurse Li"}, patientName="Zhang San",
                    holderFullName="Dr. Wang")
        for sample in body.get("samples", []):
            sample.update(enteredBy="Nurse Li", patient="LAZY KITTY")
    return bodies


async def test_the_timeline_keeps_each_record_by_its_contract_and_no_name(
        tmp_path: Path) -> None:
    server = MediaServer(MediaConfig(ice_addresses=("127.0.0.1",)))
    room = server.room("bed-9")
    ward = room.join("Nurse Li", "ward", Member())
    recorder = SessionRecorder(room, tmp_path)
    recorder.start()
    sent: dict[str, list[dict[str, Any]]] = {kind: with_names(kind) for kind in WIRE}
    for kind, bodies in sent.items():
        for body in bodies:
            room.broadcast(kind, body)
    room.broadcast("vitals", {"device": "m-1", "samples": [{"vital": "hr", "value": "72"}]})
    room.broadcast("chat", {"text": "hello", "name": "Dr. Wang"})  # not a recorded kind
    room.broadcast("alarm", WIRE["alarm"][0])  # after the malformed one: still recorded
    room.leave(ward)
    manifest = await recorder.stop()
    await server.close()

    path = recorder.path / manifest.timeline.file
    events, _ = read_timeline(path)
    raw = path.read_bytes()
    assert not [name for name in NAMES if name.encode() in raw]
    assert recorder.skipped_events == 1
    records = {kind: [{k: v for k, v in e.items() if k not in ("kind", "t")}
                      for e in events if e["kind"] == kind] for kind in WIRE}
    assert not [e for e in events if e["kind"] == "chat"]
    assert records["vitals"] == WIRE["vitals"]  # the samples as the room received them
    assert records["alarm"] == [*WIRE["alarm"], WIRE["alarm"][0]]
    assert records["patient-changed"] == WIRE["patient-changed"]
    assert records["ptz-command"] == WIRE["ptz-command"]
    assert records["ptz-state"] == [
        {"state": {k: v for k, v in body.items() if k != "holderName"}}
        for body in WIRE["ptz-state"]]
    assert all(isinstance(e["t"], int) for e in events)
