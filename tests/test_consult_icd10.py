"""ICD-10 codes: the starter table, parsing, search over HTTP, reports carrying a code, and
the import command (in a subprocess), on SQLite AND PostgreSQL."""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from consult_api import icd10
from consult_api.db import alembic_config, upgrade
from consult_api.errors import InvalidRequest
from consult_api.models import Icd10Code, Report, ReportTemplate
from huizhen import cli
from tests.test_consult_api import World
from tests.test_consult_reports import call, in_session

STARTER = Path(icd10.__file__).with_name("data") / "icd10_starter.csv"


def starter_rows() -> list[dict[str, str]]:
    with STARTER.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


# --- the starter table and the pure parts ------------------------------------------------------

def test_the_starter_table_is_large_well_formed_and_spans_the_specialties() -> None:
    rows = starter_rows()
    assert len(rows) >= 300
    assert len({r["code"] for r in rows}) == len(rows)
    for r in rows:
        assert icd10.is_code(r["code"]), r["code"]
        assert r["name_zh"] and r["name_en"] and r["chapter"], r["code"]
        assert not r["name_zh"].isascii(), r["code"]  # a Chinese name, not a copy
    by_code = {r["code"]: r for r in rows}
    assert (by_code["I21.9"]["name_zh"], by_code["I21.9"]["name_en"]) == (
        "急性心肌梗死", "Acute myocardial infarction, unspecified")
    assert (by_code["I63.9"]["name_zh"], by_code["I63.9"]["name_en"]) == (
        "脑梗死", "Cerebral infarction, unspecified")
    assert by_code["J18.9"]["name_zh"] == "肺炎"
    assert by_code["J44.1"]["name_zh"] == "慢性阻塞性肺病伴有急性加重"
    # Cardiology, respiratory, neurology, trauma, oncology, obstetrics, perinatal,
    # infection and the ICU's shock and failure codes.
    chapters = {r["chapter"] for r in rows}
    assert {"IX", "X", "VI", "XIX", "II", "XV", "XVI", "I", "XVIII"} <= chapters
    for code in ("I60.9", "I61.9", "S06.5", "C34.9", "O72.1", "P07.3", "A41.9", "R57.0",
                 "J96.0", "J80"):
        assert code in by_code, code


def test_codes() -> None:
    for good in ("I21.9", "i21.9", "I10", "U07.1", "I21.900x001", "A17.0+G01*"):
        assert icd10.is_code(good), good
    for bad in ("", "I2", "121.9", "I21.", "I21.9 ", "I21.9;DROP", "心梗", "I21.9\x00",
                "I" + "1" * 30):
        assert not icd10.is_code(bad), bad


def test_parse_csv_reads_headers_optional_english_and_blank_lines() -> None:
    text = "编码,名称\n\nI21.9, 急性心肌梗死 ,Acute myocardial infarction\nI10,原发性高血压\n"
    assert icd10.parse_csv(text) == [
        icd10.CodeIn("I21.9", "急性心肌梗死", "Acute myocardial infarction"),
        icd10.CodeIn("I10", "原发性高血压", None)]
    # What a Chinese-locale spreadsheet saves, and UTF-8 with a BOM.
    assert icd10.decode("I10,原发性高血压".encode("gb18030")) == "I10,原发性高血压"
    assert icd10.decode("\ufeffI10,x".encode()) == "I10,x"
    with pytest.raises(icd10.ImportProblem, match="neither UTF-8 nor GB18030"):
        icd10.decode(b"\xff\xfe\x00\xd8\x00")


@pytest.mark.parametrize(("text", "message"), [
    ("I10,原发性高血压\nXYZ,坏\n", "line 2: 'XYZ' is not an ICD-10 code"),
    ("I10\n", "line 1: expected code,name_zh[,name_en] (1 columns)"),
    ("I10,a,b,c\n", "line 1: expected code,name_zh[,name_en] (4 columns)"),
    ("I10,\n", "line 1: name_zh must be 1 to 200 characters"),
    ("I10,高血压\ni10,高血压\n", "line 2: code i10 repeats line 1"),
    (f"I10,{'长' * 201}\n", "line 1: name_zh must be 1 to 200 characters"),
    (f"I10,高血压,{'x' * 301}\n", "line 1: name_en must be at most 300 characters"),
    ("code,name_zh\n", "the file has no codes"),
])
def test_parse_csv_names_the_bad_line(text: str, message: str) -> None:
    with pytest.raises(icd10.ImportProblem) as caught:
        icd10.parse_csv(text)
    assert str(caught.value) == message


def test_parse_search() -> None:
    assert icd10.parse_search({"q": "  心肌   梗死 "}) == icd10.SearchIn("心肌 梗死", 20)
    assert icd10.parse_search({"q": "i21", "limit": "50"}) == icd10.SearchIn("i21", 50)
    for bad in ({"limit": "0"}, {"limit": "51"}, {"limit": "-1"}, {"limit": "abc"},
                {"q": "x" * 101}, {"q": "I21\x00"}):
        with pytest.raises(InvalidRequest):
            icd10.parse_search(bad)


# --- search over HTTP --------------------------------------------------------------------------

async def search(world: World, query: str, who: str = "doctor",
                 status: int = 200) -> Any:
    return await call(world, "GET", f"/api/v1/icd10?{query}", who, status=status)


async def test_search_ranks_exact_code_then_prefix_then_names(world: World) -> None:
    codes = [c["code"] for c in (await search(world, "q=i21"))["codes"]]
    assert codes == ["I21.0", "I21.1", "I21.2", "I21.3", "I21.4", "I21.9"]
    exact = (await search(world, "q=i21.9"))["codes"]
    assert exact == [{"code": "I21.9", "name_zh": "急性心肌梗死",
                      "name_en": "Acute myocardial infarction, unspecified"}]
    # Without the dot, and a whole category code first, before its subcodes.
    assert (await search(world, "q=I219"))["codes"][0]["code"] == "I21.9"
    assert [c["code"] for c in (await search(world, "q=i10"))["codes"]] == ["I10"]
    # Chinese: the shortest (most general) name first.
    found = [c["code"] for c in (await search(world, "q=心肌梗死&limit=50"))["codes"]]
    assert found[:3] == ["I21.9", "I22.9", "I25.2"]
    assert {"I21.0", "I21.4"} <= set(found) and "I20.0" not in found
    assert [c["code"] for c in (await search(world, "q=脑梗死"))["codes"]][:2] == [
        "I63.9", "I69.3"]
    # English: every word, in any order and case.
    english = (await search(world, "q=INFARCTION acute myocardial"))["codes"]
    assert english and english[0]["code"] == "I21.9"
    assert all({"acute", "myocardial", "infarction"} <= set(
        c["name_en"].lower().replace(",", "").split()) for c in english)
    # A name prefix ranks above a name containing the words elsewhere.
    pneumonia = [c["code"] for c in (await search(world, "q=肺炎&limit=50"))["codes"]]
    assert pneumonia[0] == "J18.9" and "J69.0" in pneumonia


async def test_search_limits_and_hostile_input(world: World) -> None:
    assert len((await search(world, "q=i&limit=3"))["codes"]) == 3
    assert len((await search(world, "q=a&limit=50"))["codes"]) == 50
    assert (await search(world, ""))["codes"] == []
    assert (await search(world, "q=%20%20"))["codes"] == []
    # LIKE wildcards are text, not patterns: "%" finds the names with a percent sign.
    assert [c["code"] for c in (await search(world, "q=%25"))["codes"]] == [
        "T31.1", "T31.2", "T31.3", "T31.4"]
    assert (await search(world, "q=_"))["codes"] == []
    assert (await search(world, "q=I2_.9"))["codes"] == []
    for bad in ("limit=51", "limit=0", "limit=ten", "q=" + "x" * 101, "q=%00"):
        result = await search(world, bad, status=400)
        assert result["code"] == "invalid-request", bad
    response = await world.client.get("/api/v1/icd10?q=i21")
    assert response.status == 401
    for who in ("expert", "coordinator", "admin", "stranger"):
        assert (await search(world, "q=J44.1", who=who))["codes"][0]["code"] == "J44.1"


# --- reports carry the code --------------------------------------------------------------------

async def test_report_diagnosis_code_is_validated_and_kept(world: World) -> None:
    cid = await in_session(world)
    rid = (await call(world, "POST", f"/api/v1/consultations/{cid}/reports", "expert", {},
                      status=201))["id"]
    draft = await call(world, "PATCH", f"/api/v1/reports/{rid}", "expert",
                       {"diagnosis": "急性非ST段抬高型心肌梗死", "diagnosis_code": "i21.4"})
    assert (draft["diagnosis"], draft["diagnosis_code"], draft["diagnosis_name_zh"],
            draft["diagnosis_name_en"]) == (
        "急性非ST段抬高型心肌梗死", "I21.4", "急性心内膜下心肌梗死",
        "Acute subendocardial myocardial infarction")
    # Unknown or malformed codes are refused and change nothing.
    for bad in ("I21.99", "Z99.99", "心梗", "I21.4'; --", "I21.4\x00"):
        result = await call(world, "PATCH", f"/api/v1/reports/{rid}", "expert",
                            {"diagnosis_code": bad, "diagnosis": "changed"}, status=400)
        # A NUL never reaches the code check: every JSON body with one is refused first.
        expected = "invalid-request" if "\x00" in bad else "unknown-icd10-code"
        assert result["code"] == expected, bad
    not_codes: tuple[Any, ...] = (42, ["I21.4"], "", "   ", "I" * 21)
    for wrong in not_codes:
        result = await call(world, "PATCH", f"/api/v1/reports/{rid}", "expert",
                            {"diagnosis_code": wrong}, status=400)
        assert result["code"] == "invalid-request", wrong
    stored = world.query(lambda s: s.execute(sa.select(
        Report.diagnosis, Report.diagnosis_code).where(Report.id == rid)).one())
    assert tuple(stored) == ("急性非ST段抬高型心肌梗死", "I21.4")
    # Editing other fields keeps the code; null clears it; it can be set again.
    kept = await call(world, "PATCH", f"/api/v1/reports/{rid}", "expert",
                      {"sections": {"findings": "ST depression"}})
    assert kept["diagnosis_code"] == "I21.4"
    cleared = await call(world, "PATCH", f"/api/v1/reports/{rid}", "expert",
                         {"diagnosis_code": None})
    assert (cleared["diagnosis_code"], cleared["diagnosis_name_zh"]) == (None, None)
    assert cleared["diagnosis"] == "急性非ST段抬高型心肌梗死"
    await call(world, "PATCH", f"/api/v1/reports/{rid}", "expert", {"diagnosis_code": "I21.4"})
    await call(world, "POST", f"/api/v1/reports/{rid}/publish", "expert")
    # The requesting doctor reads the code and its names.
    seen = (await call(world, "GET", f"/api/v1/consultations/{cid}/reports", "doctor"))
    assert [(r["diagnosis_code"], r["diagnosis_name_zh"]) for r in seen["reports"]] == [
        ("I21.4", "急性心内膜下心肌梗死")]
    # A published version is final, the code included.
    await call(world, "PATCH", f"/api/v1/reports/{rid}", "expert",
               {"diagnosis_code": "I21.9"}, status=409)
    # The amendment starts with the code and may change it; the first version keeps its own.
    amended = await call(world, "POST", f"/api/v1/reports/{rid}/amend", "expert",
                         {"reason": "心肌酶谱回报"}, status=201)
    assert (amended["diagnosis_code"], amended["diagnosis_name_en"]) == (
        "I21.4", "Acute subendocardial myocardial infarction")
    changed = await call(world, "PATCH", f"/api/v1/reports/{amended['id']}", "expert",
                         {"diagnosis_code": "I21.0"})
    assert (changed["diagnosis_code"], changed["diagnosis_name_zh"]) == (
        "I21.0", "急性前壁透壁性心肌梗死")
    await call(world, "POST", f"/api/v1/reports/{amended['id']}/publish", "expert")
    seen = (await call(world, "GET", f"/api/v1/consultations/{cid}/reports", "doctor"))
    assert [r["diagnosis_code"] for r in seen["reports"]] == ["I21.4", "I21.0"]


async def test_chinese_templates_are_seeded(world: World) -> None:
    found = (await call(world, "GET", "/api/v1/report-templates", "expert"))["templates"]
    by_specialty = {t["specialty"]: t for t in found}
    expected = {
        "imaging": ("影像会诊", "Imaging consultation",
                    ["检查项目", "影像所见", "印象", "建议"]),
        "ecg": ("心电会诊", "ECG consultation",
                ["心率与节律", "波形分析", "心电图诊断", "建议"]),
        "pathology": ("病理会诊", "Pathology consultation",
                      ["标本信息", "大体所见", "镜下所见", "病理诊断", "建议"]),
        "icu": ("重症监护会诊", "Critical care consultation",
                ["病情摘要", "生命体征与监护", "评估", "诊疗建议", "转诊意见"]),
    }
    for specialty, (name, name_en, titles) in expected.items():
        t = by_specialty[specialty]
        assert (t["name"], t["name_en"]) == (name, name_en)
        assert [s["title"] for s in t["sections"]] == titles
        assert all(s["title_en"] and s["title_en"].isascii() for s in t["sections"])
        assert len({s["key"] for s in t["sections"]}) == len(titles)
    # A draft from a Chinese template has its section keys, empty.
    cid = await in_session(world)
    draft = await call(world, "POST", f"/api/v1/consultations/{cid}/reports", "expert",
                       {"template_id": by_specialty["ecg"]["id"]}, status=201)
    assert draft["sections"] == {"rate_rhythm": "", "waveforms": "", "ecg_diagnosis": "",
                                 "recommendations": ""}


async def test_a_sites_own_template_without_english_titles_still_lists(world: World) -> None:
    def add(session: Any) -> None:
        session.add(ReportTemplate(specialty="local", name="本院模板", name_en=None,
                                   sections=[{"key": "note", "title": "记录"}]))

    world.query(add)
    found = await call(world, "GET", "/api/v1/report-templates?specialty=local", "expert")
    [t] = found["templates"]
    assert (t["name"], t["name_en"]) == ("本院模板", "本院模板")
    assert t["sections"] == [{"key": "note", "title": "记录", "title_en": "记录"}]


# --- the migration -----------------------------------------------------------------------------

def test_the_migration_seeds_codes_and_goes_down_and_up(migrated: str) -> None:
    def snapshot() -> tuple[int, dict[str, str]]:
        engine = sa.create_engine(migrated)
        try:
            with engine.connect() as connection:
                count = connection.scalar(sa.select(sa.func.count()).select_from(Icd10Code))
                names = {specialty: name for specialty, name in connection.execute(
                    sa.select(ReportTemplate.specialty, ReportTemplate.name))}
            return int(count or 0), names
        finally:
            engine.dispose()

    count, names = snapshot()
    assert count == len(starter_rows())
    assert names["cardiology"] == "心血管内科会诊报告" and names["icu"] == "重症监护会诊"
    command.downgrade(alembic_config(migrated), "0006-1")
    engine = sa.create_engine(migrated)
    try:
        inspector = sa.inspect(engine)
        assert "icd10_codes" not in inspector.get_table_names()
        assert "diagnosis_code" not in {c["name"] for c in inspector.get_columns("reports")}
        with engine.connect() as connection:
            rows = connection.execute(sa.text(
                "SELECT specialty, name, sections FROM report_templates ORDER BY id")).all()
    finally:
        engine.dispose()
    assert [r[0] for r in rows] == ["general", "cardiology", "radiology", "neurology"]
    assert rows[1][1] == "Cardiology consultation report"
    upgrade(migrated)
    assert snapshot() == (count, names)


# --- the import command ------------------------------------------------------------------------

def run_import(url: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HUIZHEN_RECORDS_DATABASE_URL": url,
           "HUIZHEN_STORAGE_DATA_DIR": str(data_dir), "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "huizhen", "records-import-icd10", *args],
                          capture_output=True, text=True, encoding="utf-8", timeout=120,
                          env=env)


def table(url: str) -> dict[str, tuple[str, str, str]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return {code: (zh, en, edition) for code, zh, en, edition in connection.execute(
                sa.select(Icd10Code.code, Icd10Code.name_zh, Icd10Code.name_en,
                          Icd10Code.edition))}
    finally:
        engine.dispose()


def test_import_command(migrated: str, tmp_path: Path) -> None:
    before = table(migrated)
    good = tmp_path / "national.csv"
    # As a Chinese-locale spreadsheet saves it: GB18030, CRLF, a header row.
    good.write_bytes(("疾病编码,疾病名称\r\n"
                      "I21.900x001,急性ST段抬高型心肌梗死\r\n"
                      "I21.900x002,急性非ST段抬高型心肌梗死\r\n"
                      "i10,原发性高血压\r\n").encode("gb18030"))
    first = run_import(migrated, tmp_path, str(good))
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == ("icd10: 2 added, 1 updated, 0 unchanged "
                                    "(3 rows, edition 国家临床版 2.0)")
    after = table(migrated)
    assert len(after) == len(before) + 2
    assert after["I21.900x001"] == ("急性ST段抬高型心肌梗死", "", "国家临床版 2.0")
    # An existing code matched case-insensitively; its English name is kept.
    assert after["I10"] == ("原发性高血压", "Essential (primary) hypertension", "国家临床版 2.0")
    # Importing again changes nothing.
    again = run_import(migrated, tmp_path, str(good))
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().startswith("icd10: 0 added, 0 updated, 3 unchanged")
    assert table(migrated) == after
    # A bad row anywhere: one line naming it, a failing exit, nothing imported.
    bad = tmp_path / "bad.csv"
    bad.write_text("code,name_zh,name_en\nJ99.9,新的编码,New\nK99.9,另一个,Other\n"
                   "not-a-code,坏行,Bad row\n", encoding="utf-8")
    refused = run_import(migrated, tmp_path, str(bad), "--edition", "test")
    assert refused.returncode != 0
    assert refused.stderr.strip() == (
        "huizhen: bad.csv: line 4: 'not-a-code' is not an ICD-10 code")
    assert table(migrated) == after


def test_import_command_refuses_before_touching_the_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In process (the subprocess runs above cover the command line itself)."""
    good = tmp_path / "good.csv"
    good.write_text("I10,原发性高血压\n", encoding="utf-8")
    database = tmp_path / "data" / "untouched.sqlite3"
    monkeypatch.setenv("HUIZHEN_STORAGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HUIZHEN_RECORDS_DATABASE_URL", f"sqlite:///{database}")
    for file, edition, message in (
            (tmp_path / "missing.csv", "x", f"huizhen: {tmp_path / 'missing.csv'}: "
                                            f"No such file or directory"),
            (tmp_path / "codes.xlsx", "x", "huizhen: codes.xlsx: spreadsheets are not read "
                                           "directly; save the sheet as CSV (UTF-8) with "
                                           "columns code,name_zh[,name_en]"),
            (good, " ", "huizhen: --edition must be 1 to 100 characters"),
            (good, "x" * 101, "huizhen: --edition must be 1 to 100 characters")):
        with pytest.raises(SystemExit) as stopped:
            cli.cmd_records_import_icd10(argparse.Namespace(
                file=str(file), edition=edition, config=None))
        assert stopped.value.code == message
    assert not database.parent.exists()
