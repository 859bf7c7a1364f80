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
from consult_api.statistics import ConsultationRow, TransitionRow, compute, percentile
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

    def report(cid: int, author: Actor, diagnosis: str, at: datetime) -> None:
        r = reports.create_draft(session, author, cid, reports.DraftIn(None), at)
        reports.edit(session, author, r.id, reports.parse_edit({"diagnosis": diagnosis}), at)
        reports.publish(session, author, r.id, at)

    c1 = scheduled("doctor", T0, 2)
    records.transition(session, expert, c1, TransitionIn(State.IN_SESSION, ""), T0 + 5 * H)
    report(c1, expert, "I21.4", T0 + 10 * H)
    t2 = T0 + 10 * 24 * H
    c2 = scheduled("doctor", t2, 4)
    records.transition(session, expert, c2, TransitionIn(State.IN_SESSION, ""), t2 + 5 * H)
    report(c2, expert, "I21.4", t2 + 20 * H)
    scheduled("colleague", datetime(2026, 2, 5, 8, 0, tzinfo=UTC), 6)
    t4 = datetime(2026, 2, 10, 8, 0, tzinfo=UTC)
    offline = parse_consultation({**REQUEST, "type": "offline", "expert_id": other.user_id})
    c4 = records.create_consultation(session, people["stranger"], offline, t4)
    records.transition(session, other, c4, TransitionIn(State.ACCEPTED, ""), t4 + H)
    report(c4, other, "G45.9", t4 + 30 * H)
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
    assert stranger["turnaround"]["request_to_scheduled"]["count"] == 0
    # The provincial expert's hospital provides every expert here: it sees all four.
    assert (await stats(world, "expert"))["total"] == 4


async def test_statistics_need_a_token(world: World) -> None:
    response = await world.client.get("/api/v1/statistics")
    assert response.status == 401
