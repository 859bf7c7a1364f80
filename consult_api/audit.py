"""The audit trail: who touched which record, when, in which role and hospital, from which
address, and with what outcome (``ok``, ``refused``, ``failed``).

``record`` is the one way to write a row. Reads of patient data call it in their own
transaction (the row commits with the read). A list call writes ONE row with the ids it
returned. Refused attempts (``Forbidden``, or ``Hidden``: an object that exists but is not
shown to this actor) and failed ones (5xx) are written by ``middleware`` in a transaction of
their own, since the request's transaction was rolled back. Each row also lists the objects
it is about in ``audit_objects`` (its object and every listed id), so that an auditor finds
list rows by object on SQLite and PostgreSQL alike.

Rows never carry patient data: actions are route names, objects are ids, ``detail`` is an
error code or the names (never the values) of the filters of an audit search.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.orm import Session

from consult_api import auth
from consult_api.errors import ConsultError, Forbidden, Hidden, InvalidRequest
from consult_api.http import CLOCK, actor_of, in_db
from consult_api.models import (
    AUDIT_OUTCOMES,
    AuditLog,
    AuditObject,
    Consultation,
    Hospital,
    Material,
    Report,
    User,
)
from consult_api.workflow import Actor, Role

logger = logging.getLogger(__name__)

ID_MAX = 2**31 - 1
MAX_ACTION = 100
MAX_DETAIL = 200
MAX_PATIENT_QUERY = 200
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
DEFAULT_EXPORT_LIMIT = 10_000
MAX_EXPORT_LIMIT = 10_000
FILTER_NAMES = ("user_id", "consultation_id", "patient", "action", "outcome", "from", "to")

# What an attempt on a route is called in the trail (the names reads use when they succeed).
# Routes not listed here are named by their aiohttp route name, else "METHOD /path/{id}".
ACTIONS: Mapping[tuple[str, str], str] = {
    ("POST", "/api/v1/hospitals"): "hospital.create",
    ("POST", "/api/v1/users"): "user.create",
    ("POST", "/api/v1/consultations"): "consultation.create",
    ("GET", "/api/v1/consultations"): "consultation.list",
    ("GET", "/api/v1/consultations/{id}"): "consultation.read",
    ("POST", "/api/v1/consultations/{id}/transitions"): "consultation.transition",
    ("POST", "/api/v1/consultations/{id}/schedule"): "consultation.schedule",
    ("POST", "/api/v1/consultations/{id}/room-token"): "consultation.room_token",
    ("POST", "/api/v1/consultations/{id}/materials"): "material.upload",
    ("GET", "/api/v1/consultations/{id}/materials"): "material.list",
    ("GET", "/api/v1/materials/{id}"): "material.download",
    ("GET", "/api/v1/materials/{id}/preview"): "material.preview",
    ("POST", "/api/v1/consultations/{id}/reports"): "report.create",
    ("GET", "/api/v1/consultations/{id}/reports"): "report.read",
    ("PATCH", "/api/v1/reports/{id}"): "report.edit",
    ("POST", "/api/v1/reports/{id}/publish"): "report.publish",
    ("POST", "/api/v1/reports/{id}/amend"): "report.amend",
    ("GET", "/api/v1/statistics"): "statistics.read",
    ("GET", "/api/v1/audit"): "audit.search",
    ("GET", "/api/v1/audit/export"): "audit.export",
}


# --- writing -----------------------------------------------------------------------------------

def record(session: Session, actor: Actor, action: str, object_type: str,
           object_id: int | None, *, outcome: str = "ok", ids: Sequence[int] | None = None,
           ids_type: str | None = None, detail: str | None = None,
           now: datetime) -> AuditLog:
    """Add one audit row (and its ``audit_objects``) to ``session``'s transaction.

    ``ids``: what a list call returned, objects of type ``ids_type`` (default
    ``object_type``); ``object_id`` is then the list's scope (a consultation) or None.
    ``detail`` is short and never patient data."""
    if outcome not in AUDIT_OUTCOMES:
        raise ValueError(f"outcome must be one of {AUDIT_OUTCOMES}")
    row = AuditLog(actor_id=actor.user_id, role=actor.role.value, hospital_id=actor.hospital_id,
                   address=actor.address[:100] or None, action=action[:MAX_ACTION],
                   object_type=object_type, object_id=object_id, outcome=outcome,
                   ids=None if ids is None else list(ids),
                   detail=detail[:MAX_DETAIL] if detail else None, at=now)
    session.add(row)
    session.flush()
    about = {(object_type, object_id)} if object_id is not None else set()
    about |= {(ids_type or object_type, i) for i in ids or ()}
    if about:
        _add_objects(session, row.id, sorted(about))
    return row


# One statement for all of a row's objects on PostgreSQL (two parallel arrays, unnested).
_OBJECTS_FROM_ARRAYS = sa.text(
    "INSERT INTO audit_objects (audit_id, object_type, object_id) "
    "SELECT :audit_id, kind, object_id FROM "
    "unnest(CAST(:kinds AS varchar[]), CAST(:ids AS integer[])) AS about(kind, object_id)")


def _add_objects(session: Session, audit_id: int, about: Sequence[tuple[str, int]]) -> None:
    """Why not one ``executemany``: psycopg 3 runs it as one INSERT per row, so a
    coordinator's list of 2,000 consultations cost 2,000 statements in the request's
    transaction (about half of that list's time under load). PostgreSQL gets a single
    INSERT ... SELECT FROM unnest(arrays); SQLite, in-process with no round trips, keeps
    the executemany."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_OBJECTS_FROM_ARRAYS, {"audit_id": audit_id,
                                               "kinds": [kind for kind, _ in about],
                                               "ids": [i for _, i in about]})
        return
    session.execute(sa.insert(AuditObject), [
        {"audit_id": audit_id, "object_type": kind, "object_id": i} for kind, i in about])


def rows_about(session: Session, object_type: str, object_id: int) -> list[dict[str, Any]]:
    """Every row about one object (list rows included), oldest first."""
    rows = session.scalars(sa.select(AuditLog).join(
        AuditObject, AuditObject.audit_id == AuditLog.id).where(
        AuditObject.object_type == object_type, AuditObject.object_id == object_id)
        .order_by(AuditLog.id))
    return [{"id": r.id, "actor_id": r.actor_id, "action": r.action, "outcome": r.outcome,
             "object_type": r.object_type, "object_id": r.object_id, "ids": r.ids, "at": r.at}
            for r in rows]


# --- refused and failed attempts: one middleware -------------------------------------------------

def action_for(method: str, template: str, route_name: str | None) -> str:
    """The action an attempt on a route stands for: never holds a path value."""
    return (route_name or ACTIONS.get((method, template))
            or f"{method} {template}")[:MAX_ACTION]


def object_for(template: str, action: str, raw_id: str | None) -> tuple[str, int | None]:
    """(object type, object id) of an attempt: the resource named before ``{id}`` in the
    path template (``/consultations/{id}/materials`` -> consultation), else the action's
    subject; the id only when it is a plausible one."""
    parts = [p for p in template.split("/") if p and p not in ("api", "v1")]
    if "{id}" in parts and parts.index("{id}") > 0:
        kind = parts[parts.index("{id}") - 1].removesuffix("s")
        number = int(raw_id) if raw_id and raw_id.isdigit() and len(raw_id) <= 9 else None
        return kind[:50], number
    if "." in action and " " not in action:
        return action.split(".", 1)[0][:50], None
    return (parts[0].removesuffix("s") if parts else "api")[:50], None


def attempt_outcome(exc: Exception) -> str | None:
    """``refused`` for an access refusal, ``failed`` for a server-side failure, else None
    (a client's mistake: bad input, a conflict, a missing object)."""
    if isinstance(exc, Forbidden | Hidden):
        return "refused"
    if isinstance(exc, ConsultError):
        return "failed" if exc.status >= 500 else None
    if isinstance(exc, web.HTTPException):
        return None
    return "failed"


@web.middleware
async def middleware(request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                     ) -> web.StreamResponse:
    """Audits refused and failed attempts of signed-in actors. Goes inside (after)
    ``errors_middleware`` in the app's list, so it sees the exception before it becomes a
    response; the request's own transaction was rolled back, so the row gets its own."""
    try:
        return await handler(request)
    except Exception as exc:
        outcome = attempt_outcome(exc)
        if outcome is not None:
            code = exc.code if isinstance(exc, ConsultError) else "internal-error"
            await _record_attempt(request, outcome, code)
        raise


async def _record_attempt(request: web.Request, outcome: str, code: str) -> None:
    try:
        actor = actor_of(request)
    except ConsultError:
        return  # nobody signed in: nothing to attribute
    resource = request.match_info.route.resource
    if resource is None:
        return
    template = resource.canonical
    action = action_for(request.method, template, request.match_info.route.name)
    object_type, object_id = object_for(template, action, request.match_info.get("id"))
    now = request.app[CLOCK]()
    try:
        await in_db(request, lambda s: record(s, actor, action, object_type, object_id,
                                              outcome=outcome, detail=code, now=now))
    except Exception:
        logger.warning("could not audit a %s attempt (%s) by user %s", outcome, action,
                       actor.user_id, exc_info=True)


# --- searching ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Filters:
    user_id: int | None = None
    consultation_id: int | None = None
    patient: str | None = None
    action: str | None = None
    outcome: str | None = None
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive
    limit: int = DEFAULT_LIMIT
    before_id: int | None = None

    def named(self) -> list[str]:
        """The names of the filters in use (for the audit row of a search: never values)."""
        query_names = {"start": "from", "end": "to"}
        return [query_names.get(f.name, f.name) for f in fields(self)
                if f.name not in ("limit", "before_id") and getattr(self, f.name) is not None]


def _int(query: Mapping[str, str], name: str, *, low: int = 1, high: int = ID_MAX,
         default: int | None = None) -> int | None:
    raw = query.get(name, "").strip()
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 10 or not low <= int(raw) <= high:
        raise InvalidRequest(f"{name} must be an integer from {low} to {high}")
    return int(raw)


def _when(query: Mapping[str, str], name: str, *, end_of_day: bool) -> datetime | None:
    """An ISO 8601 date-time with an offset, or a date (a UTC day; as ``to``, the whole day
    is included). Returned in UTC."""
    raw = query.get(name, "").strip()
    if not raw:
        return None
    message = (f"{name} must be an ISO 8601 date-time with a UTC offset "
               f"(2026-03-02T08:00:00+08:00) or a date (2026-03-02)")
    if len(raw) > 40:
        raise InvalidRequest(message)
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidRequest(message) from None
    if len(raw) == 10:  # a date
        value = value.replace(tzinfo=UTC) + (timedelta(days=1) if end_of_day else timedelta())
    elif value.tzinfo is None:
        raise InvalidRequest(message)
    return value.astimezone(UTC)


def parse_filters(query: Mapping[str, str], *, export: bool = False) -> Filters:
    """Pure: the search filters from a query string; InvalidRequest names the bad one."""
    patient = query.get("patient", "").strip() or None
    if patient is not None and (len(patient) > MAX_PATIENT_QUERY or not patient.isprintable()):
        raise InvalidRequest(f"patient must be at most {MAX_PATIENT_QUERY} printable characters")
    action = query.get("action", "").strip() or None
    if action is not None and (len(action) > MAX_ACTION or not action.isprintable()):
        raise InvalidRequest(f"action must be at most {MAX_ACTION} printable characters")
    outcome = query.get("outcome", "").strip() or None
    if outcome is not None and outcome not in AUDIT_OUTCOMES:
        raise InvalidRequest(f"outcome must be one of {', '.join(AUDIT_OUTCOMES)}")
    start = _when(query, "from", end_of_day=False)
    end = _when(query, "to", end_of_day=True)
    if start is not None and end is not None and end <= start:
        raise InvalidRequest("to must be later than from")
    high, default = ((MAX_EXPORT_LIMIT, DEFAULT_EXPORT_LIMIT) if export
                     else (MAX_LIMIT, DEFAULT_LIMIT))
    limit = _int(query, "limit", high=high, default=default)
    assert limit is not None
    return Filters(user_id=_int(query, "user_id"),
                   consultation_id=_int(query, "consultation_id"), patient=patient,
                   action=action, outcome=outcome, start=start, end=end, limit=limit,
                   before_id=_int(query, "before_id"))


def _about_consultations(consultations: Any) -> Any:
    """Audit ids of rows about these consultations (a subquery of consultation ids): the
    consultation itself, its materials and its reports, list rows included."""
    return sa.select(AuditObject.audit_id).where(sa.or_(
        sa.and_(AuditObject.object_type == "consultation",
                AuditObject.object_id.in_(consultations)),
        sa.and_(AuditObject.object_type == "material", AuditObject.object_id.in_(
            sa.select(Material.id).where(Material.consultation_id.in_(consultations)))),
        sa.and_(AuditObject.object_type == "report", AuditObject.object_id.in_(
            sa.select(Report.id).where(Report.consultation_id.in_(consultations))))))


def _query(filters: Filters) -> sa.Select[AuditLog, str, str]:
    query = (sa.select(AuditLog, User.display_name, Hospital.name)
             .join(User, User.id == AuditLog.actor_id)
             .join(Hospital, Hospital.id == AuditLog.hospital_id, isouter=True))
    if filters.user_id is not None:
        query = query.where(AuditLog.actor_id == filters.user_id)
    if filters.consultation_id is not None:
        query = query.where(AuditLog.id.in_(_about_consultations(
            sa.select(Consultation.id).where(Consultation.id == filters.consultation_id))))
    if filters.patient is not None:
        matching = sa.select(Consultation.id).where(sa.or_(
            Consultation.patient_name.istartswith(filters.patient, autoescape=True),
            Consultation.patient_record_number.istartswith(filters.patient, autoescape=True)))
        query = query.where(AuditLog.id.in_(_about_consultations(matching)))
    if filters.action is not None:
        query = query.where(AuditLog.action == filters.action)
    if filters.outcome is not None:
        query = query.where(AuditLog.outcome == filters.outcome)
    if filters.start is not None:
        query = query.where(AuditLog.at >= filters.start)
    if filters.end is not None:
        query = query.where(AuditLog.at < filters.end)
    if filters.before_id is not None:
        query = query.where(AuditLog.id < filters.before_id)
    return query.order_by(AuditLog.id.desc()).limit(filters.limit + 1)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def search(session: Session, actor: Actor, filters: Filters, now: datetime, *,
           action: str = "audit.search") -> tuple[list[dict[str, Any]], int | None]:
    """(entries newest first, the ``before_id`` of the next page or None); admins only.
    The search itself is audited (``action``), naming the filters used, not their values."""
    auth.require_role(actor, Role.ADMIN)
    found = list(session.execute(_query(filters)))
    more = len(found) > filters.limit
    found = found[:filters.limit]
    entries: list[dict[str, Any]] = [{
        "id": row.id, "at": _utc(row.at).isoformat(), "actor_id": row.actor_id,
        "actor_name": actor_name, "role": row.role, "hospital_id": row.hospital_id,
        "hospital_name": hospital_name, "address": row.address, "action": row.action,
        "object_type": row.object_type, "object_id": row.object_id, "outcome": row.outcome,
        "ids": row.ids, "detail": row.detail} for row, actor_name, hospital_name in found]
    named = filters.named()
    record(session, actor, action, "audit", None,
           detail=f"filters: {', '.join(named)}" if named else None, now=now)
    return entries, found[-1][0].id if more else None


# --- CSV export --------------------------------------------------------------------------------

CSV_COLUMNS = ("id", "at", "actor_id", "actor_name", "role", "hospital_id", "hospital_name",
               "address", "action", "object_type", "object_id", "outcome", "ids", "detail")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula."""
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def to_csv(entries: Iterable[Mapping[str, Any]], headings: Mapping[str, str],
           outcomes: Mapping[str, str]) -> bytes:
    """Pure: UTF-8 with a byte order mark (so that Excel reads Chinese correctly), one
    heading row in the reader's language, outcomes in words, everything else as stored."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([headings.get(c, c) for c in CSV_COLUMNS])
    for entry in entries:
        writer.writerow([_cell(outcomes.get(entry[c], entry[c]) if c == "outcome" else entry[c])
                         for c in CSV_COLUMNS])
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")
