"""The whole consultation, end to end through the HTTP API, on SQLite and on PostgreSQL:
request with materials, scheduling with a live room, the session, the expert's report,
closing, and the statistics that count it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from consult_api import records
from consult_api.app import create_app
from consult_api.db import make_engine, make_sessionmaker
from tests.test_consult_api import MEDIA_TOKENS, REQUEST, SECRET, Clock, DbTokens, seed


async def test_request_materials_schedule_session_report_close(migrated: str, tmp_path: Path,
                                                               aiohttp_client: Any) -> None:
    engine = make_engine(migrated)
    people = records.run_in_session(make_sessionmaker(engine), seed)
    engine.dispose()
    client = await aiohttp_client(create_app(migrated, SECRET, clock=Clock(),
                                             room_tokens=MEDIA_TOKENS, data_dir=tmp_path))
    tokens = DbTokens(migrated)

    def auth(who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens.mint(people[who])}"}

    async def call(method: str, path: str, who: str, status: int, **kwargs: Any) -> Any:
        response = await client.request(method, "/api/v1" + path, headers={
            **auth(who), **kwargs.pop("headers", {})}, **kwargs)
        body = await response.json()
        assert response.status == status, (path, body)
        return body

    # The county doctor requests a consultation and attaches a scan (a PNG, named .dat).
    cid = (await call("POST", "/consultations", "doctor", 201, json=REQUEST))["id"]
    ok, png = cv2.imencode(".png", np.full((32, 48, 3), 200, np.uint8))
    assert ok
    material = await call("POST", f"/consultations/{cid}/materials", "doctor", 201,
                          data=png.tobytes(), headers={"X-Filename": "scan.dat"})
    assert material["kind"] == "png"
    # The coordinator schedules it with the expert: a live room opens.
    slot = {"start": "2026-03-03T09:00:00+08:00", "end": "2026-03-03T09:30:00+08:00",
            "expert_id": people["expert"].user_id}
    scheduled = await call("POST", f"/consultations/{cid}/schedule", "coordinator", 200,
                           json=slot)
    assert scheduled["state"] == "scheduled" and scheduled["room"]
    token = await call("POST", f"/consultations/{cid}/room-token", "expert", 200, json={})
    assert token["room"] == scheduled["room"] and token["token"]
    # The expert reads the materials, runs the session and writes the report.
    listed = await call("GET", f"/consultations/{cid}/materials", "expert", 200)
    assert [m["id"] for m in listed["materials"]] == [material["id"]]
    await call("POST", f"/consultations/{cid}/transitions", "expert", 200,
               json={"to": "in_session"})
    report = await call("POST", f"/consultations/{cid}/reports", "expert", 201, json={})
    await call("PATCH", f"/reports/{report['id']}", "expert", 200,
               json={"diagnosis": "I21.4", "sections": {"findings": "ST depression"}})
    published = await call("POST", f"/reports/{report['id']}/publish", "expert", 200)
    assert published["status"] == "published"
    assert (await call("GET", f"/consultations/{cid}", "doctor", 200))["state"] == "reported"
    # The requester reads the report and closes the consultation.
    reports = await call("GET", f"/consultations/{cid}/reports", "doctor", 200)
    assert [r["diagnosis"] for r in reports["reports"]] == ["I21.4"]
    closed = await call("POST", f"/consultations/{cid}/transitions", "doctor", 200,
                        json={"to": "closed"})
    assert closed["state"] == "closed"
    detail = await call("GET", f"/consultations/{cid}", "doctor", 200)
    history = [(t["from"], t["to"]) for t in detail["transitions"]]
    assert history == [(None, "requested"), ("requested", "scheduled"),
                       ("scheduled", "in_session"), ("in_session", "reported"),
                       ("reported", "closed")]
    stats = await call("GET", "/statistics", "coordinator", 200)
    assert stats["total"] == 1
