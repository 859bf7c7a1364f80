"""The audit trail over real HTTP on SQLite AND PostgreSQL: what rows carry, one row per
list, refused and failed attempts, the admins' search and CSV export, append-only tables."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from consult_api import audit
from consult_api.app import create_app
from consult_api.db import make_engine, upgrade
from consult_api.errors import InvalidRequest
from consult_api.models import AuditLog, AuditObject, Material
from consult_api.workflow import Actor, Role
from tests.test_consult_api import REQUEST, SECRET, START, Clock, World, create, move
from tests.test_consult_db import database_url

OTHER_PATIENT = {"name": "李娜", "sex": "female", "age": 41, "record_number": "ZY-2026-001",
                 "summary": "头痛一周"}


def rows_of(world: World, who: str) -> list[AuditLog]:
    user_id = world.people[who].user_id
    return list(world.query(lambda s: list(s.scalars(
        sa.select(AuditLog).where(AuditLog.actor_id == user_id).order_by(AuditLog.id)))))


async def get(world: World, path: str, who: str, status: int = 200,
              **params: Any) -> dict[str, Any]:
    response = await world.client.get(path, params={k: str(v) for k, v in params.items()},
                                      headers=world.auth(who))
    body: dict[str, Any] = await response.json()
    assert response.status == status, body
    return body


async def search(world: World, **params: Any) -> list[dict[str, Any]]:
    body = await get(world, "/api/v1/audit", "admin", **params)
    assert set(body) == {"entries", "next_before_id"}
    entries: list[dict[str, Any]] = body["entries"]
    return entries


def add_material(world: World, cid: int, uploader: int) -> int:
    def work(s: Session) -> int:
        m = Material(consultation_id=cid, uploader_id=uploader, kind="pdf",
                     filename="ecg.pdf", size=4, sha256="0" * 64,
                     stored_path=f"materials/{'0' * 64}", preview_path=None,
                     created_at=START)
        s.add(m)
        s.flush()
        return m.id
    result: int = world.query(work)
    return result


async def test_rows_carry_role_hospital_address_and_outcome(world: World) -> None:
    cid = await create(world)
    await get(world, f"/api/v1/consultations/{cid}", "doctor")
    [row] = rows_of(world, "doctor")
    doctor = world.people["doctor"]
    assert (row.action, row.object_type, row.object_id, row.outcome) == (
        "consultation.read", "consultation", cid, "ok")
    assert (row.role, row.hospital_id, row.address) == (
        "requesting_doctor", doctor.hospital_id, "127.0.0.1")
    assert row.ids is None and row.detail is None


async def test_a_list_writes_one_row_with_the_ids_it_returned(world: World) -> None:
    cids = [await create(world) for _ in range(3)]
    listed = await get(world, "/api/v1/consultations", "coordinator")
    assert [c["id"] for c in listed["consultations"]] == cids[::-1]  # newest first
    [row] = rows_of(world, "coordinator")
    assert (row.action, row.object_type, row.object_id, row.ids, row.outcome) == (
        "consultation.list", "consultation", None, cids[::-1], "ok")
    objects = world.query(lambda s: sorted(s.execute(
        sa.select(AuditObject.object_type, AuditObject.object_id)
        .where(AuditObject.audit_id == row.id)).all()))
    assert objects == [("consultation", c) for c in cids]

    # Materials: one row about the consultation, listing the material ids.
    materials = [add_material(world, cids[0], world.people["doctor"].user_id)
                 for _ in range(2)]
    shown = await get(world, f"/api/v1/consultations/{cids[0]}/materials", "colleague")
    assert [m["id"] for m in shown["materials"]] == materials
    [row] = rows_of(world, "colleague")
    assert (row.action, row.object_type, row.object_id, row.ids) == (
        "material.list", "consultation", cids[0], materials)
    found = world.query(lambda s: [[r["id"] for r in audit.rows_about(s, "material", m)]
                                   for m in materials])
    assert found == [[row.id], [row.id]]


async def test_an_empty_list_is_audited_too(world: World) -> None:
    await create(world)
    assert (await get(world, "/api/v1/consultations", "stranger")) == {
        "consultations": [], "next_before_id": None}
    [row] = rows_of(world, "stranger")
    assert (row.action, row.ids, row.outcome) == ("consultation.list", [], "ok")


async def test_a_refused_read_writes_a_refused_row(world: World) -> None:
    cid = await create(world)
    response = await world.client.get(f"/api/v1/consultations/{cid}",
                                      headers=world.auth("stranger"))
    assert response.status == 403
    [row] = rows_of(world, "stranger")
    stranger = world.people["stranger"]
    assert (row.action, row.object_type, row.object_id, row.outcome, row.detail) == (
        "consultation.read", "consultation", cid, "refused", "forbidden")
    assert (row.role, row.hospital_id, row.address) == (
        "requesting_doctor", stranger.hospital_id, "127.0.0.1")
    # An admin finds it by outcome, with the names of the person and their hospital.
    [entry] = await search(world, outcome="refused")
    assert entry["id"] == row.id
    assert (entry["actor_name"], entry["hospital_name"]) == (
        "Stranger", "Another County Hospital")


async def test_a_hidden_draft_is_a_refused_attempt(world: World) -> None:
    body = {**REQUEST, "type": "offline", "expert_id": world.people["expert"].user_id}
    cid = await create(world, body)
    await move(world, cid, "accepted", "expert")
    response = await world.client.post(f"/api/v1/consultations/{cid}/reports", json={},
                                       headers=world.auth("expert"))
    rid = (await response.json())["id"]
    response = await world.client.patch(f"/api/v1/reports/{rid}", json={"diagnosis": "x"},
                                        headers=world.auth("doctor"))
    assert response.status == 404  # answered like a missing report
    assert (await response.json())["code"] == "not-found"
    [row] = rows_of(world, "doctor")
    assert (row.action, row.object_type, row.object_id, row.outcome, row.detail) == (
        "report.edit", "report", rid, "refused", "not-found")


async def test_mistakes_and_strangers_without_a_token_write_nothing(world: World) -> None:
    cid = await create(world)
    before = world.query(lambda s: s.scalar(sa.select(sa.func.count()).select_from(AuditLog)))
    assert (await world.client.get(f"/api/v1/consultations/{cid}")).status == 401
    assert (await world.client.get("/api/v1/consultations/999999",
                                   headers=world.auth("doctor"))).status == 404
    await move(world, cid, "closed", "doctor", status=409)
    after = world.query(lambda s: s.scalar(sa.select(sa.func.count()).select_from(AuditLog)))
    assert after == before


async def test_a_failed_attempt_writes_a_failed_row(world: World, aiohttp_client: Any) -> None:
    world.client = await aiohttp_client(create_app(world.url, SECRET, clock=Clock()))
    cid = await create(world)
    response = await world.client.post(f"/api/v1/consultations/{cid}/room-token",
                                       headers=world.auth("doctor"))
    assert response.status == 503
    [row] = rows_of(world, "doctor")
    assert (row.action, row.object_id, row.outcome, row.detail) == (
        "consultation.room_token", cid, "failed", "unavailable")


async def test_only_admins_search_and_the_refusal_is_audited(world: World) -> None:
    for who in ("doctor", "expert", "coordinator"):
        for path in ("/api/v1/audit", "/api/v1/audit/export"):
            body = await get(world, path, who, status=403, patient="Zhang")
            assert body["code"] == "forbidden"
        assert [(r.action, r.outcome, r.object_type, r.detail)
                for r in rows_of(world, who)] == [
            ("audit.search", "refused", "audit", "forbidden"),
            ("audit.export", "refused", "audit", "forbidden")]


async def populate(world: World) -> dict[str, int]:
    """Two consultations (two patients) and a trail of reads, lists and refusals."""
    c1 = await create(world)
    c2 = await create(world, {**REQUEST, "patient": OTHER_PATIENT})
    mid = add_material(world, c1, world.people["doctor"].user_id)
    await get(world, "/api/v1/consultations", "coordinator")       # lists c1 and c2
    await get(world, f"/api/v1/consultations/{c1}", "doctor")
    await get(world, f"/api/v1/consultations/{c2}", "colleague")
    await get(world, f"/api/v1/consultations/{c1}", "stranger", status=403)
    await get(world, f"/api/v1/materials/{mid}", "stranger", status=403)
    await get(world, f"/api/v1/consultations/{c2}/materials", "doctor")
    return {"c1": c1, "c2": c2, "material": mid}


def described(entries: list[dict[str, Any]], world: World) -> list[tuple[str, str, str]]:
    names = {p.user_id: name for name, p in world.people.items()}
    return [(names[e["actor_id"]], e["action"], e["outcome"]) for e in entries]


async def test_search_by_user_consultation_patient_action_and_outcome(world: World) -> None:
    ids = await populate(world)
    # Newest first; every field an auditor needs.
    everything = await search(world)
    assert described(everything, world) == [
        ("doctor", "material.list", "ok"), ("stranger", "material.download", "refused"),
        ("stranger", "consultation.read", "refused"), ("colleague", "consultation.read", "ok"),
        ("doctor", "consultation.read", "ok"), ("coordinator", "consultation.list", "ok")]
    assert [e["id"] for e in everything] == sorted((e["id"] for e in everything), reverse=True)
    listing = everything[-1]
    assert listing["ids"] == [ids["c2"], ids["c1"]] and listing["object_id"] is None
    assert set(listing) == {"id", "at", "actor_id", "actor_name", "role", "hospital_id",
                            "hospital_name", "address", "action", "object_type", "object_id",
                            "outcome", "ids", "detail"}
    assert (listing["role"], listing["hospital_name"], listing["address"]) == (
        "coordinator", "Provincial Hospital", "127.0.0.1")

    assert described(await search(world, user_id=world.people["doctor"].user_id), world) == [
        ("doctor", "material.list", "ok"), ("doctor", "consultation.read", "ok")]
    about_c1 = [("stranger", "material.download", "refused"),
                ("stranger", "consultation.read", "refused"),
                ("doctor", "consultation.read", "ok"), ("coordinator", "consultation.list", "ok")]
    about_c2 = [("doctor", "material.list", "ok"), ("colleague", "consultation.read", "ok"),
                ("coordinator", "consultation.list", "ok")]
    assert described(await search(world, consultation_id=ids["c1"]), world) == about_c1
    assert described(await search(world, consultation_id=ids["c2"]), world) == about_c2
    for patient, expected in [("Zhang Wei", about_c1), ("zhang", about_c1),
                              ("MRN-0042", about_c1), ("MRN-", about_c1),
                              ("李娜", about_c2), ("李", about_c2), ("zy-2026", about_c2),
                              ("Wei", []), ("%", []), ("_", [])]:
        assert described(await search(world, patient=patient), world) == expected, patient
    assert described(await search(world, action="consultation.read", outcome="ok"),
                     world) == [("colleague", "consultation.read", "ok"),
                                ("doctor", "consultation.read", "ok")]
    assert described(await search(world, patient="Zhang", outcome="refused",
                                  user_id=world.people["stranger"].user_id), world) == [
        ("stranger", "material.download", "refused"),
        ("stranger", "consultation.read", "refused")]


async def test_every_search_is_audited_without_the_values(world: World,
                                                          caplog: pytest.LogCaptureFixture,
                                                          ) -> None:
    caplog.set_level(logging.DEBUG, logger="consult_api")
    await populate(world)
    await search(world, patient="Zhang Wei", outcome="refused")
    await search(world)
    rows = [r for r in rows_of(world, "admin") if r.action == "audit.search"]
    assert [(r.detail, r.object_type, r.object_id, r.outcome) for r in rows] == [
        ("filters: patient, outcome", "audit", None, "ok"), (None, "audit", None, "ok")]
    for record in caplog.records:
        assert "Zhang" not in record.getMessage()
    # The searches are in the trail, never among the entries about a patient.
    searches = await search(world, action="audit.search")
    assert [e["detail"] for e in searches] == [None, "filters: patient, outcome"]


async def test_search_by_time(world: World) -> None:
    await populate(world)
    everything = await search(world)
    times = [datetime.fromisoformat(e["at"]) for e in everything]
    assert all(t.tzinfo is not None for t in times) and times == sorted(times, reverse=True)
    # from is inclusive, to exclusive; any offset works.
    middle = await search(world, **{"from": everything[4]["at"], "to": everything[1]["at"]})
    assert [e["id"] for e in middle] == [e["id"] for e in everything[2:5]]
    in_beijing = times[3].astimezone(timezone(timedelta(hours=8)))
    since = await search(world, **{"from": in_beijing.isoformat()})
    # (the searches above are in the trail too, newer than everything else)
    assert [e["action"] for e in since[:2]] == ["audit.search"] * 2
    assert [e["id"] for e in since[2:]] == [e["id"] for e in everything[:4]]
    # Dates are UTC days; as "to" the whole day counts.
    day = START.date().isoformat()
    whole_day = await search(world, **{"from": day, "to": day})
    assert [e["id"] for e in whole_day if e["action"] != "audit.search"] == [
        e["id"] for e in everything]
    assert await search(world, to="2026-03-01") == []
    assert await search(world, **{"from": "2026-03-03"}) == []


async def test_keyset_pages_newest_first(world: World) -> None:
    cid = await create(world)
    for _ in range(7):
        await get(world, f"/api/v1/consultations/{cid}", "doctor")
    every = [r.id for r in reversed(rows_of(world, "doctor"))]
    pages: list[list[int]] = []
    before: int | None = None
    while True:
        params: dict[str, Any] = {"user_id": world.people["doctor"].user_id, "limit": 3}
        if before is not None:
            params["before_id"] = before
        body = await get(world, "/api/v1/audit", "admin", **params)
        pages.append([e["id"] for e in body["entries"]])
        before = body["next_before_id"]
        if before is None:
            break
        assert before == pages[-1][-1]
    assert pages == [every[0:3], every[3:6], every[6:7]]
    # A page that ends exactly at the last entry says there is no next one.
    body = await get(world, "/api/v1/audit", "admin", limit=7,
                     user_id=world.people["doctor"].user_id)
    assert [e["id"] for e in body["entries"]] == every and body["next_before_id"] is None


BAD_FILTERS: list[tuple[dict[str, str], str]] = [
    ({"outcome": "maybe"}, "outcome"), ({"user_id": "-1"}, "user_id"),
    ({"user_id": "abc"}, "user_id"), ({"consultation_id": "99999999999"}, "consultation_id"),
    ({"limit": "0"}, "limit"), ({"limit": "10001"}, "limit"), ({"before_id": "1.5"}, "before_id"),
    ({"from": "yesterday"}, "from"), ({"from": "2026-03-02T08:00:00"}, "from"),
    ({"to": "2026-03-01", "from": "2026-03-02"}, "to"),
    ({"patient": "Zhang\x00Wei"}, "patient"), ({"patient": "张" * 201}, "patient"),
    ({"action": "x" * 101}, "action"),
]


async def test_bad_filters_are_400(world: World) -> None:
    for path in ("/api/v1/audit", "/api/v1/audit/export"):
        for params, field in [*BAD_FILTERS, ({"limit": "501"}, "limit")][
                :None if path == "/api/v1/audit" else len(BAD_FILTERS)]:
            response = await world.client.get(path, params=params,
                                              headers=world.auth("admin"))
            body = await response.json()
            assert response.status == 400, (path, params, body)
            assert body["code"] == "invalid-request" and field in body["error"]
            assert "Zhang" not in body["error"] and "张" not in body["error"]
    assert not [r for r in rows_of(world, "admin") if r.action.startswith("audit.")]


async def test_csv_export_for_excel(world: World) -> None:
    await populate(world)
    everything = await search(world)
    response = await world.client.get("/api/v1/audit/export", params={"patient": "Zhang"},
                                      headers=world.auth("admin"))
    assert response.status == 200
    assert response.content_type == "text/csv" and response.charset == "utf-8"
    assert "attachment" in response.headers["Content-Disposition"]
    raw = await response.read()
    assert raw.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(raw[3:].decode("utf-8"))))
    assert table[0][:4] == ["记录编号", "时间", "用户编号", "用户"]
    about_c1 = [e for e in everything if e["action"] != "material.list"
                and e["actor_id"] != world.people["colleague"].user_id]
    assert [int(r[0]) for r in table[1:]] == [e["id"] for e in about_c1]
    outcomes = {r[11] for r in table[1:]}
    assert outcomes == {"成功", "被拒绝"}
    listing = table[-1]
    assert listing[8] == "consultation.list" and listing[12] == " ".join(
        str(i) for i in about_c1[-1]["ids"])
    exported = [r for r in rows_of(world, "admin") if r.action == "audit.export"]
    assert [r.detail for r in exported] == ["filters: patient"]

    response = await world.client.get("/api/v1/audit/export", params={"limit": "2"},
                                      headers={**world.auth("admin"),
                                               "Accept-Language": "en-US,en;q=0.9"})
    table = list(csv.reader(io.StringIO((await response.read())[3:].decode("utf-8"))))
    assert table[0][:4] == ["Entry", "Time", "User ID", "User"]
    assert len(table) == 3
    assert response.headers["X-Next-Before-Id"] == table[-1][0]


async def test_a_display_name_never_becomes_a_spreadsheet_formula(world: World) -> None:
    hospital = world.people["coordinator"].hospital_id
    response = await world.client.post("/api/v1/users", headers=world.auth("admin"), json={
        "hospital_id": hospital, "display_name": "=HYPERLINK(1)", "role": "coordinator"})
    assert response.status == 201
    world.people["formula"] = Actor(user_id=(await response.json())["id"],
                                    role=Role.COORDINATOR, hospital_id=hospital)
    await get(world, "/api/v1/consultations", "formula")
    response = await world.client.get("/api/v1/audit/export", params={"lang": "en"},
                                      headers=world.auth("admin"))
    table = list(csv.reader(io.StringIO((await response.read()).decode("utf-8-sig"))))
    assert table[1][3] == "'=HYPERLINK(1)" and table[1][8] == "consultation.list"


async def test_the_audit_tables_are_append_only(world: World) -> None:
    cid = await create(world)
    await get(world, f"/api/v1/consultations/{cid}", "doctor")
    engine = make_engine(world.url)
    statements = []
    for table in ("audit_log", "audit_objects"):
        statements += [f"UPDATE {table} SET object_id = 7", f"DELETE FROM {table}",
                       f"DELETE FROM {table} WHERE object_id = {cid}"]
        if engine.dialect.name == "postgresql":
            statements.append(f"TRUNCATE {table} CASCADE")
    try:
        for statement in statements:
            with engine.connect() as connection, pytest.raises(sa.exc.DBAPIError,
                                                               match="append-only"):
                connection.exec_driver_sql(statement)
    finally:
        engine.dispose()
    rows = world.query(lambda s: audit.rows_about(s, "consultation", cid))
    assert [(r["action"], r["object_id"]) for r in rows] == [("consultation.read", cid)]


@pytest.fixture(params=["sqlite", "postgresql"])
def at_0003(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    for url in database_url(request.param, tmp_path):
        upgrade(url, "0003")
        yield url


def test_the_migration_keeps_older_rows_findable_and_downgrades(at_0003: str) -> None:
    from alembic import command

    from consult_api.db import alembic_config

    engine = make_engine(at_0003)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO hospitals (name, level) VALUES ('H', 'county')")
            connection.exec_driver_sql("INSERT INTO users (hospital_id, display_name, role) "
                                       "VALUES (1, 'Old', 'admin')")
            connection.execute(sa.text(
                "INSERT INTO audit_log (actor_id, action, object_type, object_id, at) "
                "VALUES (1, 'consultation.read', 'consultation', 42, :at)"),
                {"at": "2026-01-01 00:00:00"})
        upgrade(at_0003)
        with engine.connect() as connection:
            assert connection.exec_driver_sql(
                "SELECT outcome, role FROM audit_log").all() == [("ok", None)]
            assert connection.exec_driver_sql(
                "SELECT audit_id, object_type, object_id FROM audit_objects").all() == [
                (1, "consultation", 42)]
        command.downgrade(alembic_config(at_0003), "0003")
        with engine.connect() as connection:
            assert connection.exec_driver_sql(
                "SELECT action, object_id FROM audit_log").all() == [("consultation.read", 42)]
            assert "audit_objects" not in sa.inspect(connection).get_table_names()
        upgrade(at_0003)
    finally:
        engine.dispose()


# --- pure parts --------------------------------------------------------------------------------

def test_actions_and_objects_come_from_route_templates() -> None:
    assert audit.action_for("GET", "/api/v1/consultations/{id}", None) == "consultation.read"
    assert audit.action_for("GET", "/api/v1/consultations/{id}", "named.route") == "named.route"
    assert audit.action_for("DELETE", "/api/v1/referrals/{id}", None) == (
        "DELETE /api/v1/referrals/{id}")
    assert audit.object_for("/api/v1/consultations/{id}/materials", "material.upload",
                            "12") == ("consultation", 12)
    assert audit.object_for("/api/v1/materials/{id}", "material.download", "abc") == (
        "material", None)
    assert audit.object_for("/api/v1/consultations", "consultation.list", None) == (
        "consultation", None)
    assert audit.object_for("/api/v1/referrals", "POST /api/v1/referrals", None) == (
        "referral", None)


def test_filters_parse() -> None:
    filters = audit.parse_filters({"user_id": "3", "patient": " 张 ", "from": "2026-03-02",
                                   "to": "2026-03-02T12:00:00+08:00", "limit": "20"})
    assert (filters.user_id, filters.patient, filters.limit) == (3, "张", 20)
    assert filters.start == datetime(2026, 3, 2, tzinfo=UTC)
    assert filters.end == datetime(2026, 3, 2, 4, tzinfo=UTC)
    assert filters.named() == ["user_id", "patient", "from", "to"]
    assert audit.parse_filters({}).limit == audit.DEFAULT_LIMIT
    assert audit.parse_filters({}, export=True).limit == audit.DEFAULT_EXPORT_LIMIT
    assert audit.parse_filters({"limit": "10000"}, export=True).limit == 10_000
    with pytest.raises(InvalidRequest):
        audit.parse_filters({"limit": "10000"})
    with pytest.raises(InvalidRequest):
        audit.parse_filters({"user_id": "１２"})  # full-width digits


def test_csv_cells_are_text() -> None:
    body = audit.to_csv([{c: None for c in audit.CSV_COLUMNS} | {
        "id": 1, "actor_name": "-1+1", "ids": [3, 4], "outcome": "ok", "detail": "@x"}],
        {"id": "编号"}, {"ok": "成功"})
    lines = body.decode("utf-8-sig").splitlines()
    assert lines[0].split(",")[0] == "编号" and lines[0].split(",")[1] == "at"
    assert lines[1].split(",") == ["1", "", "", "'-1+1", "", "", "", "", "", "", "", "成功",
                                   "3 4", "'@x"]
