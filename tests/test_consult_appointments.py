"""Experts' slots, booking into them, scheduling conflicts and the calendar, over real HTTP
on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from itertools import pairwise
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa

from consult_api.models import AuditLog, ExpertSlot
from tests.test_consult_api import PATIENT, REQUEST, World, create, move

DAY = "2026-03-10"


def at(hhmm: str, day: str = DAY) -> str:
    return f"{day}T{hhmm}:00+08:00"


async def call(world: World, method: str, path: str, who: str, body: Any = None,
               status: int = 200) -> Any:
    response = await world.client.request(method, path, json=body, headers=world.auth(who))
    result = None if response.status == 204 else await response.json()
    assert response.status == status, (path, result)
    return result


async def add_slot(world: World, start: str, end: str, who: str = "coordinator",
                   expert: str = "expert", status: int = 201) -> Any:
    return await call(world, "POST", f"/api/v1/experts/{world.people[expert].user_id}/slots",
                      who, {"start": at(start), "end": at(end)}, status)


async def slots(world: World, who: str = "coordinator", expert: str = "expert",
                **query: str) -> list[dict[str, Any]]:
    path = f"/api/v1/experts/{world.people[expert].user_id}/slots"
    window = {"from": at("00:00"), "to": at("23:59"), **query}
    found: list[dict[str, Any]] = (await call(world, "GET", f"{path}?{urlencode(window)}",
                                              who))["slots"]
    return found


async def book(world: World, cid: int, slot_id: int, who: str = "coordinator",
               status: int = 200) -> Any:
    return await call(world, "POST", f"/api/v1/consultations/{cid}/appointment", who,
                      {"slot_id": slot_id}, status)


async def test_touching_slots_are_fine_and_overlaps_are_refused(world: World) -> None:
    expert = world.people["expert"].user_id
    first = await add_slot(world, "09:00", "10:00")
    assert first == {"id": first["id"], "expert_id": expert, "start": "2026-03-10T01:00:00+00:00",
                     "end": "2026-03-10T02:00:00+00:00", "status": "free",
                     "consultation_id": None}
    await add_slot(world, "10:00", "11:00")              # touches the end
    await add_slot(world, "08:00", "09:00")              # touches the start
    for start, end in [("09:30", "10:30"), ("08:59", "09:01"), ("07:00", "12:00"),
                       ("09:00", "10:00"), ("09:10", "09:20")]:
        refused = await add_slot(world, start, end, status=409)
        assert refused["code"] == "slot-conflict", (start, end)
    # The expert manages their own slots; the same time is free for another expert.
    await add_slot(world, "11:00", "12:00", who="expert")
    await add_slot(world, "09:00", "10:00", expert="other_expert")
    listed = await slots(world, who="doctor")
    assert [(s["start"][11:16], s["status"]) for s in listed] == [
        ("00:00", "free"), ("01:00", "free"), ("02:00", "free"), ("03:00", "free")]
    # The window is half-open too: a slot ending at "from" is not listed.
    later = await slots(world, **{"from": at("10:00")})
    assert [s["start"][11:16] for s in later] == ["02:00", "03:00"]
    stored = world.query(lambda s: s.scalar(sa.select(sa.func.count()).select_from(
        ExpertSlot).where(ExpertSlot.expert_id == expert)))
    assert stored == 4


async def test_who_may_offer_slots_and_bad_input(world: World) -> None:
    await add_slot(world, "09:00", "10:00", who="doctor", status=403)
    await add_slot(world, "09:00", "10:00", who="expert", expert="other_expert", status=403)
    doctor_id = world.people["doctor"].user_id
    response = await world.client.post(f"/api/v1/experts/{doctor_id}/slots",
                                       json={"start": at("09:00"), "end": at("10:00")},
                                       headers=world.auth("coordinator"))
    assert response.status == 404
    expert = world.people["expert"].user_id
    for body in [{"start": at("10:00"), "end": at("09:00")},
                 {"start": "2026-03-10T09:00:00", "end": at("10:00")},
                 {"start": at("09:00")}, [], {"start": at("09:00"), "end": "2026-03-12T10:00"
                                                                           ":00+08:00"}]:
        response = await world.client.post(f"/api/v1/experts/{expert}/slots", json=body,
                                           headers=world.auth("coordinator"))
        assert response.status == 400, body
        assert (await response.json())["code"] == "invalid-request"
    response = await world.client.get(f"/api/v1/experts/{expert}/slots?from=yesterday",
                                      headers=world.auth("coordinator"))
    assert response.status == 400
    response = await world.client.get(f"/api/v1/experts/{expert}/slots")
    assert response.status == 401


async def test_booking_a_slot_schedules_and_the_slot_is_taken(world: World) -> None:
    slot = await add_slot(world, "09:00", "09:30")
    cid, other = await create(world), await create(world)
    await book(world, cid, slot["id"], who="doctor", status=403)
    await book(world, cid, slot["id"], who="expert", status=403)
    booked = await book(world, cid, slot["id"])
    assert booked["state"] == "scheduled"
    assert booked["expert_id"] == world.people["expert"].user_id
    assert booked["slot"] == {"start": "2026-03-10T01:00:00+00:00",
                              "end": "2026-03-10T01:30:00+00:00"}
    assert booked["room"].startswith(f"consult-{cid}-")
    detail = await call(world, "GET", f"/api/v1/consultations/{cid}", "doctor")
    assert [(t["from"], t["to"]) for t in detail["transitions"]][-1] == ("requested",
                                                                          "scheduled")
    taken = await book(world, other, slot["id"], status=409)
    assert taken["code"] == "slot-taken"
    assert (await call(world, "GET", f"/api/v1/consultations/{other}", "doctor"))[
        "state"] == "requested"
    await book(world, other, 999999, status=400)
    # Who sees which consultation a slot holds.
    for who, shown in [("coordinator", cid), ("doctor", cid), ("expert", cid),
                       ("stranger", None), ("other_expert", None)]:
        listed = await slots(world, who=who)
        assert [(s["status"], s["consultation_id"]) for s in listed] == [("booked", shown)]
    # A booked slot cannot be removed; a free one can, by its expert.
    refused = await call(world, "DELETE", f"/api/v1/slots/{slot['id']}", "coordinator",
                         status=409)
    assert refused["code"] == "slot-booked"
    free = await add_slot(world, "10:00", "10:30")
    await call(world, "DELETE", f"/api/v1/slots/{free['id']}", "doctor", status=403)
    await call(world, "DELETE", f"/api/v1/slots/{free['id']}", "expert", status=204)
    await call(world, "DELETE", f"/api/v1/slots/{free['id']}", "expert", status=404)


async def test_cancelling_frees_the_slot(world: World) -> None:
    slot = await add_slot(world, "09:00", "09:30")
    cid, other = await create(world), await create(world)
    await book(world, cid, slot["id"])
    await move(world, cid, "cancelled", "doctor")
    assert [(s["status"], s["consultation_id"]) for s in await slots(world)] == [
        ("free", None)]
    assert (await book(world, other, slot["id"]))["state"] == "scheduled"


async def test_free_time_scheduling_refuses_clashes(world: World) -> None:
    expert = world.people["expert"].user_id

    async def schedule_at(cid: int, start: str, end: str, status: int = 200,
                          who: str = "expert") -> Any:
        return await call(world, "POST", f"/api/v1/consultations/{cid}/schedule",
                          "coordinator", {"start": at(start), "end": at(end),
                                          "expert_id": world.people[who].user_id}, status)

    first, second, third = await create(world), await create(world), await create(world)
    await schedule_at(first, "09:00", "09:30")
    # The booking is a booked slot of the expert.
    assert [(s["start"][11:16], s["status"], s["consultation_id"])
            for s in await slots(world)] == [("01:00", "booked", first)]
    clash = await schedule_at(second, "09:15", "09:45", status=409)
    assert clash["code"] == "slot-conflict"
    assert (await call(world, "GET", f"/api/v1/consultations/{second}", "doctor"))[
        "state"] == "requested"
    await schedule_at(second, "09:30", "10:00")          # touching is fine
    await schedule_at(third, "09:00", "09:30", who="other_expert")   # another expert
    # An offered slot: its exact time books it; a partial overlap is refused.
    offered = await add_slot(world, "14:00", "15:00")
    fourth, fifth = await create(world), await create(world)
    assert (await schedule_at(fourth, "14:30", "15:30", status=409))["code"] == "slot-conflict"
    await schedule_at(fourth, "14:00", "15:00")
    after = {s["id"]: s for s in await slots(world)}
    assert after[offered["id"]]["consultation_id"] == fourth
    assert len(after) == 3
    # Once the first one is cancelled its time is free again.
    await move(world, first, "cancelled", "doctor")
    await schedule_at(fifth, "09:00", "09:30")
    count = world.query(lambda s: s.scalar(sa.select(sa.func.count()).select_from(
        ExpertSlot).where(ExpertSlot.expert_id == expert)))
    assert count == 3        # the freed slot was booked again, not duplicated


async def test_two_concurrent_bookings_of_one_slot_have_one_winner(world: World) -> None:
    for round_ in range(3):
        slot = await add_slot(world, f"0{round_ + 7}:00", f"0{round_ + 7}:30")
        cids = [await create(world) for _ in range(4)]
        responses = await asyncio.gather(*[
            world.client.post(f"/api/v1/consultations/{cid}/appointment",
                              json={"slot_id": slot["id"]}, headers=world.auth("coordinator"))
            for cid in cids])
        assert sorted(r.status for r in responses) == [200, 409, 409, 409]
        codes = [(await r.json()).get("code") for r in responses if r.status == 409]
        assert codes == ["slot-taken"] * 3
    booked = world.query(lambda s: s.scalar(sa.select(sa.func.count()).select_from(
        ExpertSlot).where(ExpertSlot.consultation_id.is_not(None))))
    assert booked == 3


async def test_concurrent_overlapping_slots_have_one_winner(world: World) -> None:
    expert = world.people["expert"].user_id
    bodies = [{"start": at(f"1{i}:00"), "end": at(f"1{i + 1}:30")} for i in range(4)]
    bodies += [{"start": at("12:15"), "end": at("12:45")}] * 3
    responses = await asyncio.gather(*[
        world.client.post(f"/api/v1/experts/{expert}/slots", json=body,
                          headers=world.auth("coordinator")) for body in bodies])
    created = [body for body, r in zip(bodies, responses, strict=True) if r.status == 201]
    assert all(r.status in (201, 409) for r in responses)
    # Whatever won, no two stored slots of the expert overlap.
    stored = world.query(lambda s: [(x.start_at, x.end_at) for x in s.scalars(
        sa.select(ExpertSlot).where(ExpertSlot.expert_id == expert)
        .order_by(ExpertSlot.start_at))])
    assert len(stored) == len(created) >= 2
    for (_, end), (start, _) in pairwise(stored):
        assert end <= start
    # Several concurrent requests for one identical time: exactly one is created.
    same = await asyncio.gather(*[
        world.client.post(f"/api/v1/experts/{expert}/slots",
                          json={"start": at("20:00"), "end": at("21:00")},
                          headers=world.auth("coordinator")) for _ in range(6)])
    assert sorted(r.status for r in same) == [201] + [409] * 5


async def test_the_calendar_shows_patients_only_to_readers(world: World) -> None:
    slot = await add_slot(world, "09:00", "09:30")
    other_slot = await add_slot(world, "09:00", "09:30", expert="other_expert")
    cid = await create(world)
    stranger_cid = await create(world, who="stranger")
    await book(world, cid, slot["id"])
    await book(world, stranger_cid, other_slot["id"])
    window = urlencode({"from": at("00:00"), "to": at("23:59")})
    full = (await call(world, "GET", f"/api/v1/appointments?{window}", "coordinator"))[
        "appointments"]
    assert [(e["consultation_id"], e["patient"]["name"]) for e in full] == [
        (cid, PATIENT["name"]), (stranger_cid, PATIENT["name"])]
    entry = full[0]
    assert (entry["state"], entry["urgency"], entry["requesting_hospital"]) == (
        "scheduled", REQUEST["urgency"], "Xian County People's Hospital")
    assert entry["expert_id"] == world.people["expert"].user_id
    only_expert = (await call(world, "GET", f"/api/v1/appointments?{window}&expert_id="
                              f"{world.people['other_expert'].user_id}", "coordinator"))
    assert [e["slot_id"] for e in only_expert["appointments"]] == [other_slot["id"]]
    response = await world.client.get(f"/api/v1/appointments?{window}",
                                      headers=world.auth("stranger"))
    text = await response.text()
    seen = (await response.json())["appointments"]
    assert [(e["consultation_id"], e["patient"] is None) for e in seen] == [
        (None, True), (stranger_cid, False)]
    assert seen[0]["requesting_hospital"] == "Xian County People's Hospital"
    assert text.count(PATIENT["name"]) == 1 and PATIENT["record_number"] not in text
    # One audit row per calendar read, with the ids of the consultations it showed.
    audited = world.query(lambda s: sorted(
        (r.actor_id, tuple(r.ids or ())) for r in s.scalars(sa.select(AuditLog).where(
            AuditLog.action == "consultation.calendar"))))
    people = world.people
    # The coordinator read it twice (whole calendar, then one expert's).
    assert audited == sorted([(people["coordinator"].user_id, tuple(sorted([cid, stranger_cid]))),
                              (people["coordinator"].user_id, (stranger_cid,)),
                              (people["stranger"].user_id, (stranger_cid,))])
    bad = await world.client.get("/api/v1/appointments?from=2026-03-10T00:00:00%2B00:00&to="
                                 "2026-03-01T00:00:00%2B00:00", headers=world.auth("admin"))
    assert bad.status == 400


async def test_incoming_queue_and_worklists(world: World) -> None:
    queued = await create(world)
    assigned = await create(world, {**REQUEST, "expert_id": world.people["expert"].user_id},
                            who="colleague")
    await move(world, assigned, "accepted", "expert")
    incoming = await call(world, "GET", "/api/v1/consultations?state=requested", "coordinator")
    assert [c["id"] for c in incoming["consultations"]] == [queued]
    everything = await call(world, "GET", "/api/v1/consultations", "coordinator")
    assert [c["id"] for c in everything["consultations"]] == [assigned, queued]  # newest first
    mine = await call(world, "GET", "/api/v1/consultations?mine=1", "expert")
    assert [c["id"] for c in mine["consultations"]] == [assigned]
    own = await call(world, "GET", "/api/v1/consultations?mine=1", "doctor")
    assert [c["id"] for c in own["consultations"]] == [queued]
    hospital = await call(world, "GET", "/api/v1/consultations?mine=0", "doctor")
    assert [c["id"] for c in hospital["consultations"]] == [assigned, queued]
    for query in ("state=bogus", "mine=yes"):
        bad = await call(world, "GET", f"/api/v1/consultations?{query}", "coordinator",
                         status=400)
        assert bad["code"] == "invalid-request"


async def test_experts_come_with_specialty_and_department(world: World) -> None:
    experts = (await call(world, "GET", "/api/v1/experts", "doctor"))["experts"]
    by_id = {e["id"]: e for e in experts}
    mine = by_id[world.people["expert"].user_id]
    assert (mine["specialty"], mine["department"]) == ("cardiology", "Cardiology")
    assert isinstance(mine["department_id"], int)
    assert by_id[world.people["other_expert"].user_id]["specialty"] is None
