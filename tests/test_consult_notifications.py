"""Notifications for the people concerned, over real HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from typing import Any

import sqlalchemy as sa

from consult_api.models import Notification
from consult_api.notifications import KINDS
from contracts.catalogue import LANGUAGES, Catalogue
from tests.test_consult_api import PATIENT, REQUEST, World, create, move, schedule


async def call(world: World, method: str, path: str, who: str, body: Any = None,
               status: int = 200) -> Any:
    response = await world.client.request(method, path, json=body, headers=world.auth(who))
    result = await response.json()
    assert response.status == status, (path, result)
    return result


async def inbox(world: World, who: str, unread: bool = False) -> dict[str, Any]:
    path = "/api/v1/notifications" + ("?unread=1" if unread else "")
    result: dict[str, Any] = await call(world, "GET", path, who)
    return result


def kinds(box: dict[str, Any]) -> list[tuple[str, int | None]]:
    """(kind, consultation or referral id), oldest first."""
    return [(n["kind"], n["consultation_id"] or n["referral_id"])
            for n in reversed(box["notifications"])]


async def test_each_change_notifies_the_people_concerned(world: World) -> None:
    cid = await create(world)
    # No expert yet: the province's coordinators hear of the request; not the requester.
    assert kinds(await inbox(world, "coordinator")) == [("consultation.requested", cid)]
    for who in ("doctor", "expert", "admin", "colleague", "stranger"):
        assert (await inbox(world, who))["notifications"] == [], who
    await schedule(world, cid)
    after = [("consultation.state", cid), ("consultation.assigned", cid),
             ("appointment.booked", cid)]
    assert kinds(await inbox(world, "doctor")) == after
    assert kinds(await inbox(world, "expert")) == after
    assert kinds(await inbox(world, "coordinator")) == [("consultation.requested", cid)]
    await move(world, cid, "in_session", "expert")
    draft = await call(world, "POST", f"/api/v1/consultations/{cid}/reports", "expert", {},
                       status=201)
    await call(world, "POST", f"/api/v1/reports/{draft['id']}/publish", "expert")
    doctor = await inbox(world, "doctor")
    assert kinds(doctor)[3:] == [("consultation.state", cid), ("consultation.state", cid),
                                 ("report.published", cid)]
    newest = doctor["notifications"][0]
    assert newest["params"] == {"consultation_id": cid, "state": "reported",
                                "report_id": draft["id"], "version": 1}
    assert newest["read"] is False and newest["created_at"].endswith("+00:00")
    state = doctor["notifications"][1]["params"]
    assert (state["from"], state["to"]) == ("in_session", "reported")
    # The expert made those changes: nothing new for them.
    assert len((await inbox(world, "expert"))["notifications"]) == 3
    # Cancelling also notifies (and the expert hears of it).
    other = await create(world, {**REQUEST, "expert_id": world.people["expert"].user_id})
    await move(world, other, "cancelled", "doctor")
    assert kinds(await inbox(world, "expert"))[-2:] == [("consultation.requested", other),
                                                         ("consultation.state", other)]


async def test_no_patient_data_in_notifications(world: World) -> None:
    cid = await create(world)
    await schedule(world, cid)
    await call(world, "POST", "/api/v1/referrals", "doctor", {
        "direction": "up", "to_hospital_id": world.people["coordinator"].hospital_id,
        "reason": "Needs PCI", "patient": PATIENT}, status=201)
    stored = world.query(lambda s: [(n.kind, n.params) for n in s.scalars(
        sa.select(Notification))])
    assert {kind for kind, _ in stored} >= {"consultation.requested", "consultation.state",
                                            "appointment.booked", "referral.requested"}
    text = json.dumps(stored, ensure_ascii=False)
    for value in (PATIENT["name"], PATIENT["record_number"], PATIENT["summary"],
                  REQUEST["question"], "Needs PCI"):
        assert value not in text


async def test_reading_and_marking(world: World) -> None:
    for _ in range(3):
        await create(world)
    box = await inbox(world, "coordinator", unread=True)
    assert box["unread"] == 3 and len(box["notifications"]) == 3
    first = box["notifications"][-1]
    marked = await call(world, "POST", f"/api/v1/notifications/{first['id']}/read",
                        "coordinator")
    assert marked["read"] is True and marked["id"] == first["id"]
    again = await call(world, "POST", f"/api/v1/notifications/{first['id']}/read",
                       "coordinator")
    assert again["read"] is True
    box = await inbox(world, "coordinator", unread=True)
    assert box["unread"] == 2 and first["id"] not in [n["id"] for n in box["notifications"]]
    # Someone else's notification is not theirs to read or mark.
    for who in ("admin", "doctor"):
        await call(world, "POST", f"/api/v1/notifications/{first['id']}/read", who,
                   status=404)
    await call(world, "POST", "/api/v1/notifications/999999/read", "coordinator", status=404)
    await call(world, "POST", "/api/v1/notifications/abc/read", "coordinator", status=404)
    await call(world, "GET", "/api/v1/notifications?unread=maybe", "coordinator", status=400)
    assert (await call(world, "POST", "/api/v1/notifications/read-all", "coordinator")) == {
        "marked": 2, "unread": 0}
    assert (await inbox(world, "coordinator", unread=True)) == {"notifications": [],
                                                                "unread": 0}
    everything = await inbox(world, "coordinator")
    assert [n["read"] for n in everything["notifications"]] == [True] * 3
    response = await world.client.get("/api/v1/notifications")
    assert response.status == 401


async def test_referral_changes_notify_both_sides(world: World) -> None:
    sent = await call(world, "POST", "/api/v1/referrals", "doctor", {
        "direction": "up", "to_hospital_id": world.people["coordinator"].hospital_id,
        "reason": "Needs PCI", "patient": PATIENT}, status=201)
    rid = sent["id"]
    assert kinds(await inbox(world, "coordinator")) == [("referral.requested", rid)]
    await call(world, "POST", f"/api/v1/referrals/{rid}/transitions", "coordinator",
               {"to": "accepted"})
    await call(world, "POST", f"/api/v1/referrals/{rid}/notes", "coordinator",
               {"text": "Bed 12 is ready"}, status=201)
    doctor = await inbox(world, "doctor")
    assert kinds(doctor) == [("referral.state", rid), ("referral.note", rid)]
    assert doctor["notifications"][1]["params"] == {
        "referral_id": rid, "direction": "up", "state": "accepted", "from": "requested",
        "to": "accepted"}
    await call(world, "POST", f"/api/v1/referrals/{rid}/notes", "doctor",
               {"text": "On the way"}, status=201)
    assert kinds(await inbox(world, "coordinator"))[-1] == ("referral.note", rid)
    assert (await inbox(world, "stranger"))["unread"] == 0


async def test_every_kind_has_a_catalogue_text_with_its_params(world: World) -> None:
    """The page renders notify.<kind> with the params: every placeholder is filled."""
    cid = await create(world)
    await schedule(world, cid)
    await move(world, cid, "in_session", "expert")
    draft = await call(world, "POST", f"/api/v1/consultations/{cid}/reports", "expert", {},
                       status=201)
    await call(world, "POST", f"/api/v1/reports/{draft['id']}/publish", "expert")
    rid = (await call(world, "POST", "/api/v1/referrals", "doctor", {
        "direction": "up", "to_hospital_id": world.people["coordinator"].hospital_id,
        "reason": "Needs PCI", "patient": PATIENT}, status=201))["id"]
    await call(world, "POST", f"/api/v1/referrals/{rid}/transitions", "coordinator",
               {"to": "accepted"})
    await call(world, "POST", f"/api/v1/referrals/{rid}/notes", "coordinator",
               {"text": "ok"}, status=201)
    stored = world.query(lambda s: [(n.kind, n.params) for n in s.scalars(
        sa.select(Notification))])
    assert {kind for kind, _ in stored} == set(KINDS)
    catalogue = Catalogue.load()
    for kind, params in stored:
        for language in LANGUAGES:
            text = catalogue.text(f"notify.{kind}", language, **params)
            assert not re.search(r"\{\w+\}", text), (kind, language, text)
