"""The consultation records API end to end, over real HTTP, on SQLite AND PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient
from sqlalchemy.orm import Session

from consult_api import accounts, audit, records
from consult_api.app import create_app
from consult_api.db import make_engine, make_sessionmaker
from consult_api.models import AuditLog, ConsultationTransition
from consult_api.workflow import Actor, Role
from signaling.tokens import TokenAuthority

SECRET = "consult-test-secret-" + "x" * 20
MEDIA_TOKENS = TokenAuthority("media-test-secret-" + "y" * 20, "huizhen", "huizhen-media")
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
PATIENT: dict[str, Any] = {
    "name": "Zhang Wei", "sex": "male", "age": 63, "record_number": "MRN-0042",
    "summary": "Chest pain for 3 days; ECG attached."}
REQUEST: dict[str, Any] = {
    "patient": PATIENT, "question": "Is this an NSTEMI?", "urgency": "urgent",
    "type": "interactive"}


class Clock:
    """Advances one minute per reading, so every transition has its own time."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


class DbTokens:
    """Real API tokens for test people, issued through the database like an admin would
    (one per person, cached), valid for a year from the real clock."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.issued: dict[int, str] = {}

    def mint(self, actor: Actor) -> str:
        if actor.user_id not in self.issued:
            engine = make_engine(self.url)
            try:
                _, token, _ = records.run_in_session(
                    make_sessionmaker(engine), lambda s: accounts.issue_api_token(
                        s, SECRET, actor.user_id, "tests", accounts.API_TOKEN_MAX_TTL,
                        datetime.now(UTC)))
            finally:
                engine.dispose()
            self.issued[actor.user_id] = token
        return self.issued[actor.user_id]


@dataclass
class World:
    client: TestClient[Any, Any]
    url: str
    people: dict[str, Actor]
    tokens: DbTokens

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens.mint(self.people[who])}"}

    def query(self, work: Callable[[Session], Any]) -> Any:
        engine = make_engine(self.url)
        try:
            return records.run_in_session(make_sessionmaker(engine), work)
        finally:
            engine.dispose()


def seed(session: Session) -> dict[str, Actor]:
    county = records.add_hospital(session, "Xian County People's Hospital", "county")
    other = records.add_hospital(session, "Another County Hospital", "county")
    province = records.add_hospital(session, "Provincial Hospital", "province")
    cardio = records.add_department(session, province, "Cardiology")
    spec: dict[str, tuple[int, Role]] = {
        "doctor": (county, Role.REQUESTING_DOCTOR),
        "colleague": (county, Role.REQUESTING_DOCTOR),
        "stranger": (other, Role.REQUESTING_DOCTOR),
        "expert": (province, Role.EXPERT),
        "other_expert": (province, Role.EXPERT),
        "coordinator": (province, Role.COORDINATOR),
        "admin": (province, Role.ADMIN),
    }
    people = {}
    for name, (hospital, role) in spec.items():
        user = records.add_user(session, hospital, name.title(), role,
                                cardio if role is Role.EXPERT else None)
        people[name] = Actor(user_id=user, role=role, hospital_id=hospital)
    records.add_expert_profile(session, people["expert"].user_id, "cardiology", "Mon-Fri AM")
    return people


async def create(world: World, body: dict[str, Any] | None = None, who: str = "doctor") -> int:
    response = await world.client.post("/api/v1/consultations", json=body or REQUEST,
                                       headers=world.auth(who))
    assert response.status == 201, await response.text()
    return int((await response.json())["id"])


async def move(world: World, cid: int, to: str, who: str, status: int = 200) -> dict[str, Any]:
    response = await world.client.post(f"/api/v1/consultations/{cid}/transitions",
                                       json={"to": to, "note": f"{who} -> {to}"},
                                       headers=world.auth(who))
    body: dict[str, Any] = await response.json()
    assert response.status == status, body
    return body


async def schedule(world: World, cid: int, who: str = "coordinator",
                   status: int = 200, day: int = 3) -> dict[str, Any]:
    """Half an hour with the expert on 2026-03-``day`` (one booking per day: the expert
    cannot be booked twice at one time)."""
    body = {"start": f"2026-03-{day:02d}T09:00:00+08:00",
            "end": f"2026-03-{day:02d}T09:30:00+08:00",
            "expert_id": world.people["expert"].user_id}
    response = await world.client.post(f"/api/v1/consultations/{cid}/schedule", json=body,
                                       headers=world.auth(who))
    result: dict[str, Any] = await response.json()
    assert response.status == status, result
    return result


async def test_whole_workflow_end_to_end(world: World) -> None:
    cid = await create(world)
    scheduled = await schedule(world, cid)
    assert scheduled["state"] == "scheduled"
    assert scheduled["expert_id"] == world.people["expert"].user_id
    assert scheduled["room"].startswith(f"consult-{cid}-")
    assert scheduled["slot"] == {"start": "2026-03-03T01:00:00+00:00",
                                 "end": "2026-03-03T01:30:00+00:00"}
    # Invalid moves are refused with 409 and change nothing.
    await move(world, cid, "closed", "doctor", status=409)
    await move(world, cid, "reported", "expert", status=409)
    assert (await move(world, cid, "in_session", "expert"))["state"] == "in_session"
    await move(world, cid, "cancelled", "doctor", status=409)
    assert (await move(world, cid, "reported", "expert"))["state"] == "reported"
    assert (await move(world, cid, "closed", "doctor"))["state"] == "closed"
    await move(world, cid, "requested", "doctor", status=409)

    response = await world.client.get(f"/api/v1/consultations/{cid}",
                                      headers=world.auth("doctor"))
    detail = await response.json()
    assert response.status == 200
    assert detail["patient"] == PATIENT
    assert detail["state"] == "closed"
    people = world.people
    assert [(t["from"], t["to"], t["actor_id"]) for t in detail["transitions"]] == [
        (None, "requested", people["doctor"].user_id),
        ("requested", "scheduled", people["coordinator"].user_id),
        ("scheduled", "in_session", people["expert"].user_id),
        ("in_session", "reported", people["expert"].user_id),
        ("reported", "closed", people["doctor"].user_id),
    ]
    times = [datetime.fromisoformat(t["at"]) for t in detail["transitions"]]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert all(t.tzinfo is not None and t > START for t in times)
    assert detail["transitions"][2]["note"] == "expert -> in_session"
    stored = world.query(lambda s: s.scalar(sa.select(sa.func.count()).select_from(
        ConsultationTransition).where(ConsultationTransition.consultation_id == cid)))
    assert stored == 5


async def test_accept_then_offline_report(world: World) -> None:
    body = {**REQUEST, "type": "offline", "expert_id": world.people["expert"].user_id}
    cid = await create(world, body)
    await move(world, cid, "accepted", "other_expert", status=403)
    await move(world, cid, "accepted", "expert")
    await move(world, cid, "reported", "expert")
    await move(world, cid, "closed", "colleague", status=403)
    assert (await move(world, cid, "closed", "doctor"))["state"] == "closed"


async def test_reject_and_cancel(world: World) -> None:
    body = {**REQUEST, "expert_id": world.people["expert"].user_id}
    rejected, cancelled = await create(world, body), await create(world, body)
    await move(world, rejected, "rejected", "expert")
    await move(world, rejected, "accepted", "expert", status=409)
    await move(world, cancelled, "cancelled", "expert", status=403)
    await move(world, cancelled, "cancelled", "doctor")
    await schedule(world, cancelled, status=409)


async def test_schedule_needs_a_coordinator(world: World) -> None:
    cid = await create(world)
    await schedule(world, cid, who="doctor", status=403)
    await schedule(world, cid, who="admin")
    response = await world.client.post(f"/api/v1/consultations/{cid}/transitions",
                                       json={"to": "scheduled"}, headers=world.auth("admin"))
    assert response.status == 400


@pytest.mark.parametrize("who", ["stranger", "other_expert"])
async def test_unauthorised_reads_are_forbidden(world: World, who: str) -> None:
    cid = await create(world)
    await schedule(world, cid)
    response = await world.client.get(f"/api/v1/consultations/{cid}", headers=world.auth(who))
    assert response.status == 403
    text = await response.text()
    assert PATIENT["name"] not in text and PATIENT["record_number"] not in text
    listed = await (await world.client.get("/api/v1/consultations",
                                           headers=world.auth(who))).json()
    assert listed == {"consultations": [], "next_before_id": None}
    await move(world, cid, "cancelled", who, status=403)
    # The refused attempts are audited (in their own transaction), and so is the empty list.
    audited = world.query(lambda s: [
        (a.action, a.outcome, a.object_type, a.object_id, a.ids, a.detail)
        for a in s.scalars(sa.select(AuditLog).where(
            AuditLog.actor_id == world.people[who].user_id).order_by(AuditLog.id))])
    assert audited == [
        ("consultation.read", "refused", "consultation", cid, None, "forbidden"),
        ("consultation.list", "ok", "consultation", None, [], None),
        ("consultation.transition", "refused", "consultation", cid, None, "forbidden")]


@pytest.mark.parametrize("who", ["doctor", "colleague", "expert", "coordinator", "admin"])
async def test_authorised_reads_and_their_audit_rows(world: World, who: str) -> None:
    cid = await create(world)
    await schedule(world, cid)
    response = await world.client.get(f"/api/v1/consultations/{cid}", headers=world.auth(who))
    assert response.status == 200
    assert (await response.json())["patient"]["name"] == PATIENT["name"]
    listed = await (await world.client.get("/api/v1/consultations",
                                           headers=world.auth(who))).json()
    assert [c["id"] for c in listed["consultations"]] == [cid]
    assert "patient" not in listed["consultations"][0]
    rows = world.query(lambda s: audit.rows_about(s, "consultation", cid))
    assert [(r["actor_id"], r["action"], r["outcome"], r["object_id"], r["ids"])
            for r in rows] == [
        (world.people[who].user_id, "consultation.read", "ok", cid, None),
        (world.people[who].user_id, "consultation.list", "ok", None, [cid])]


async def test_no_token_is_401(world: World) -> None:
    cid = await create(world)
    for method, path in [("GET", "/api/v1/consultations"),
                         ("GET", f"/api/v1/consultations/{cid}"),
                         ("POST", "/api/v1/consultations"),
                         ("POST", f"/api/v1/consultations/{cid}/transitions")]:
        response = await world.client.request(method, path, json=REQUEST)
        assert response.status == 401, (method, path)
    response = await world.client.get(f"/api/v1/consultations/{cid}",
                                      headers={"Authorization": "Bearer forged.token.here"})
    assert response.status == 401


async def test_unknown_consultation_is_404(world: World) -> None:
    for path in ["/api/v1/consultations/999999", "/api/v1/consultations/abc"]:
        response = await world.client.get(path, headers=world.auth("admin"))
        assert response.status == 404
    response = await world.client.post("/api/v1/consultations/999999/transitions",
                                       json={"to": "closed"}, headers=world.auth("doctor"))
    assert response.status == 404


@pytest.mark.parametrize(("change", "message"), [
    ({"urgency": "whenever"}, "urgency must be one of"),
    ({"type": None}, "type must be one of"),
    ({"question": ""}, "question must be a non-empty string"),
    ({"patient": {**PATIENT, "age": 400}}, "patient.age must be an integer"),
    ({"patient": {**PATIENT, "sex": "Zhang Wei"}}, "patient.sex must be one of"),
    ({"patient": {**PATIENT, "name": ""}}, "patient.name must be a non-empty string"),
    ({"patient": "Zhang Wei, 63"}, "patient must be a JSON object"),
    ({"expert_id": 999999}, "expert_id does not name an expert"),
])
async def test_validation_errors_are_400_without_patient_data(
        world: World, change: dict[str, Any], message: str) -> None:
    response = await world.client.post("/api/v1/consultations", json={**REQUEST, **change},
                                       headers=world.auth("doctor"))
    assert response.status == 400
    text = await response.text()
    assert message in text
    assert "Zhang" not in text and "MRN" not in text


async def test_bad_bodies_are_400(world: World) -> None:
    cid = await create(world)
    response = await world.client.post("/api/v1/consultations", data=b"{not json",
                                       headers=world.auth("doctor"))
    assert response.status == 400
    bad_schedules = [
        {"start": "2026-03-03T09:00:00", "end": "2026-03-03T10:00:00+00:00", "expert_id": 1},
        {"start": "2026-03-03T10:00:00+00:00", "end": "2026-03-03T09:00:00+00:00",
         "expert_id": 1},
        {"start": "2026-03-03T09:00:00+00:00", "end": "2026-03-03T10:00:00+00:00"},
        {"start": "2026-03-03T09:00:00+00:00", "end": "2026-03-03T10:00:00+00:00",
         "expert_id": world.people["doctor"].user_id},
    ]
    for body in bad_schedules:
        response = await world.client.post(f"/api/v1/consultations/{cid}/schedule", json=body,
                                           headers=world.auth("coordinator"))
        assert response.status == 400, body


async def test_only_requesting_doctors_create(world: World) -> None:
    response = await world.client.post("/api/v1/consultations", json=REQUEST,
                                       headers=world.auth("expert"))
    assert response.status == 403


async def test_concurrent_transitions_have_one_winner(world: World) -> None:
    for day in range(3, 6):
        cid = await create(world)
        await schedule(world, cid, day=day)
        responses = await asyncio.gather(*[
            world.client.post(f"/api/v1/consultations/{cid}/transitions",
                              json={"to": "in_session"}, headers=world.auth("expert"))
            for _ in range(8)])
        assert sorted(r.status for r in responses) == [200] + [409] * 7
    stored = world.query(lambda s: s.scalar(sa.select(sa.func.count()).select_from(
        ConsultationTransition).where(ConsultationTransition.to_state == "in_session")))
    assert stored == 3


async def test_no_patient_data_in_logs(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="consult_api")
    cid = await create(world)
    await schedule(world, cid)
    await move(world, cid, "in_session", "expert")
    await world.client.get(f"/api/v1/consultations/{cid}", headers=world.auth("doctor"))
    await world.client.get(f"/api/v1/consultations/{cid}", headers=world.auth("stranger"))
    assert any(f"consultation {cid}" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        for value in (PATIENT["name"], PATIENT["record_number"], "Chest pain"):
            assert value not in record.getMessage()


async def test_admin_builds_the_directory(world: World) -> None:
    client, admin = world.client, world.auth("admin")
    response = await client.post("/api/v1/hospitals", json={"name": "Prefecture Hospital",
                                                            "level": "prefecture"},
                                 headers=admin)
    assert response.status == 201
    hospital = (await response.json())["id"]
    response = await client.post("/api/v1/users", headers=admin, json={
        "hospital_id": hospital, "display_name": "Dr Li", "role": "expert",
        "specialty": "neurology", "availability": "Tue PM"})
    assert response.status == 201
    new_expert = (await response.json())["id"]
    experts = (await (await client.get("/api/v1/experts",
                                       headers=world.auth("doctor"))).json())["experts"]
    by_id = {e["id"]: e for e in experts}
    assert by_id[new_expert]["specialty"] == "neurology"
    assert by_id[new_expert]["hospital_level"] == "prefecture"
    assert by_id[world.people["expert"].user_id]["specialty"] == "cardiology"
    assert world.people["doctor"].user_id not in by_id
    # The new expert can be assigned and then read the consultation.
    cid = await create(world, {**REQUEST, "expert_id": new_expert})
    token = world.tokens.mint(Actor(user_id=new_expert, role=Role.EXPERT,
                                    hospital_id=hospital))
    response = await client.get(f"/api/v1/consultations/{cid}",
                                headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200


@pytest.mark.parametrize(("path", "body", "status"), [
    ("/api/v1/hospitals", {"name": "H", "level": "village"}, 400),
    ("/api/v1/hospitals", {"name": "", "level": "county"}, 400),
    ("/api/v1/users", {"hospital_id": 999999, "display_name": "X", "role": "admin"}, 400),
    ("/api/v1/users", {"hospital_id": 1, "display_name": "X", "role": "expert"}, 400),
    ("/api/v1/users", {"hospital_id": 1, "display_name": "X", "role": "nurse"}, 400),
    ("/api/v1/users", {"hospital_id": 1, "display_name": "X", "role": "admin",
                       "department_id": 999999}, 400),
])
async def test_directory_validation(world: World, path: str, body: dict[str, Any],
                                    status: int) -> None:
    response = await world.client.post(path, json=body, headers=world.auth("admin"))
    assert response.status == status, await response.text()


@pytest.mark.parametrize("who", ["doctor", "expert", "coordinator"])
async def test_only_admins_edit_the_directory(world: World, who: str) -> None:
    response = await world.client.post("/api/v1/hospitals", json={"name": "H",
                                                                  "level": "county"},
                                       headers=world.auth(who))
    assert response.status == 403
    response = await world.client.get("/api/v1/experts")
    assert response.status == 401


async def room_token(client: TestClient[Any, Any], world: World, cid: int,
                     who: str) -> tuple[int, dict[str, Any]]:
    response = await client.post(f"/api/v1/consultations/{cid}/room-token",
                                 headers=world.auth(who))
    return response.status, await response.json()


async def test_room_tokens_for_the_live_session(world: World, aiohttp_client: Any) -> None:
    # The media server checks expiry against the real clock: run this app on it.
    now = datetime.now(UTC).replace(microsecond=0)
    client = await aiohttp_client(create_app(world.url, SECRET, room_tokens=MEDIA_TOKENS))
    world.client = client
    cid = await create(world)
    status, body = await room_token(client, world, cid, "doctor")
    assert status == 409
    body = {"start": (now + timedelta(hours=2)).isoformat(),
            "end": (now + timedelta(hours=3)).isoformat(),
            "expert_id": world.people["expert"].user_id}
    response = await client.post(f"/api/v1/consultations/{cid}/schedule", json=body,
                                 headers=world.auth("coordinator"))
    room = (await response.json())["room"]
    for who, role in [("doctor", "ward"), ("colleague", "ward"), ("expert", "expert"),
                      ("coordinator", "observer"), ("admin", "observer")]:
        status, body = await room_token(client, world, cid, who)
        assert status == 200, body
        grant = MEDIA_TOKENS.verify(body["token"])
        assert (grant.room, grant.role, body["room"], body["role"]) == (room, role, room, role)
        expected_end = now + timedelta(hours=4)
        assert abs(grant.expires_at - expected_end.timestamp()) <= 120
    for who in ("stranger", "other_expert"):
        status, body = await room_token(client, world, cid, who)
        assert status == 403
    rows = world.query(lambda s: audit.rows_about(s, "consultation", cid))
    tokens = [r["outcome"] for r in rows if r["action"] == "consultation.room_token"]
    assert tokens == ["ok"] * 5 + ["refused"] * 2
    await move(world, cid, "in_session", "expert")
    assert (await room_token(client, world, cid, "expert"))[0] == 200
    await move(world, cid, "reported", "expert")
    assert (await room_token(client, world, cid, "expert"))[0] == 409


async def test_room_tokens_need_a_configured_authority(world: World,
                                                       aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(world.url, SECRET, clock=Clock()))
    world.client = client
    cid = await create(world)
    await schedule(world, cid)
    status, body = await room_token(client, world, cid, "doctor")
    assert status == 503
    assert body == {"error": "live room tokens are not configured on this server",
                    "code": "unavailable"}


async def test_the_list_comes_in_pages_newest_first(world: World) -> None:
    """A province's whole history is never sent (nor audited) at once: pages of ``limit``,
    the next one from ``before_id``; each page is one audit row naming what it returned."""
    cids = [await create(world) for _ in range(5)]
    seen: list[int] = []
    before: int | None = None
    pages = 0
    while True:
        query = "limit=2" + (f"&before_id={before}" if before else "")
        response = await world.client.get(f"/api/v1/consultations?{query}",
                                          headers=world.auth("coordinator"))
        body = await response.json()
        assert response.status == 200, body
        seen += [c["id"] for c in body["consultations"]]
        pages += 1
        before = body["next_before_id"]
        if before is None:
            break
    assert seen == cids[::-1] and pages == 3
    lists = world.query(lambda s: [r.ids for r in s.scalars(sa.select(AuditLog).where(
        AuditLog.action == "consultation.list").order_by(AuditLog.id))])
    assert lists == [cids[4:2:-1], cids[2:0:-1], cids[:1]]
    for bad in ("limit=0", "limit=201", "limit=x", "before_id=0", "before_id=-3",
                "before_id=99999999999"):
        response = await world.client.get(f"/api/v1/consultations?{bad}",
                                          headers=world.auth("coordinator"))
        assert response.status == 400, bad
        assert (await response.json())["code"] == "invalid-request"
