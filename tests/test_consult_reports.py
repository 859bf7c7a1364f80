"""Reports over real HTTP, on SQLite AND PostgreSQL: drafts, publication, amendments."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from consult_api.models import AuditLog
from tests.test_consult_api import (
    PATIENT,
    REQUEST,
    World,
    create,
    move,
    schedule,
)


async def call(world: World, method: str, path: str, who: str, body: Any = None,
               status: int = 200) -> Any:
    response = await world.client.request(method, path, json=body, headers=world.auth(who))
    result = await response.json()
    assert response.status == status, result
    return result


async def in_session(world: World) -> int:
    cid = await create(world)
    await schedule(world, cid)
    await move(world, cid, "in_session", "expert")
    return cid


async def cardiology_template(world: World) -> dict[str, Any]:
    found = await call(world, "GET", "/api/v1/report-templates?specialty=cardiology", "expert")
    assert [t["specialty"] for t in found["templates"]] == ["cardiology"]
    template: dict[str, Any] = found["templates"][0]
    return template


async def test_templates_are_seeded(world: World) -> None:
    found = await call(world, "GET", "/api/v1/report-templates", "doctor")
    specialties = {t["specialty"] for t in found["templates"]}
    assert {"general", "cardiology", "radiology", "neurology"} <= specialties
    for t in found["templates"]:
        assert t["name"] and t["name_en"]
        assert t["sections"] and all(set(s) == {"key", "title", "title_en"}
                                     for s in t["sections"])
    # The English-seeded templates now read in Chinese, their English kept alongside.
    cardiology = await cardiology_template(world)
    assert (cardiology["name"], cardiology["name_en"]) == (
        "心血管内科会诊报告", "Cardiology consultation report")
    assert [(s["key"], s["title"], s["title_en"]) for s in cardiology["sections"]][:2] == [
        ("history", "病史摘要", "Clinical history"), ("ecg", "心电图", "ECG")]


async def test_draft_edit_publish_reports_the_consultation(world: World) -> None:
    cid = await in_session(world)
    template = await cardiology_template(world)
    draft = await call(world, "POST", f"/api/v1/consultations/{cid}/reports", "expert",
                       {"template_id": template["id"]}, status=201)
    assert draft["status"] == "draft" and draft["version"] == 1
    assert set(draft["sections"]) == {s["key"] for s in template["sections"]}
    rid = draft["id"]
    edited = await call(world, "PATCH", f"/api/v1/reports/{rid}", "expert",
                        {"sections": {"impression": "NSTEMI likely"}, "diagnosis": "I21.4"})
    assert edited["sections"]["impression"] == "NSTEMI likely"
    assert edited["diagnosis"] == "I21.4"
    # A second first report is refused.
    await call(world, "POST", f"/api/v1/consultations/{cid}/reports", "expert", {},
               status=409)
    published = await call(world, "POST", f"/api/v1/reports/{rid}/publish", "expert")
    assert published["status"] == "published" and published["published_at"]
    detail = await call(world, "GET", f"/api/v1/consultations/{cid}", "doctor")
    assert detail["state"] == "reported"
    assert detail["transitions"][-1]["to"] == "reported"
    # Published is final.
    await call(world, "PATCH", f"/api/v1/reports/{rid}", "expert",
               {"sections": {"impression": "changed"}}, status=409)
    await call(world, "POST", f"/api/v1/reports/{rid}/publish", "expert", status=409)


async def test_amendment_is_a_new_linked_version(world: World) -> None:
    cid = await in_session(world)
    rid = (await call(world, "POST", f"/api/v1/consultations/{cid}/reports", "expert", {},
                      status=201))["id"]
    await call(world, "PATCH", f"/api/v1/reports/{rid}", "expert",
               {"sections": {"findings": "v1"}, "diagnosis": "I20.0"})
    await call(world, "POST", f"/api/v1/reports/{rid}/publish", "expert")
    await call(world, "POST", f"/api/v1/reports/{rid}/amend", "expert", {}, status=400)
    amended = await call(world, "POST", f"/api/v1/reports/{rid}/amend", "expert",
                         {"reason": "troponin result arrived"}, status=201)
    assert amended["version"] == 2 and amended["previous_id"] == rid
    assert amended["amendment_reason"] == "troponin result arrived"
    assert amended["status"] == "draft" and amended["sections"] == {"findings": "v1"}
    await call(world, "PATCH", f"/api/v1/reports/{amended['id']}", "expert",
               {"sections": {"findings": "v2"}, "diagnosis": "I21.4"})
    # The requester sees only the published version until the amendment is published.
    seen = await call(world, "GET", f"/api/v1/consultations/{cid}/reports", "doctor")
    assert [r["version"] for r in seen["reports"]] == [1]
    # Only the latest version can be amended.
    await call(world, "POST", f"/api/v1/reports/{rid}/amend", "expert", {"reason": "x"},
               status=409)
    await call(world, "POST", f"/api/v1/reports/{amended['id']}/publish", "expert")
    seen = await call(world, "GET", f"/api/v1/consultations/{cid}/reports", "doctor")
    assert [(r["version"], r["status"]) for r in seen["reports"]] == [
        (1, "published"), (2, "published")]
    assert seen["reports"][0]["sections"] == {"findings": "v1"}
    assert (await call(world, "GET", f"/api/v1/consultations/{cid}", "doctor"))[
        "state"] == "reported"


async def test_drafts_are_invisible_to_the_requesting_side(world: World) -> None:
    cid = await in_session(world)
    rid = (await call(world, "POST", f"/api/v1/consultations/{cid}/reports", "expert", {},
                      status=201))["id"]
    for who in ("doctor", "colleague", "coordinator"):
        seen = await call(world, "GET", f"/api/v1/consultations/{cid}/reports", who)
        assert seen["reports"] == []
    assert len((await call(world, "GET", f"/api/v1/consultations/{cid}/reports",
                           "admin"))["reports"]) == 1
    assert len((await call(world, "GET", f"/api/v1/consultations/{cid}/reports",
                           "expert"))["reports"]) == 1
    await call(world, "PATCH", f"/api/v1/reports/{rid}", "doctor",
               {"sections": {"x": "y"}}, status=404)
    await call(world, "GET", f"/api/v1/consultations/{cid}/reports", "stranger", status=403)
    await call(world, "POST", f"/api/v1/reports/{rid}/publish", "expert")
    seen = await call(world, "GET", f"/api/v1/consultations/{cid}/reports", "colleague")
    assert [r["id"] for r in seen["reports"]] == [rid]
    readers = world.query(lambda s: set(s.scalars(sa.select(AuditLog.actor_id).where(
        AuditLog.object_id == cid, AuditLog.action == "report.read"))))
    assert world.people["colleague"].user_id in readers


async def test_only_the_assigned_expert_writes_reports(world: World) -> None:
    cid = await in_session(world)
    for who in ("other_expert", "doctor", "coordinator", "admin"):
        await call(world, "POST", f"/api/v1/consultations/{cid}/reports", who, {},
                   status=403)
    rid = (await call(world, "POST", f"/api/v1/consultations/{cid}/reports", "expert", {},
                      status=201))["id"]
    await call(world, "POST", f"/api/v1/reports/{rid}/publish", "other_expert", status=403)
    await call(world, "POST", "/api/v1/reports/999999/publish", "expert", status=404)


async def test_publishing_needs_a_session_or_an_offline_acceptance(world: World) -> None:
    # Interactive, only accepted: a draft is allowed but publishing is refused (409).
    cid = await create(world, {**REQUEST, "expert_id": world.people["expert"].user_id})
    await move(world, cid, "accepted", "expert")
    rid = (await call(world, "POST", f"/api/v1/consultations/{cid}/reports", "expert", {},
                      status=201))["id"]
    await call(world, "POST", f"/api/v1/reports/{rid}/publish", "expert", status=409)
    # Offline, accepted: publishing reports it.
    offline = await create(world, {**REQUEST, "type": "offline",
                                   "expert_id": world.people["expert"].user_id})
    # Not yet accepted: no report.
    await call(world, "POST", f"/api/v1/consultations/{offline}/reports", "expert", {},
               status=409)
    await move(world, offline, "accepted", "expert")
    rid = (await call(world, "POST", f"/api/v1/consultations/{offline}/reports", "expert",
                      {}, status=201))["id"]
    await call(world, "POST", f"/api/v1/reports/{rid}/publish", "expert")
    assert (await call(world, "GET", f"/api/v1/consultations/{offline}", "doctor"))[
        "state"] == "reported"


async def test_report_errors_carry_no_patient_data(world: World) -> None:
    cid = await in_session(world)
    result = await call(world, "PATCH", "/api/v1/reports/1", "expert",
                        {"sections": {"k": PATIENT["name"] * 5000}},
                        status=400)
    assert PATIENT["name"] not in str(result)
    assert cid
