"""Statistics: the pure computation, and the API on a seeded dataset (SQLite AND PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session

from consult_api import records, reports
from consult_api.app import create_app
from consult_api.db import make_engine, make_sessionmaker
from consult_api.schemas import ScheduleIn, TransitionIn, parse_consultation
from consult_api.statistics import (
    ConsultationRow,
    Directory,
    PublishedRow,
    TransitionRow,
    compute,
    percentile,
)
from consult_api.workflow import Actor, State
from tests.test_consult_api import MEDIA_TOKENS, REQUEST, SECRET, Clock, DbTokens, World, seed

T0 = datetime(2026, 1, 10, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.9) == 7.0
    assert percentile([2.0, 6.0, 4.0], 0.5) == 4.0
    assert percentile([2.0, 4.0, 6.0], 0.9) == pytest.approx(5.6)
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5


def test_compute_over_plain_rows() -> None:
    rows = [ConsultationRow(1, 10, 20, 100, T0, "I21.4"),
            ConsultationRow(2, 10, None, 100, T0 + 30 * 24 * H, None),
            ConsultationRow(3, 11, 20, 101, T0 + 40 * 24 * H, "I21.4")]
    transitions = [TransitionRow(1, "requested", T0),
                   TransitionRow(1, "scheduled", T0 + 3 * H),
                   TransitionRow(1, "reported", T0 + 12 * H),
                   TransitionRow(3, "accepted", T0 + 40 * 24 * H + H),
                   TransitionRow(3, "reported", T0 + 40 * 24 * H + 6 * H),
                   TransitionRow(99, "reported", T0)]  # not in the rows: ignored
    result = compute(rows, transitions)
    assert result["total"] == 3
    assert result["per_requesting_doctor"] == {"10": 2, "11": 1}
    assert result["per_expert"] == {"20": 2}
    assert result["per_requesting_hospital"] == {"100": 2, "101": 1}
    assert result["per_diagnosis"] == {"I21.4": 2}
    assert result["per_month"] == {"2026-01": 1, "2026-02": 2}
    assert result["turnaround"] == {
        "request_to_scheduled": {"count": 1, "median_hours": 3.0, "p90_hours": 3.0},
        "request_to_reported": {"count": 2, "median_hours": 9.0, "p90_hours": 11.4}}
    empty = compute([], [])
    assert empty["total"] == 0
    assert empty["turnaround"]["request_to_reported"] == {
        "count": 0, "median_hours": None, "p90_hours": None}
    assert empty["by_month"] == [] and empty["by_diagnosis"] == []
    assert set(empty["by_state"].values()) == {0}


def test_compute_names_codes_months_and_states() -> None:
    rows = [ConsultationRow(1, 10, 20, 100, T0, "NSTEMI", "I21.4", "reported"),
            ConsultationRow(2, 10, 21, 101, T0 + 25 * 24 * H, "胸痛待查", None, "reported"),
            ConsultationRow(3, 11, None, 100, T0 + 26 * 24 * H, None, None, "requested"),
            ConsultationRow(4, 12, 20, 100, T0 + 27 * 24 * H, "another text", "I21.4",
                            "cancelled")]
    transitions = [TransitionRow(1, "scheduled", T0 + 2 * H),
                   TransitionRow(1, "reported", T0 + 8 * H),
                   # Requested in January, reported in February.
                   TransitionRow(2, "reported", T0 + 25 * 24 * H + 48 * H)]
    directory = Directory(hospitals={100: "县医院", 101: "Other"},
                          users={10: "王医生", 11: "李医生", 20: "张专家"},
                          codes={"I21.4": ("急性心内膜下心肌梗死",
                                           "Acute subendocardial myocardial infarction")})
    published = [PublishedRow(1, 1), PublishedRow(1, 2), PublishedRow(2, 1),
                 PublishedRow(99, 1)]  # not in the rows: ignored
    result = compute(rows, transitions, directory, published)
    assert result["per_diagnosis"] == {"I21.4": 2, "胸痛待查": 1}
    assert result["by_diagnosis"] == [
        {"code": "I21.4", "name_zh": "急性心内膜下心肌梗死",
         "name_en": "Acute subendocardial myocardial infarction", "diagnosis": None,
         "count": 2},
        {"code": None, "name_zh": None, "name_en": None, "diagnosis": "胸痛待查", "count": 1}]
    assert result["by_hospital"] == [{"hospital_id": 100, "name": "县医院", "count": 3},
                                     {"hospital_id": 101, "name": "Other", "count": 1}]
    # Ties by name; an id without a name (a deleted user) still counts.
    assert result["by_requesting_doctor"] == [
        {"user_id": 10, "name": "王医生", "count": 2},
        {"user_id": 12, "name": None, "count": 1},
        {"user_id": 11, "name": "李医生", "count": 1}]
    assert result["by_expert"] == [{"user_id": 20, "name": "张专家", "count": 2},
                                   {"user_id": 21, "name": None, "count": 1}]
    assert result["by_state"] == {"requested": 1, "accepted": 0, "scheduled": 0,
                                  "in_session": 0, "reported": 2, "closed": 0,
                                  "rejected": 0, "cancelled": 1}
    none = {"count": 0, "median_hours": None, "p90_hours": None}
    assert result["by_month"] == [
        {"month": "2026-01", "requested": 1, "reported": 1, "turnaround": {
            "request_to_scheduled": {"count": 1, "median_hours": 2.0, "p90_hours": 2.0},
            "request_to_reported": {"count": 1, "median_hours": 8.0, "p90_hours": 8.0}}},
        {"month": "2026-02", "requested": 3, "reported": 1, "turnaround": {
            "request_to_scheduled": none,
            "request_to_reported": {"count": 1, "median_hours": 48.0, "p90_hours": 48.0}}}]
    assert (result["reports_published"], result["amendments_published"]) == (3, 1)


def dataset(session: Session) -> dict[str, Actor]:
    """Four consultations with known times: see test_statistics_numbers_are_exact."""
    people = seed(session)
    expert, other = people["expert"], people["other_expert"]
    interactive = parse_consultation(REQUEST)

    def scheduled(requester: str, at: datetime, after: float) -> int:
        cid = records.create_consultation(session, people[requester], interactive, at)
        records.schedule(session, people["coordinator"], cid, ScheduleIn(
            start=at + 48 * H, end=at + 49 * H, expert_id=expert.user_id), at + after * H)
        return cid

    def report(cid: int, author: Actor, edit: dict[str, Any], at: datetime) -> int:
        r = reports.create_draft(session, author, cid, reports.DraftIn(None), at)
        reports.edit(session, author, r.id, reports.parse_edit(edit), at)
        reports.publish(session, author, r.id, at)
        return r.id

    c1 = scheduled("doctor", T0, 2)
    records.transition(session, expert, c1, TransitionIn(State.IN_SESSION, ""), T0 + 5 * H)
    r1 = report(c1, expert, {"diagnosis": "NSTEMI", "diagnosis_code": "I21.4"}, T0 + 10 * H)
    # An amendment still in draft changes nothing in the statistics.
    draft = reports.amend(session, expert, r1, reports.AmendIn("troponin"), T0 + 11 * H)
    reports.edit(session, expert, draft.id, reports.parse_edit({"diagnosis_code": "I21.9"}),
                 T0 + 11 * H)
    t2 = T0 + 10 * 24 * H
    c2 = scheduled("doctor", t2, 4)
    records.transition(session, expert, c2, TransitionIn(State.IN_SESSION, ""), t2 + 5 * H)
    report(c2, expert, {"diagnosis": "急性非ST段抬高型心肌梗死", "diagnosis_code": "i21.4"},
           t2 + 20 * H)
    scheduled("colleague", datetime(2026, 2, 5, 8, 0, tzinfo=UTC), 6)
    t4 = datetime(2026, 2, 10, 8, 0, tzinfo=UTC)
    offline = parse_consultation({**REQUEST, "type": "offline", "expert_id": other.user_id})
    c4 = records.create_consultation(session, people["stranger"], offline, t4)
    records.transition(session, other, c4, TransitionIn(State.ACCEPTED, ""), t4 + H)
    r4 = report(c4, other, {"diagnosis": "G45.9"}, t4 + 30 * H)
    # The published amendment codes the diagnosis: the latest published version counts.
    amended = reports.amend(session, other, r4, reports.AmendIn("coded"), t4 + 40 * H)
    reports.edit(session, other, amended.id, reports.parse_edit(
        {"diagnosis": "短暂性脑缺血发作", "diagnosis_code": "G45.9"}), t4 + 40 * H)
    reports.publish(session, other, amended.id, t4 + 40 * H)
    return people


@pytest.fixture
async def world(migrated: str, aiohttp_client: Any) -> AsyncIterator[World]:
    engine = make_engine(migrated)
    try:
        people = records.run_in_session(make_sessionmaker(engine), dataset)
    finally:
        engine.dispose()
    client = await aiohttp_client(create_app(migrated, SECRET, clock=Clock(),
                                             room_tokens=MEDIA_TOKENS))
    yield World(client=client, url=migrated, people=people, tokens=DbTokens(migrated))


async def stats(world: World, who: str) -> dict[str, Any]:
    response = await world.client.get("/api/v1/statistics", headers=world.auth(who))
    result: dict[str, Any] = await response.json()
    assert response.status == 200, result
    return result


async def test_statistics_numbers_are_exact(world: World) -> None:
    p = {name: str(actor.user_id) for name, actor in world.people.items()}
    county = str(world.people["doctor"].hospital_id)
    other = str(world.people["stranger"].hospital_id)
    for who in ("coordinator", "admin"):
        result = await stats(world, who)
        assert result["total"] == 4
        assert result["per_requesting_doctor"] == {
            p["doctor"]: 2, p["colleague"]: 1, p["stranger"]: 1}
        assert result["per_expert"] == {p["expert"]: 3, p["other_expert"]: 1}
        assert result["per_requesting_hospital"] == {county: 3, other: 1}
        assert result["per_diagnosis"] == {"G45.9": 1, "I21.4": 2}
        assert result["per_month"] == {"2026-01": 2, "2026-02": 2}
        assert result["turnaround"] == {
            "request_to_scheduled": {"count": 3, "median_hours": 4.0, "p90_hours": 5.6},
            "request_to_reported": {"count": 3, "median_hours": 20.0, "p90_hours": 28.0}}
        assert result["period"] == {"from": None, "to": None}
        assert result["by_state"] == {"requested": 0, "accepted": 0, "scheduled": 1,
                                      "in_session": 0, "reported": 3, "closed": 0,
                                      "rejected": 0, "cancelled": 0}
        assert result["by_hospital"] == [
            {"hospital_id": int(county), "name": "Xian County People's Hospital", "count": 3},
            {"hospital_id": int(other), "name": "Another County Hospital", "count": 1}]
        assert result["by_requesting_doctor"] == [
            {"user_id": int(p["doctor"]), "name": "Doctor", "count": 2},
            {"user_id": int(p["colleague"]), "name": "Colleague", "count": 1},
            {"user_id": int(p["stranger"]), "name": "Stranger", "count": 1}]
        assert result["by_expert"] == [
            {"user_id": int(p["expert"]), "name": "Expert", "count": 3},
            {"user_id": int(p["other_expert"]), "name": "Other_Expert", "count": 1}]
        assert result["by_diagnosis"] == [
            {"code": "I21.4", "name_zh": "急性心内膜下心肌梗死",
             "name_en": "Acute subendocardial myocardial infarction", "diagnosis": None,
             "count": 2},
            {"code": "G45.9", "name_zh": "短暂性脑缺血发作",
             "name_en": "Transient cerebral ischaemic attack, unspecified", "diagnosis": None,
             "count": 1}]
        assert result["by_month"] == [
            {"month": "2026-01", "requested": 2, "reported": 2, "turnaround": {
                "request_to_scheduled": {"count": 2, "median_hours": 3.0, "p90_hours": 3.8},
                "request_to_reported": {"count": 2, "median_hours": 15.0, "p90_hours": 19.0}}},
            {"month": "2026-02", "requested": 2, "reported": 1, "turnaround": {
                "request_to_scheduled": {"count": 1, "median_hours": 6.0, "p90_hours": 6.0},
                "request_to_reported": {"count": 1, "median_hours": 30.0, "p90_hours": 30.0}}}]
        assert (result["reports_published"], result["amendments_published"]) == (4, 1)


async def stats_for(world: World, who: str, query: str, status: int = 200) -> dict[str, Any]:
    response = await world.client.get(f"/api/v1/statistics?{query}", headers=world.auth(who))
    result: dict[str, Any] = await response.json()
    assert response.status == status, result
    return result


async def test_statistics_for_a_period(world: World) -> None:
    february = await stats_for(world, "admin", "from=2026-02-01")
    assert february["period"] == {"from": "2026-02-01", "to": None}
    assert february["total"] == 2
    assert [m["month"] for m in february["by_month"]] == ["2026-02"]
    assert february["by_diagnosis"][0]["code"] == "G45.9"
    assert (february["reports_published"], february["amendments_published"]) == (2, 1)
    january = await stats_for(world, "admin", "to=2026-01-31")
    assert january["total"] == 2 and january["per_month"] == {"2026-01": 2}
    assert january["turnaround"]["request_to_reported"] == {
        "count": 2, "median_hours": 15.0, "p90_hours": 19.0}
    # Both ends are inclusive days: only the consultation requested on 20 January.
    one_day = await stats_for(world, "admin", "from=2026-01-20&to=2026-01-20")
    assert one_day["total"] == 1 and one_day["by_state"]["reported"] == 1
    empty = await stats_for(world, "admin", "from=2027-01-01")
    assert empty["total"] == 0 and empty["by_month"] == [] and empty["by_hospital"] == []
    # The period narrows the actor's own scope, never widens it.
    assert (await stats_for(world, "stranger", "from=2026-01-01&to=2026-12-31"))["total"] == 1


async def test_statistics_refuse_a_bad_period(world: World) -> None:
    for query in ("from=2026-13-01", "from=2026-2-1", "to=yesterday", "from=2026-02-01T00:00",
                  "from=2026-03-01&to=2026-02-01", "to=%00", "from=%EF%BC%92026-01-01"):
        result = await stats_for(world, "admin", query, status=400)
        assert result["code"] == "invalid-request", query


async def test_statistics_are_scoped_to_the_hospital(world: World) -> None:
    p = {name: str(actor.user_id) for name, actor in world.people.items()}
    county = await stats(world, "doctor")
    assert county["total"] == 3
    assert county["per_requesting_doctor"] == {p["doctor"]: 2, p["colleague"]: 1}
    assert county["per_diagnosis"] == {"I21.4": 2}
    assert county["turnaround"]["request_to_reported"] == {
        "count": 2, "median_hours": 15.0, "p90_hours": 19.0}
    stranger = await stats(world, "stranger")
    assert stranger["total"] == 1
    assert stranger["per_requesting_doctor"] == {p["stranger"]: 1}
    assert stranger["per_diagnosis"] == {"G45.9": 1}
    assert stranger["by_hospital"] == [{"hospital_id": world.people["stranger"].hospital_id,
                                        "name": "Another County Hospital", "count": 1}]
    assert [e["name"] for e in stranger["by_requesting_doctor"]] == ["Stranger"]
    assert stranger["turnaround"]["request_to_scheduled"]["count"] == 0
    # The provincial expert's hospital provides every expert here: it sees all four.
    assert (await stats(world, "expert"))["total"] == 4


async def test_statistics_need_a_token(world: World) -> None:
    response = await world.client.get("/api/v1/statistics")
    assert response.status == 401
