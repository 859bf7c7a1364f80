"""ICD-10 diagnosis codes: search, lookup, and importing a code table from CSV.

Codes are compared case-insensitively ("i21.9" names I21.9) and stored as the source spells
them (the national clinical edition writes extension codes such as ``I21.900x001``).
Search ranks an exact code first, then codes starting with the query (with or without
the dot: "i219" finds I21.9), then names starting with it, then names containing it
(shorter, more general names first); Chinese names match by substring, English names when
every word of the query occurs.

Importing is all or nothing: the whole file is parsed and checked first (pure), then
upserted in one transaction. A row without an English name keeps the English name the
table already has (national-edition files carry Chinese names only).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from consult_api.errors import InvalidRequest
from consult_api.models import Icd10Code

MAX_CODE = 20
MAX_NAME_ZH = 200
MAX_NAME_EN = 300
MAX_EDITION = 100
MAX_QUERY = 100
DEFAULT_LIMIT = 20
MAX_LIMIT = 50
# A letter, two digits (or digit + letter, as in U07), then an optional subdivision; the
# national edition's extensions ("x001") and dagger/asterisk pairs ("A17.0+G01*") fit.
CODE = re.compile(r"[A-Za-z][0-9][0-9A-Za-z](\.[0-9A-Za-z]{1,8})?([+*][0-9A-Za-z.+*]{0,12})?")
HEADER_WORDS = {"code", "icd", "icd10", "icd-10", "编码", "疾病编码", "诊断编码", "代码",
                "疾病代码", "诊断代码"}


class ImportProblem(ValueError):
    """A bad file or row: ``str()`` is one line fit to print (it names the line, never
    more than the code and the rule)."""


@dataclass(frozen=True)
class CodeIn:
    code: str
    name_zh: str
    name_en: str | None


@dataclass(frozen=True)
class SearchIn:
    q: str
    limit: int


@dataclass(frozen=True)
class ImportCounts:
    added: int
    updated: int
    unchanged: int


# --- pure ------------------------------------------------------------------------------------

def is_code(text: str) -> bool:
    return len(text) <= MAX_CODE and CODE.fullmatch(text) is not None


def parse_search(query: Mapping[str, str]) -> SearchIn:
    q = " ".join(query.get("q", "").split())
    if len(q) > MAX_QUERY or not q.isprintable():
        raise InvalidRequest(f"q must be printable text of at most {MAX_QUERY} characters")
    raw = query.get("limit")
    if raw is None or raw == "":
        return SearchIn(q=q, limit=DEFAULT_LIMIT)
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_LIMIT}")
    return SearchIn(q=q, limit=int(raw))


def decode(data: bytes) -> str:
    """UTF-8 (with or without the BOM spreadsheet programs write), else GB18030 (what a
    Chinese-locale spreadsheet saves as "CSV")."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError:
        raise ImportProblem("the file is neither UTF-8 nor GB18030 text") from None


def parse_csv(text: str) -> list[CodeIn]:
    """Rows of ``code,name_zh[,name_en]`` (an optional header row; blank lines skipped)."""
    found: list[CodeIn] = []
    seen: dict[str, int] = {}
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise ImportProblem(f"not a readable CSV file ({exc})") from None
    for number, row in enumerate(rows, start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        if number == 1 and cells[0].lower() in HEADER_WORDS:
            continue
        where = f"line {number}"
        if len(cells) < 2 or len(cells) > 3:
            raise ImportProblem(f"{where}: expected code,name_zh[,name_en] "
                                f"({len(cells)} columns)")
        code, name_zh = cells[0], cells[1]
        name_en = cells[2] if len(cells) == 3 and cells[2] else None
        if not is_code(code):
            raise ImportProblem(f"{where}: {code[:MAX_CODE]!r} is not an ICD-10 code")
        if not name_zh or len(name_zh) > MAX_NAME_ZH:
            raise ImportProblem(f"{where}: name_zh must be 1 to {MAX_NAME_ZH} characters")
        if name_en is not None and len(name_en) > MAX_NAME_EN:
            raise ImportProblem(f"{where}: name_en must be at most {MAX_NAME_EN} characters")
        key = code.upper()
        if key in seen:
            raise ImportProblem(f"{where}: code {code} repeats line {seen[key]}")
        seen[key] = number
        found.append(CodeIn(code=code, name_zh=name_zh, name_en=name_en))
    if not found:
        raise ImportProblem("the file has no codes")
    return found


def read_file(path: Path) -> list[CodeIn]:
    if path.suffix.lower() in (".xlsx", ".xls"):
        raise ImportProblem(f"{path.name}: spreadsheets are not read directly; save the "
                            f"sheet as CSV (UTF-8) with columns code,name_zh[,name_en]")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportProblem(f"{path}: {exc.strerror or exc}") from None
    try:
        return parse_csv(decode(data))
    except ImportProblem as exc:
        raise ImportProblem(f"{path.name}: {exc}") from None


def code_json(c: Icd10Code) -> dict[str, str]:
    return {"code": c.code, "name_zh": c.name_zh, "name_en": c.name_en}


# --- I/O -------------------------------------------------------------------------------------

def lookup(session: Session, code: str) -> Icd10Code | None:
    """The table's code for ``code``, compared case-insensitively."""
    if not is_code(code):
        return None
    return session.scalars(sa.select(Icd10Code).where(
        sa.func.upper(Icd10Code.code) == code.upper()).limit(1)).one_or_none()


def search(session: Session, wanted: SearchIn) -> list[Icd10Code]:
    if not wanted.q:
        return []
    q_upper = wanted.q.upper()
    q_lower = wanted.q.lower()
    words = q_lower.split()
    code = sa.func.upper(Icd10Code.code)
    dotless = sa.func.replace(code, ".", "")
    name_zh = Icd10Code.name_zh
    name_en = sa.func.lower(Icd10Code.name_en)
    code_prefix = sa.or_(code.startswith(q_upper, autoescape=True),
                         dotless.startswith(q_upper.replace(".", ""), autoescape=True)
                         if "." not in q_upper else sa.false())
    name_prefix = sa.or_(name_zh.startswith(wanted.q, autoescape=True),
                         name_en.startswith(q_lower, autoescape=True))
    in_name = sa.or_(sa.and_(*[name_zh.contains(w, autoescape=True) for w in words]),
                     sa.and_(*[name_en.contains(w, autoescape=True) for w in words]))
    rank = sa.case((code == q_upper, 0), (code_prefix, 1), (name_prefix, 2), else_=3)
    query = (sa.select(Icd10Code).where(sa.or_(code_prefix, in_name))
             .order_by(rank, sa.case((rank <= 1, 0), else_=sa.func.length(name_zh)),
                       sa.func.length(Icd10Code.code), Icd10Code.code)
             .limit(wanted.limit))
    return list(session.scalars(query))


def upsert(session: Session, codes: list[CodeIn], edition: str) -> ImportCounts:
    """Add new codes, update changed names; a row without name_en keeps the stored one."""
    existing = {c.code.upper(): c for c in session.scalars(sa.select(Icd10Code))}
    added = updated = unchanged = 0
    for item in codes:
        row = existing.get(item.code.upper())
        if row is None:
            session.add(Icd10Code(code=item.code, name_zh=item.name_zh,
                                  name_en=item.name_en or "", edition=edition, chapter=None))
            added += 1
            continue
        name_en = item.name_en if item.name_en is not None else row.name_en
        if (row.name_zh, row.name_en, row.edition) == (item.name_zh, name_en, edition):
            unchanged += 1
            continue
        row.name_zh, row.name_en, row.edition = item.name_zh, name_en, edition
        updated += 1
    session.flush()
    return ImportCounts(added=added, updated=updated, unchanged=unchanged)
