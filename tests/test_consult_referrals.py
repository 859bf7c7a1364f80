"""Two-way referrals over real HTTP on SQLite and PostgreSQL, and their pure state machine."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import sqlalchemy as sa

from consult_api import records
from consult_api.errors import Forbidden, InvalidTransition
from consult_api.models import AuditLog, Department, ReferralEvent
from consult_api.referral_flow import (
    Direction,
    ReferralFacts,
    ReferralState,
    allowed_targets,
    check_transition,
    direction_fits,
)
from consult_api.workflow import Actor, Role
from tests.test_consult_api import World, create

PATIENT: dict[str, Any] = {"name": "Li Na", "sex": "female", "age": 71, "record_number": "MRN-7788"}


async def call(world: World, method: str, path: str, who: str, body: Any = None,
               status: int = 200) -> Any:
    response = await world.client.request(method, path, json=body, headers=world.auth(who))
    result = await response.json()
    assert response.status == status, (path, result)
    return result


def hospital(world: World, who: str) -> int:
    return world.people[who].hospital_id


def add_person(world: World, name: str, hospital_id: int, role: Role) -> None:
    user = world.query(lambda s: records.add_user(s, hospital_id, name.title(), role))
    world.people[name] = Actor(user_id=user, role=role, hospital_id=hospital_id)


async def send(world: World, who: str = "doctor", status: int = 201, **change: Any) -> Any:
    body = {"direction": "up", "to_hospital_id": hospital(world, "coordinator"),
            "reason": "Suspected STEMI: needs PCI", "patient": PATIENT, **change}
    return await call(world, "POST", "/api/v1/referrals", who, body, status)


async def go(world: World, rid: int, to: str, who: str, status: int = 200) -> Any:
    return await call(world, "POST", f"/api/v1/referrals/{rid}/transitions", who,
                      {"to": to, "note": f"{who}: {to}"}, status)


async def test_an_up_referral_from_request_to_discharge(world: World) -> None:
    cardiology = world.query(lambda s: s.scalar(sa.select(Department.id)))
    cid = await create(world)
    sent = await send(world, to_department_id=cardiology, consultation_id=cid)
    rid = sent["id"]
    assert (sent["state"], sent["direction"], sent["allowed"]) == ("requested", "up",
                                                                   ["cancelled"])
    assert (sent["from_hospital"], sent["to_hospital"]) == ("Xian County People's Hospital",
                                                            "Provincial Hospital")
    assert sent["consultation_id"] == cid and sent["to_department_id"] == cardiology
    assert "patient" not in sent
    # The receiving coordinator's queue.
    queue = await call(world, "GET", "/api/v1/referrals?state=requested&direction=up",
                       "coordinator")
    assert [(r["id"], r["allowed"]) for r in queue["referrals"]] == [
        (rid, ["accepted", "rejected"])]
    assert (await call(world, "GET", "/api/v1/referrals?direction=down", "coordinator")) == {
        "referrals": []}
    await go(world, rid, "accepted", "doctor", status=403)
    await go(world, rid, "accepted", "expert", status=403)      # staff, not a coordinator
    await go(world, rid, "admitted", "coordinator", status=409)
    await go(world, rid, "accepted", "coordinator")
    note = await call(world, "POST", f"/api/v1/referrals/{rid}/notes", "doctor",
                      {"text": "Patient leaves by ambulance at 14:00"}, status=201)
    assert note["kind"] == "note" and note["actor_id"] == world.people["doctor"].user_id
    await go(world, rid, "admitted", "coordinator")
    await go(world, rid, "cancelled", "doctor", status=409)
    done = await go(world, rid, "completed", "coordinator")
    assert (done["state"], done["allowed"]) == ("completed", [])
    await go(world, rid, "accepted", "coordinator", status=409)
    detail = await call(world, "GET", f"/api/v1/referrals/{rid}", "colleague")
    assert detail["patient"] == PATIENT
    people = world.people
    assert [(e["kind"], e["from"], e["to"], e["actor_id"]) for e in detail["events"]] == [
        ("transition", None, "requested", people["doctor"].user_id),
        ("transition", "requested", "accepted", people["coordinator"].user_id),
        ("note", None, None, people["doctor"].user_id),
        ("transition", "accepted", "admitted", people["coordinator"].user_id),
        ("transition", "admitted", "completed", people["coordinator"].user_id)]
    assert detail["events"][2]["note"] == "Patient leaves by ambulance at 14:00"
    stored = world.query(lambda s: s.scalar(sa.select(sa.func.count()).select_from(
        ReferralEvent).where(ReferralEvent.referral_id == rid)))
    assert stored == 5


async def test_only_the_two_hospitals_see_a_referral(world: World,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="consult_api")
    rid = (await send(world))["id"]
    for who in ("stranger",):
        response = await world.client.get(f"/api/v1/referrals/{rid}", headers=world.auth(who))
        assert response.status == 403
        text = await response.text()
        assert PATIENT["name"] not in text and PATIENT["record_number"] not in text
        assert await call(world, "GET", "/api/v1/referrals", who) == {"referrals": []}
        await go(world, rid, "cancelled", who, status=403)
        await call(world, "POST", f"/api/v1/referrals/{rid}/notes", who, {"text": "x"},
                   status=403)
    for who in ("doctor", "colleague", "expert", "coordinator", "admin"):
        detail = await call(world, "GET", f"/api/v1/referrals/{rid}", who)
        assert detail["patient"]["name"] == PATIENT["name"]
    listed = await call(world, "GET", "/api/v1/referrals", "doctor")
    assert [r["id"] for r in listed["referrals"]] == [rid]
    audit = world.query(lambda s: [(r.actor_id, r.action, r.outcome, r.ids) for r in s.scalars(
        sa.select(AuditLog).where(AuditLog.object_type == "referral").order_by(AuditLog.id))])
    people = world.people
    assert [(a, action) for a, action, outcome, ids in audit
            if outcome == "ok" and ids != []] == [
        (people[w].user_id, "referral.read") for w in
        ("doctor", "colleague", "expert", "coordinator", "admin")] + [
        (people["doctor"].user_id, "referral.list")]
    assert audit[-1][3] == [rid]  # the list row names what it returned
    # The stranger read nothing (its list came back empty), and each of its attempts on the
    # referral itself is recorded as refused.
    stranger = [row for row in audit if row[0] == people["stranger"].user_id]
    assert stranger and all(outcome == "refused" or ids == []
                            for _, _, outcome, ids in stranger)
    response = await world.client.get("/api/v1/referrals/999999",
                                      headers=world.auth("doctor"))
    assert response.status == 404
    for record in caplog.records:
        assert PATIENT["name"] not in record.getMessage()
        assert PATIENT["record_number"] not in record.getMessage()


async def test_a_down_referral_back_to_the_county(world: World) -> None:
    add_person(world, "county_coordinator", hospital(world, "doctor"), Role.COORDINATOR)
    county = hospital(world, "doctor")
    sent = await send(world, who="expert", direction="down", to_hospital_id=county,
                      reason="Rehabilitation after PCI")
    rid = sent["id"]
    assert sent["from_hospital_id"] == hospital(world, "expert")
    await go(world, rid, "accepted", "coordinator", status=403)     # the sending side
    await go(world, rid, "accepted", "county_coordinator")
    assert (await go(world, rid, "cancelled", "expert"))["state"] == "cancelled"
    # Rejected by the receiver; nothing moves after that.
    rejected = (await send(world, who="coordinator", direction="down",
                           to_hospital_id=county))["id"]
    await go(world, rejected, "rejected", "county_coordinator")
    await go(world, rejected, "cancelled", "coordinator", status=409)
    states = await call(world, "GET", "/api/v1/referrals?state=rejected", "county_coordinator")
    assert [r["id"] for r in states["referrals"]] == [rejected]


BAD_REFERRALS: list[tuple[dict[str, Any], str, int, str]] = [
    ({"direction": "down"}, "doctor", 400, "referral-direction"),
    ({"to_hospital_id": "doctor"}, "doctor", 400, "invalid-request"),
    ({"to_hospital_id": "stranger"}, "doctor", 400, "referral-direction"),
    ({"to_hospital_id": 999999}, "doctor", 400, "invalid-request"),
    ({"to_department_id": 999999}, "doctor", 400, "invalid-request"),
    ({"direction": "sideways"}, "doctor", 400, "invalid-request"),
    ({"reason": ""}, "doctor", 400, "invalid-request"),
    ({"patient": {**PATIENT, "age": 200}}, "doctor", 400, "invalid-request"),
    ({"patient": {**PATIENT, "sex": "x"}}, "doctor", 400, "invalid-request"),
    ({"patient": None}, "doctor", 400, "invalid-request"),
    ({}, "admin", 403, "forbidden"),
]


async def test_bad_referrals_are_refused_without_patient_data(world: World) -> None:
    for change, who, status, code in BAD_REFERRALS:
        if isinstance(change.get("to_hospital_id"), str):      # that person's hospital
            change = {**change, "to_hospital_id": hospital(world, change["to_hospital_id"])}
        response = await world.client.post("/api/v1/referrals", headers=world.auth(who), json={
            "direction": "up", "to_hospital_id": hospital(world, "coordinator"),
            "reason": "Needs PCI", "patient": PATIENT, **change})
        body = await response.json()
        assert (response.status, body["code"]) == (status, code), change
        assert PATIENT["name"] not in body["error"] and "MRN" not in body["error"]
    assert world.query(lambda s: s.scalar(sa.select(sa.func.count()).select_from(
        ReferralEvent))) == 0


async def test_a_referral_may_not_name_someone_elses_consultation(world: World) -> None:
    theirs = await create(world, who="stranger")
    refused = await send(world, consultation_id=theirs, status=400)
    assert refused["code"] == "invalid-request"
    for query in ("state=lost", "direction=left"):
        await call(world, "GET", f"/api/v1/referrals?{query}", "doctor", status=400)
    rid = (await send(world))["id"]
    await call(world, "POST", f"/api/v1/referrals/{rid}/transitions", "coordinator",
               {"to": "nowhere"}, status=400)
    await call(world, "POST", f"/api/v1/referrals/{rid}/notes", "coordinator", {"text": ""},
               status=400)


# --- the pure state machine --------------------------------------------------------------------

SENDER = Actor(user_id=1, role=Role.REQUESTING_DOCTOR, hospital_id=10)
RECEIVER = Actor(user_id=2, role=Role.COORDINATOR, hospital_id=20)
RECEIVING_EXPERT = Actor(user_id=3, role=Role.EXPERT, hospital_id=20)
OUTSIDER = Actor(user_id=4, role=Role.COORDINATOR, hospital_id=30)


def facts(state: ReferralState) -> ReferralFacts:
    return ReferralFacts(state=state, from_hospital_id=10, to_hospital_id=20)


def test_the_machine_says_who_moves_what() -> None:
    S = ReferralState
    assert allowed_targets(facts(S.REQUESTED), SENDER) == [S.CANCELLED]
    assert allowed_targets(facts(S.REQUESTED), RECEIVER) == [S.ACCEPTED, S.REJECTED]
    assert allowed_targets(facts(S.ACCEPTED), RECEIVER) == [S.ADMITTED]
    assert allowed_targets(facts(S.ACCEPTED), SENDER) == [S.CANCELLED]
    assert allowed_targets(facts(S.ADMITTED), RECEIVER) == [S.COMPLETED]
    for actor in (RECEIVING_EXPERT, OUTSIDER):
        for state in S:
            assert allowed_targets(facts(state), actor) == []
    for state in (S.REJECTED, S.CANCELLED, S.COMPLETED):
        for actor in (SENDER, RECEIVER):
            assert allowed_targets(facts(state), actor) == []
    with pytest.raises(InvalidTransition):
        check_transition(facts(S.REQUESTED), S.COMPLETED, RECEIVER)
    with pytest.raises(Forbidden):
        check_transition(facts(S.REQUESTED), S.ACCEPTED, SENDER)


def test_directions_follow_the_hospital_levels() -> None:
    assert direction_fits(Direction.UP, "county", "province")
    assert direction_fits(Direction.UP, "county", "prefecture")
    assert direction_fits(Direction.DOWN, "province", "county")
    assert not direction_fits(Direction.UP, "province", "county")
    assert not direction_fits(Direction.DOWN, "county", "county")
    assert not direction_fits(Direction.UP, "county", "county")
