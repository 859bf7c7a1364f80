"""Consultation reports: templates, drafts, publication (final) and amendments.

Only the assigned expert writes reports. A published version is immutable; an amendment is
a new draft version (``version + 1``) linked to the published one it amends, with a reason.
Publishing the first version moves the consultation to ``reported`` (workflow rules).
Published versions are readable by everyone who may read the consultation (audited);
drafts only by their author and admins. Messages and logs carry ids, never report text.

The diagnosis is free text plus an optional ICD-10 code from the code table
(``diagnosis_code``; an unknown code is refused with ``unknown-icd10-code``); an amendment
starts with the code of the version it amends.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from consult_api import audit, icd10, notifications
from consult_api.errors import Forbidden, Hidden, InvalidRequest, InvalidTransition, NotFound
from consult_api.models import Consultation, Report, ReportTemplate
from consult_api.records import _facts, _load, _record_transition
from consult_api.schemas import iso
from consult_api.workflow import Actor, Party, Role, State, check_transition, parties

logger = logging.getLogger(__name__)

MAX_SECTION = 20_000
MAX_SECTIONS = 50
MAX_DIAGNOSIS = 200
MAX_REASON = 2000


@dataclass(frozen=True)
class DraftIn:
    template_id: int | None


@dataclass(frozen=True)
class EditIn:
    sections: dict[str, str] | None
    diagnosis: str | None
    clear_diagnosis: bool
    diagnosis_code: str | None = None
    clear_diagnosis_code: bool = False


@dataclass(frozen=True)
class AmendIn:
    reason: str


# --- pure parsing ------------------------------------------------------------------------------

def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


def parse_draft(body: Any) -> DraftIn:
    value = _object(body).get("template_id")
    if value is None:
        return DraftIn(template_id=None)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**31:
        raise InvalidRequest("template_id must be a positive integer")
    return DraftIn(template_id=value)


def parse_edit(body: Any) -> EditIn:
    data = _object(body)
    sections: dict[str, str] | None = None
    if "sections" in data:
        raw = data["sections"]
        if not isinstance(raw, dict) or len(raw) > MAX_SECTIONS:
            raise InvalidRequest(f"sections must be an object of at most {MAX_SECTIONS} entries")
        for key, text in raw.items():
            if not key or len(key) > 50 or not isinstance(text, str) or len(text) > MAX_SECTION:
                raise InvalidRequest(f"each section must map a key (at most 50 characters) to "
                                     f"a string of at most {MAX_SECTION} characters")
        sections = dict(raw)
    diagnosis = data.get("diagnosis")
    if diagnosis is not None and (not isinstance(diagnosis, str) or not diagnosis.strip()
                                  or len(diagnosis) > MAX_DIAGNOSIS):
        raise InvalidRequest(f"diagnosis must be a non-empty string of at most "
                             f"{MAX_DIAGNOSIS} characters")
    code = data.get("diagnosis_code")
    if code is not None and (not isinstance(code, str) or not code.strip()
                             or len(code.strip()) > icd10.MAX_CODE):
        raise InvalidRequest(f"diagnosis_code must be an ICD-10 code (a string of at most "
                             f"{icd10.MAX_CODE} characters) or null")
    return EditIn(sections=sections, diagnosis=None if diagnosis is None else diagnosis.strip(),
                  clear_diagnosis="diagnosis" in data and diagnosis is None,
                  diagnosis_code=None if code is None else code.strip(),
                  clear_diagnosis_code="diagnosis_code" in data and code is None)


def parse_amend(body: Any) -> AmendIn:
    reason = _object(body).get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
        raise InvalidRequest(f"reason must be a non-empty string of at most {MAX_REASON} "
                             f"characters")
    return AmendIn(reason=reason.strip())


def report_json(r: Report) -> dict[str, Any]:
    return {"id": r.id, "consultation_id": r.consultation_id, "author_id": r.author_id,
            "template_id": r.template_id, "version": r.version, "previous_id": r.previous_id,
            "amendment_reason": r.amendment_reason, "status": r.status,
            "sections": r.sections, "diagnosis": r.diagnosis,
            "diagnosis_code": r.diagnosis_code,
            "diagnosis_name_zh": None if r.diagnosis_icd is None else r.diagnosis_icd.name_zh,
            "diagnosis_name_en": None if r.diagnosis_icd is None else r.diagnosis_icd.name_en,
            # iso(): SQLite hands the stored UTC times back without their offset.
            "created_at": iso(r.created_at), "updated_at": iso(r.updated_at),
            "published_at": iso(r.published_at)}


def template_json(t: ReportTemplate) -> dict[str, Any]:
    """``sections``: {key, title (Chinese), title_en}; ``title_en`` falls back to ``title``
    for a site's own templates that have no English titles."""
    return {"id": t.id, "specialty": t.specialty, "name": t.name,
            "name_en": t.name_en or t.name,
            "sections": [{"key": s["key"], "title": s["title"],
                          "title_en": s.get("title_en") or s["title"]} for s in t.sections]}


def may_see(actor: Actor, r: Report) -> bool:
    """Drafts: their author and admins; published versions: whoever may read the record."""
    return r.status == "published" or actor.user_id == r.author_id or actor.role is Role.ADMIN


# --- I/O ---------------------------------------------------------------------------------------

def list_templates(session: Session, specialty: str | None) -> list[ReportTemplate]:
    query = sa.select(ReportTemplate).order_by(ReportTemplate.id)
    if specialty:
        query = query.where(ReportTemplate.specialty == specialty)
    return list(session.scalars(query))


def _require_author(actor: Actor, c: Consultation) -> None:
    if Party.ASSIGNED_EXPERT not in parties(actor, _facts(c)):
        raise Forbidden("only the assigned expert may write this consultation's report")


def _versions(session: Session, consultation_id: int) -> list[Report]:
    return list(session.scalars(sa.select(Report).where(
        Report.consultation_id == consultation_id).order_by(Report.version)))


def create_draft(session: Session, actor: Actor, consultation_id: int, data: DraftIn,
                 now: datetime) -> Report:
    c = _load(session, actor, consultation_id, for_update=True)
    _require_author(actor, c)
    if State(c.state) not in (State.ACCEPTED, State.SCHEDULED, State.IN_SESSION):
        raise InvalidTransition(f"a {c.state} consultation cannot get a first report")
    if _versions(session, c.id):
        raise InvalidTransition("this consultation already has a report: amend it instead")
    sections: dict[str, str] = {}
    if data.template_id is not None:
        template = session.get(ReportTemplate, data.template_id)
        if template is None:
            raise InvalidRequest("template_id does not name a report template")
        sections = {s["key"]: "" for s in template.sections}
    report = Report(consultation_id=c.id, author_id=actor.user_id,
                    template_id=data.template_id, version=1, previous_id=None,
                    amendment_reason=None, status="draft", sections=sections, diagnosis=None,
                    created_at=now, updated_at=now, published_at=None)
    session.add(report)
    session.flush()
    logger.info("consultation %s: report %s drafted by user %s", c.id, report.id,
                actor.user_id)
    return report


def _load_own(session: Session, actor: Actor, report_id: int) -> tuple[Report, Consultation]:
    report = session.scalars(sa.select(Report).where(Report.id == report_id)
                             .with_for_update()).one_or_none()
    if report is None:
        raise NotFound(f"no report {report_id}")
    c = _load(session, actor, report.consultation_id, for_update=True)
    if not may_see(actor, report):
        raise Hidden(f"no report {report_id}")
    _require_author(actor, c)
    return report, c


def edit(session: Session, actor: Actor, report_id: int, data: EditIn,
         now: datetime) -> Report:
    report, _ = _load_own(session, actor, report_id)
    if report.status != "draft":
        raise InvalidTransition("a published report is final: amend it instead")
    if data.sections is not None:
        report.sections = {**report.sections, **data.sections}
    if data.diagnosis is not None or data.clear_diagnosis:
        report.diagnosis = data.diagnosis
    if data.diagnosis_code is not None:
        code = icd10.lookup(session, data.diagnosis_code)
        if code is None:
            raise InvalidRequest("diagnosis_code is not in the ICD-10 code table",
                                 code="unknown-icd10-code")
        report.diagnosis_code, report.diagnosis_icd = code.code, code
    elif data.clear_diagnosis_code:
        report.diagnosis_code, report.diagnosis_icd = None, None
    report.updated_at = now
    return report


def publish(session: Session, actor: Actor, report_id: int, now: datetime) -> Report:
    report, c = _load_own(session, actor, report_id)
    if report.status != "draft":
        raise InvalidTransition("this report version is already published")
    if report.version == 1:
        check_transition(_facts(c), State.REPORTED, actor)
        _record_transition(session, c, State.REPORTED, actor, f"report {report.id}", now)
    report.status = "published"
    report.published_at = now
    report.updated_at = now
    notifications.report_published(session, c, report.id, report.version, actor.user_id, now)
    logger.info("consultation %s: report %s v%s published by user %s", c.id, report.id,
                report.version, actor.user_id)
    return report


def amend(session: Session, actor: Actor, report_id: int, data: AmendIn,
          now: datetime) -> Report:
    previous, c = _load_own(session, actor, report_id)
    if previous.status != "published":
        raise InvalidTransition("only a published report can be amended")
    versions = _versions(session, c.id)
    if versions[-1].id != previous.id:
        raise InvalidTransition("only the latest version can be amended")
    report = Report(consultation_id=c.id, author_id=actor.user_id,
                    template_id=previous.template_id, version=previous.version + 1,
                    previous_id=previous.id, amendment_reason=data.reason, status="draft",
                    sections=dict(previous.sections), diagnosis=previous.diagnosis,
                    diagnosis_code=previous.diagnosis_code,
                    diagnosis_icd=previous.diagnosis_icd,
                    created_at=now, updated_at=now, published_at=None)
    session.add(report)
    session.flush()
    logger.info("consultation %s: report %s amends %s (user %s)", c.id, report.id,
                previous.id, actor.user_id)
    return report


def listing(session: Session, actor: Actor, consultation_id: int,
            now: datetime) -> list[Report]:
    """The versions this actor may see; one audit row with the report ids shown."""
    c = _load(session, actor, consultation_id)
    found = [r for r in _versions(session, c.id) if may_see(actor, r)]
    audit.record(session, actor, "report.read", "consultation", c.id,
                 ids=[r.id for r in found], ids_type="report", now=now)
    return found
