"""The demo province: seeded idempotently (SQLite and PostgreSQL), and the real ``huizhen demo``
process, whose demo expert signs in, finds the live consultation on the worklist and joins
the room the simulated bedside publishes into; a second start reuses the data."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from consult_api import records, slots
from consult_api.accounts import utc
from consult_api.db import make_engine, make_sessionmaker
from consult_api.models import (
    Consultation,
    Department,
    ExpertProfile,
    ExpertSlot,
    Hospital,
    User,
)
from consult_api.passwords import verify_password
from consult_api.schemas import ConsultationIn, ScheduleIn
from consult_api.workflow import Actor, ConsultationType, Role, State, Urgency
from huizhen import demo_records
from huizhen.demo_records import PEOPLE, DemoSeedError, coming_slots, live_window, prepare
from signaling.client import SignalingClient
from tests.conftest import free_port, stop_process

# Cheap argon2 parameters: the same code paths, fast tests.
FAST = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
NOW = datetime(2025, 3, 10, 2, 7, 30, tzinfo=UTC)  # 10:07:30 Beijing time, a Monday


def _counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as c:
            return {model.__tablename__: c.scalar(sa.select(sa.func.count()).select_from(model))
                    for model in (Hospital, Department, User, ExpertProfile, Consultation,
                                  ExpertSlot)}
    finally:
        engine.dispose()


def _in_db(url: str, work: Any) -> Any:
    engine = make_engine(url)
    try:
        return records.run_in_session(make_sessionmaker(engine), work)
    finally:
        engine.dispose()


# --- pure ------------------------------------------------------------------------------------

def test_live_window_starts_now_and_slots_are_beijing_clinic_hours():
    start, end = live_window(NOW)
    assert (start, end) == (datetime(2025, 3, 10, 2, 5, tzinfo=UTC),
                            datetime(2025, 3, 10, 4, 5, tzinfo=UTC))
    coming = coming_slots(NOW)
    assert len(coming) == 9
    # Tomorrow 09:00 Beijing time is 01:00 UTC; nothing today.
    assert coming[0] == (datetime(2025, 3, 11, 1, 0, tzinfo=UTC),
                         datetime(2025, 3, 11, 1, 30, tzinfo=UTC))
    assert all(s > NOW + timedelta(hours=12) for s, _ in coming)
    # Late evening in Beijing (after 16:00 UTC) is already the next day there.
    assert coming_slots(datetime(2025, 3, 10, 17, 0, tzinfo=UTC))[0][0] == datetime(
        2025, 3, 12, 1, 0, tzinfo=UTC)


def test_demo_passwords_meet_the_password_policy():
    from consult_api.passwords import check_policy

    for person in PEOPLE:
        check_policy(person.password, person.username)
    assert {p.role for p in PEOPLE} == set(Role)


# --- seeding, on SQLite and the real PostgreSQL ------------------------------------------------

def test_seeding_is_idempotent_and_the_consultation_is_live_now(migrated: str):
    first = prepare(migrated, NOW, FAST)
    counts = _counts(migrated)
    assert counts == {"hospitals": 2, "departments": 3, "users": 4, "expert_profiles": 1,
                      "consultations": 1, "expert_slots": 10}
    again = prepare(migrated, NOW + timedelta(minutes=20), FAST)
    assert again == first and _counts(migrated) == counts

    def look(s: Any) -> tuple[Any, ...]:
        c = s.get_one(Consultation, first.consultation_id)
        expert = s.scalars(sa.select(User).where(User.username == "demo-expert")).one()
        doctor = s.scalars(sa.select(User).where(User.username == "demo-doctor")).one()
        hospital = s.get_one(Hospital, expert.hospital_id)
        held = s.scalars(sa.select(ExpertSlot).where(
            ExpertSlot.consultation_id == c.id)).one()
        return (c.state, c.room_name, c.expert_id == expert.id, c.requesting_doctor_id,
                doctor.id, utc(c.slot_start), utc(held.start_at), hospital.name,
                hospital.level, expert.display_name, verify_password(
                    FAST, expert.password_hash, "Expert-demo-1"))

    (state, room, assigned, requester, doctor_id, start, held_start, hospital, level, name,
     signs_in) = _in_db(migrated, look)
    assert state == State.SCHEDULED.value and room == first.room
    assert room.startswith(f"consult-{first.consultation_id}-")
    assert assigned and requester == doctor_id
    assert start == held_start == live_window(NOW)[0] <= NOW
    assert (hospital, level, name, signs_in) == ("省人民医院", "province", "李明华", True)


def test_a_later_start_moves_the_live_consultation_to_now_and_adds_new_days(migrated: str):
    first = prepare(migrated, NOW, FAST)
    later = NOW + timedelta(days=1)  # yesterday's "tomorrow 09:00" slot is now in the past
    second = prepare(migrated, later, FAST)
    assert second == first  # the same consultation and room, moved
    counts = _counts(migrated)
    assert counts["consultations"] == 1 and counts["users"] == 4
    assert counts["expert_slots"] == 10 - 1 + 3  # one free slot gave way; one new day

    def times(s: Any) -> tuple[datetime, datetime, list[datetime]]:
        c = s.get_one(Consultation, first.consultation_id)
        booked = [utc(x.start_at) for x in s.scalars(sa.select(ExpertSlot).where(
            ExpertSlot.consultation_id == c.id))]
        return utc(c.slot_start), utc(c.slot_end), booked

    start, end, booked = _in_db(migrated, times)
    assert (start, end) == live_window(later) and booked == [start]

    # Today at 10:00 Beijing time was seeded yesterday as a free slot: the live
    # consultation (10:05-12:05) overlapping it took its place; only its own slot is there.
    def overlaps(s: Any) -> list[int]:
        expert_id = s.scalar(sa.select(User.id).where(User.username == "demo-expert"))
        return [x.id for x in slots.clashing(s, expert_id, start, end)]

    assert len(_in_db(migrated, overlaps)) == 1


def test_a_finished_demo_consultation_gives_way_to_a_new_one(migrated: str):
    first = prepare(migrated, NOW, FAST)

    def cancel(s: Any) -> None:
        doctor = s.scalars(sa.select(User).where(User.username == "demo-doctor")).one()
        from consult_api.schemas import TransitionIn

        records.transition(s, Actor(doctor.id, Role.REQUESTING_DOCTOR, doctor.hospital_id),
                           first.consultation_id, TransitionIn(State.CANCELLED, ""), NOW)

    _in_db(migrated, cancel)
    second = prepare(migrated, NOW + timedelta(minutes=1), FAST)
    assert second.consultation_id != first.consultation_id and second.room != first.room
    assert _counts(migrated)["users"] == 4


def test_a_changed_or_locked_demo_password_is_set_back(migrated: str):
    prepare(migrated, NOW, FAST)

    def tamper(s: Any) -> None:
        user = s.scalars(sa.select(User).where(User.username == "demo-admin")).one()
        user.password_hash = FAST.hash("Something-else-9")
        user.failed_logins, user.locked_until = 7, NOW + timedelta(hours=1)

    _in_db(migrated, tamper)
    prepare(migrated, NOW, FAST)

    def read(s: Any) -> tuple[bool, int, Any]:
        user = s.scalars(sa.select(User).where(User.username == "demo-admin")).one()
        return (verify_password(FAST, user.password_hash, "Admin-demo-1"), user.failed_logins,
                user.locked_until)

    assert _in_db(migrated, read) == (True, 0, None)


def test_another_booking_of_the_expert_now_is_refused_in_one_line(migrated: str):
    first = prepare(migrated, NOW, FAST)

    def book_other(s: Any) -> None:
        users = {u.username: u for u in s.scalars(sa.select(User))}
        doctor, expert = users["demo-doctor"], users["demo-expert"]
        coordinator = users["demo-coordinator"]
        doctor_actor = Actor(doctor.id, Role.REQUESTING_DOCTOR, doctor.hospital_id)
        from consult_api.schemas import TransitionIn

        records.transition(s, doctor_actor, first.consultation_id,
                           TransitionIn(State.CANCELLED, ""), NOW)
        other = records.create_consultation(s, doctor_actor, ConsultationIn(
            patient=dataclasses.replace(demo_records.DEMO_PATIENT, record_number="X-2"),
            question="另一个会诊", urgency=Urgency.ROUTINE,
            type=ConsultationType.INTERACTIVE, expert_id=None), NOW)
        start, end = live_window(NOW)
        records.schedule(s, Actor(coordinator.id, Role.COORDINATOR, coordinator.hospital_id),
                         other, ScheduleIn(start=start, end=end, expert_id=expert.id), NOW)

    _in_db(migrated, book_other)
    before = _counts(migrated)
    with pytest.raises(DemoSeedError, match="booked by another consultation") as caught:
        prepare(migrated, NOW + timedelta(minutes=1), FAST)
    assert "\n" not in str(caught.value)
    assert _counts(migrated) == before  # all or nothing


# --- the real demo process ------------------------------------------------------------------

async def _start_demo(port: int, records_port: int, data_dir: Path
                      ) -> tuple[subprocess.Popen[str], dict[str, str], dict[str, str]]:
    """Start ``huizhen demo``; its printed links and the demo accounts (name: password)."""
    env = {**os.environ, "HUIZHEN_SERVER_PORT": str(port),
           "HUIZHEN_RECORDS_PORT": str(records_port), "HUIZHEN_STORAGE_DATA_DIR": str(data_dir)}
    demo = subprocess.Popen([sys.executable, "-m", "huizhen", "demo", "--duration", "90"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env)
    assert demo.stdout is not None
    loop = asyncio.get_running_loop()
    found: dict[str, str] = {}
    accounts: dict[str, str] = {}
    try:
        for _ in range(60):
            line = await asyncio.wait_for(loop.run_in_executor(None, demo.stdout.readline), 60)
            for key, pattern in [("room", r"^\s+room:\s+(\S+)"),
                                 ("expert", r"expert page:\s+(\S+)"),
                                 ("workspace", r"consultation workspace:\s+(\S+)"),
                                 ("warning", r"^ 注意：(.*Warning: .*)$")]:
                match = re.search(pattern, line)
                if match:
                    found[key] = match.group(1)
            account = re.match(r"^\s+(demo-[a-z]+) / (\S+) / (\S+) (\S+)", line)
            if account:
                accounts[account.group(1)] = account.group(2)
                found[f"role:{account.group(1)}"] = f"{account.group(3)} {account.group(4)}"
            if len(accounts) == len(PEOPLE):
                break
    except BaseException:
        stop_process(demo)
        raise
    return demo, found, accounts


async def _sign_in(http: aiohttp.ClientSession, base: str, username: str,
                   password: str) -> str:
    async with http.post(base + "/api/v1/session",
                         json={"username": username, "password": password}) as response:
        assert response.status == 200, await response.text()
        body = await response.json()
    assert body["user"]["username"] == username
    return str(body["csrf_token"])


async def test_demo_serves_the_workspace_with_a_live_consultation(tmp_path: Path):
    port, records_port = free_port(), free_port()
    demo, found, accounts = await _start_demo(port, records_port, tmp_path)
    try:
        workspace = f"http://127.0.0.1:{records_port}"
        assert found["workspace"] == workspace + "/"
        assert "演示账号" in found["warning"] and "demo accounts" in found["warning"]
        assert accounts == {p.username: p.password for p in PEOPLE}
        assert found["role:demo-expert"] == "会诊专家 expert"
        room = found["room"]
        assert found["expert"].startswith(f"http://127.0.0.1:{port}/expert.html#token=")
        # No password is printed anywhere but in that block (the rest of stdout is
        # checked below when the process ends).
        jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            async with http.get(workspace + "/") as response:
                assert response.status == 200  # the workspace page is served
            async with http.post(workspace + "/api/v1/session", json={
                    "username": "demo-expert", "password": "wrong-password-1"}) as response:
                assert response.status == 401
                assert (await response.json())["code"] == "bad-credentials"
            csrf = await _sign_in(http, workspace, "demo-expert", accounts["demo-expert"])
            async with http.get(workspace + "/api/v1/consultations?mine=1") as response:
                assert response.status == 200
                listed = (await response.json())["consultations"]
            [live] = [c for c in listed if c["state"] == "scheduled"]
            assert live["room"] == room
            async with http.post(workspace + f"/api/v1/consultations/{live['id']}/room-token",
                                 headers={"X-CSRF-Token": csrf}) as response:
                assert response.status == 200, await response.text()
                minted = await response.json()
        assert (minted["room"], minted["role"]) == (room, "expert")
        assert minted["page_url"].startswith(f"http://127.0.0.1:{port}/expert.html#")

        # The expert's token opens the room the simulated bedside camera publishes into.
        client = SignalingClient(f"ws://127.0.0.1:{port}/ws")
        await client.connect()
        try:
            joined = await client.join(minted["token"])
            assert joined["ptz"]["camera"] == "online"
            [stream] = joined["streams"]
            assert [t["kind"] for t in stream["tracks"]] == ["video", "audio"]
            vitals = await client.next_event("vitals", 15)
            assert {s["vital"] for s in vitals["samples"]} >= {"hr", "spo2"}
        finally:
            await client.close()

        # The requesting doctor of the county hospital is on the bedside's side.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            csrf = await _sign_in(http, workspace, "demo-doctor", accounts["demo-doctor"])
            async with http.post(workspace + f"/api/v1/consultations/{live['id']}/room-token",
                                 headers={"X-CSRF-Token": csrf}) as response:
                assert (await response.json())["role"] == "ward"
    finally:
        assert stop_process(demo) == 0
    before = _counts(demo_records.database_url(tmp_path))
    assert before["users"] == 4 and before["consultations"] == 1
    assert not (tmp_path / "records.sqlite3").exists()  # never the real records database

    # A second start reuses the data: the same people, consultation and room.
    demo, again, accounts = await _start_demo(port, records_port, tmp_path)
    try:
        assert again["room"] == room
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await _sign_in(http, workspace, "demo-coordinator", accounts["demo-coordinator"])
    finally:
        assert stop_process(demo) == 0
    assert _counts(demo_records.database_url(tmp_path)) == before


def _run_demo(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "huizhen", "demo", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **env})


def test_demo_refuses_to_serve_demo_accounts_off_loopback(tmp_path: Path):
    result = _run_demo("--duration", "1", HUIZHEN_RECORDS_HOST="0.0.0.0",
                       HUIZHEN_RECORDS_TOKEN_SECRET="x" * 40,
                       HUIZHEN_STORAGE_DATA_DIR=str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "huizhen: refusing to serve the demo accounts on 0.0.0.0:8090: the demo's records "
        "service listens on loopback only (set HUIZHEN_RECORDS_HOST=127.0.0.1, or use "
        "--no-records)"]
    assert "Admin-demo-1" not in result.stdout + result.stderr
    assert not (tmp_path / demo_records.DATABASE_FILE).exists()
    room = _run_demo("--room", "bed-7", HUIZHEN_STORAGE_DATA_DIR=str(tmp_path))
    assert room.returncode != 0 and "--room needs --no-records" in room.stderr
