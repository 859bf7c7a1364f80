"""The OpenAPI 3.0 description of the API, served at ``GET /api/v1/openapi.json``.

``ROUTES`` declares every operation once: method, path, summary, request body, query
parameters, success status and success content (media type and schema), error statuses and
who may call it. ``document()`` turns that table and the component schemas
(``openapi_schemas``) into the description; a test checks the table against the app's router
and that every operation has a success schema.

Error statuses implied by the route's shape are added to the declared ones: 401 and 403 for
every route that needs credentials (no or bad credentials; a role that may not; a session
request without its CSRF token), 400 for every route with a request body or query
parameters, 404 for every route with an id in its path.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from consult_api import icd10, records
from consult_api.filetype import MEDIA_TYPES
from consult_api.openapi_schemas import (
    Schema,
    audit_filters,
    components,
    enum,
    identifier,
    query,
    ref,
    upload_name,
)
from consult_api.referral_flow import Direction, ReferralState
from consult_api.web_routes import FILE_NAME
from consult_api.workflow import Role, State

OPENAPI_PATH = "/api/v1/openapi.json"
# The request body of a material upload: the raw file, its name in a header.
UPLOAD = "upload"
# The request body of a recording file's upload: raw bytes, described by Content-Range.
BYTES = "bytes"

# Who may call an operation: an API token or a browser session (the default), a browser
# session only, the recorder's service token, or anybody.
Access = Literal["user", "session", "recorder", "public"]


@dataclass(frozen=True)
class Content:
    """A success body: its media type and schema."""

    media_type: str
    schema: Schema


def as_json(name: str) -> tuple[Content, ...]:
    return (Content("application/json", ref(name)),)


def binary(*media_types: str) -> tuple[Content, ...]:
    return tuple(Content(t, {"type": "string", "format": "binary"}) for t in media_types)


def page(media_type: str, description: str) -> tuple[Content, ...]:
    return (Content(media_type, {"type": "string", "description": description}),)


NO_CONTENT: tuple[Content, ...] = ()


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    body: str | None  # a request schema name, UPLOAD, BYTES or None
    ok: int  # the success status
    returns: tuple[Content, ...]  # the success body (none: 204)
    errors: tuple[int, ...] = ()  # beyond those the route's shape implies
    query: tuple[Schema, ...] = ()
    access: Access = "user"
    also_ok: tuple[int, ...] = ()  # further success statuses with the same body


def _q(name: str, schema: Schema, description: str | None = None) -> Schema:
    return query(name, schema, description)


_FLAG = {"type": "string", "enum": ["0", "1"]}
_TIME = {"type": "string", "format": "date-time"}
_DATE = {"type": "string", "format": "date"}
_RANGE = (_q("from", _TIME, "default: now"), _q("to", _TIME, "default: 31 days after from; "
                                                               "at most 366 days after"))
_FRAME = (
    {"name": "n", "in": "path", "required": True, "description": "the frame, from 0",
     "schema": {"type": "integer", "minimum": 0}},
    _q("center", {"type": "number"},
       "window center in modality units (default: the material's window)"),
    _q("width", {"type": "number", "exclusiveMinimum": True, "minimum": 0},
       "window width in modality units, above 0 (default: the material's)"))

_RECORDING = {"name": "recording", "in": "path", "required": True,
              "description": "the recording's id (its manifest id)",
              "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$"}}
_FILE = _q("name", {"type": "string", "minLength": 1, "maxLength": 200},
           "the file's relative name, e.g. vod/teaching.mp4 (no '..', no leading '/')")
_CONTENT_RANGE = {"name": "Content-Range", "in": "header", "required": False,
                  "description": "bytes first-last/size (bytes */0 for an empty file); "
                                 "absent: the whole file",
                  "schema": {"type": "string"}}

ROUTES: tuple[Operation, ...] = (
    # --- directory ---
    Operation("post", "/api/v1/hospitals", "Create a hospital (admin)", "HospitalIn", 201,
              as_json("Created")),
    Operation("get", "/api/v1/hospitals", "List hospitals", None, 200, as_json("Hospitals")),
    Operation("get", "/api/v1/departments", "List departments", None, 200,
              as_json("Departments"), query=(_q("hospital_id", identifier()),)),
    Operation("post", "/api/v1/departments", "Create a department (admin)", "DepartmentIn",
              201, as_json("Created")),
    Operation("post", "/api/v1/users", "Create a user (admin; with a set-password link)",
              "UserIn", 201, as_json("UserCreated"), (404, 409)),
    Operation("get", "/api/v1/users", "List users (admin)", None, 200, as_json("Users"),
              query=(_q("hospital_id", identifier()), _q("role", enum(Role)),
                     _q("q", {"type": "string", "maxLength": 100}))),
    Operation("patch", "/api/v1/users/{id}", "Change a user (admin)", "UserChangeIn", 200,
              as_json("User")),
    Operation("post", "/api/v1/users/{id}/reset", "Reset a user's password (admin)", None,
              200, as_json("PasswordLink"), (400, 409)),
    Operation("get", "/api/v1/experts", "List experts", None, 200, as_json("Experts")),
    # --- consultations ---
    Operation("post", "/api/v1/consultations", "Request a consultation", "ConsultationIn",
              201, as_json("ConsultationCreated"), (404, 409)),
    Operation("get", "/api/v1/consultations", "List visible consultations", None, 200,
              as_json("Consultations"), query=(
                  _q("state", enum(State)), _q("mine", _FLAG),
                  _q("limit", {"type": "integer", "minimum": 1,
                               "maximum": records.LIST_MAX_LIMIT,
                               "default": records.LIST_LIMIT}),
                  _q("before_id", identifier(), "the next_before_id of the previous page"))),
    Operation("get", "/api/v1/consultations/{id}", "Read a consultation", None, 200,
              as_json("ConsultationDetail")),
    Operation("post", "/api/v1/consultations/{id}/transitions", "Move a consultation",
              "TransitionIn", 200, as_json("Consultation"), (409,)),
    Operation("post", "/api/v1/consultations/{id}/schedule", "Schedule a consultation",
              "ScheduleIn", 200, as_json("Consultation"), (409,)),
    Operation("post", "/api/v1/consultations/{id}/room-token", "Mint a live room token",
              None, 200, as_json("RoomToken"), (409, 503)),
    # --- materials ---
    Operation("post", "/api/v1/consultations/{id}/materials", "Upload a material", UPLOAD,
              201, as_json("Material"), (409, 413, 415, 422)),
    Operation("get", "/api/v1/consultations/{id}/materials", "List materials", None, 200,
              as_json("Materials")),
    Operation("get", "/api/v1/materials/{id}", "Download a material", None, 200,
              binary(*MEDIA_TYPES.values())),
    Operation("get", "/api/v1/materials/{id}/preview", "A material's PNG preview", None, 200,
              binary("image/png")),
    Operation("get", "/api/v1/materials/{id}/frames/{n}",
              "One frame of a DICOM material as PNG", None, 200, binary("image/png"), (422,),
              query=_FRAME),
    Operation("post", "/api/v1/artefacts",
              "Recorder hand-off (201 new; 200 the same manifest again)", "HandoffIn", 201,
              as_json("Artefact"), (404, 409, 503), access="recorder", also_ok=(200,)),
    Operation("post", "/api/v1/recordings",
              "Announce a recording's files (201 new; 200 again): which bytes are needed",
              "RecordingIn", 201, as_json("RecordingNeed"), (409, 413, 503), access="recorder",
              also_ok=(200,)),
    Operation("put", "/api/v1/recordings/{recording}/files",
              "Upload a recording file's bytes from the offset held (Content-Range)", BYTES,
              200, as_json("RecordingFileState"), (404, 409, 413, 422, 503),
              query=(_RECORDING, _FILE, _CONTENT_RANGE), access="recorder"),
    Operation("post", "/api/v1/recordings/{recording}/commit",
              "Attach a received recording (404 room-unclaimed: kept for an admin)", None,
              200, as_json("Recording"), (404, 409, 503), query=(_RECORDING,),
              access="recorder"),
    Operation("get", "/api/v1/recordings", "Unclaimed recordings (admin)", None, 200,
              as_json("Recordings"), query=(_q("status", {"type": "string",
                                                          "enum": ["unclaimed"]}),)),
    Operation("get", "/api/v1/consultations/{id}/recordings", "A consultation's recordings",
              None, 200, as_json("Recordings")),
    Operation("get", "/api/v1/recording-files/{id}",
              "A received recording file (HTTP Range: 206 partial)", None, 200,
              binary("video/mp4", "video/webm", "audio/webm", "video/x-matroska",
                     "application/vnd.msgpack", "application/octet-stream"),
              query=(_FILE,), also_ok=(206,)),
    Operation("post", "/api/v1/recording-files/{id}/attach",
              "Attach an unclaimed recording to a consultation (admin)", "RecordingAttachIn",
              200, as_json("Recording")),
    Operation("post", "/api/v1/recording-files/{id}/discard",
              "Discard an unclaimed recording and its files (admin)", None, 204, NO_CONTENT),
    # --- reports ---
    Operation("post", "/api/v1/consultations/{id}/reports", "Start a report draft",
              "DraftIn", 201, as_json("Report"), (409,)),
    Operation("get", "/api/v1/consultations/{id}/reports", "List reports", None, 200,
              as_json("Reports")),
    Operation("patch", "/api/v1/reports/{id}", "Edit a report draft", "EditIn", 200,
              as_json("Report"), (409,)),
    Operation("post", "/api/v1/reports/{id}/publish", "Publish a report", None, 200,
              as_json("Report"), (409,)),
    Operation("post", "/api/v1/reports/{id}/amend", "Amend a published report", "AmendIn",
              201, as_json("Report"), (409,)),
    Operation("get", "/api/v1/report-templates", "List report templates", None, 200,
              as_json("ReportTemplates"), query=(_q("specialty", {"type": "string"}),)),
    Operation("get", "/api/v1/statistics", "Consultation statistics", None, 200,
              as_json("Statistics"),
              query=tuple(_q(name, _DATE, f"{name} this day (UTC, inclusive): consultations "
                                          "by request date") for name in ("from", "to"))),
    Operation("get", "/api/v1/icd10", "Search ICD-10 codes", None, 200, as_json("Icd10Codes"),
              query=(_q("q", {"type": "string", "maxLength": icd10.MAX_QUERY},
                        "code prefix (i21, I21.9), Chinese name (心肌梗死) or English words"),
                     _q("limit", {"type": "integer", "minimum": 1, "maximum": icd10.MAX_LIMIT,
                                  "default": icd10.DEFAULT_LIMIT}))),
    # --- slots and appointments ---
    Operation("get", "/api/v1/experts/{id}/slots", "An expert's free and booked slots", None,
              200, as_json("Slots"), query=_RANGE),
    Operation("post", "/api/v1/experts/{id}/slots", "Offer a slot of an expert", "SlotIn",
              201, as_json("Slot"), (409,)),
    Operation("delete", "/api/v1/slots/{id}", "Remove a free slot", None, 204, NO_CONTENT,
              (409,)),
    Operation("post", "/api/v1/consultations/{id}/appointment", "Schedule into a slot",
              "AppointmentIn", 200, as_json("Consultation"), (409,)),
    Operation("get", "/api/v1/appointments", "The calendar of booked slots", None, 200,
              as_json("Appointments"), query=(*_RANGE, _q("expert_id", identifier()))),
    # --- referrals ---
    Operation("post", "/api/v1/referrals", "Send a referral", "ReferralIn", 201,
              as_json("Referral"), (404, 409)),
    Operation("get", "/api/v1/referrals", "Referrals sent by or to my hospital", None, 200,
              as_json("Referrals"),
              query=(_q("direction", enum(Direction)), _q("state", enum(ReferralState)))),
    Operation("get", "/api/v1/referrals/{id}", "Read a referral", None, 200,
              as_json("ReferralDetail")),
    Operation("post", "/api/v1/referrals/{id}/transitions", "Move a referral",
              "ReferralTransitionIn", 200, as_json("Referral"), (409,)),
    Operation("post", "/api/v1/referrals/{id}/notes", "Add a note to a referral", "NoteIn",
              201, as_json("ReferralEvent")),
    # --- notifications ---
    Operation("get", "/api/v1/notifications", "My notifications", None, 200,
              as_json("Notifications"), query=(_q("unread", _FLAG),)),
    Operation("post", "/api/v1/notifications/{id}/read", "Mark a notification read", None,
              200, as_json("Notification")),
    Operation("post", "/api/v1/notifications/read-all", "Mark all my notifications read",
              None, 200, as_json("NotificationsMarked")),
    # --- audit ---
    Operation("get", "/api/v1/audit", "Search the audit log (admins)", None, 200,
              as_json("AuditEntries"), query=tuple(audit_filters(export=False))),
    Operation("get", "/api/v1/audit/export", "Export the audit log as CSV (admins)", None, 200,
              page("text/csv", "UTF-8 with a byte order mark; heading row first"),
              query=tuple(audit_filters(export=True))),
    # --- sign-in and one's own account ---
    Operation("post", "/api/v1/session", "Sign in (sets the session cookie)", "SessionIn",
              200, as_json("SessionOut"), (401, 403, 429), access="public"),
    Operation("get", "/api/v1/session", "The signed-in person and the CSRF token", None, 200,
              as_json("SessionOut")),
    Operation("delete", "/api/v1/session", "Sign out", None, 204, NO_CONTENT),
    Operation("post", "/api/v1/session/password", "Change one's own password",
              "PasswordChangeIn", 204, NO_CONTENT, (429,), access="session"),
    Operation("post", "/api/v1/password-links/redeem", "Set a password with a one-time link",
              "RedeemIn", 204, NO_CONTENT, (403, 429), access="public"),
    Operation("get", "/api/v1/me", "The signed-in person", None, 200, as_json("Me")),
    Operation("patch", "/api/v1/me", "Choose the interface language", "LanguageIn", 200,
              as_json("Me")),
    Operation("post", "/api/v1/me/totp", "Enrol an authenticator app", None, 200,
              as_json("TotpEnrolment"), (400,), access="session"),
    Operation("post", "/api/v1/me/totp/confirm", "Confirm the authenticator with a code",
              "CodeIn", 204, NO_CONTENT, access="session"),
    Operation("post", "/api/v1/me/totp/disable", "Disable the authenticator with a code",
              "CodeIn", 204, NO_CONTENT, access="session"),
    # --- API tokens ---
    Operation("post", "/api/v1/api-tokens", "Issue an API token (admin)", "ApiTokenIn", 201,
              as_json("ApiTokenIssued")),
    Operation("get", "/api/v1/api-tokens", "List API tokens (admins: all; others: their own)",
              None, 200, as_json("ApiTokens")),
    Operation("delete", "/api/v1/api-tokens/{id}", "Revoke an API token", None, 204,
              NO_CONTENT),
    # --- this description and the pages (public: the sign-in page must load) ---
    Operation("get", OPENAPI_PATH, "This description", None, 200, as_json("OpenApi"),
              access="public"),
    Operation("get", "/", "The workspace page", None, 200,
              page("text/html", "the workspace shell"), (404,), access="public"),
    Operation("get", "/workspace/{name}", "A workspace script, style or page file", None, 200,
              page("*/*", "HTML, JavaScript, CSS, SVG or PNG"), (404,), access="public"),
    Operation("get", "/i18n.js", "The message catalogue script", None, 200,
              page("text/javascript", "the catalogue loader"), (404,), access="public"),
    Operation("get", "/i18n/{name}", "A message catalogue file (both languages)", None, 200,
              as_json("CatalogueFile"), (404,),
              access="public"),
)

DESCRIPTIONS = MappingProxyType({
    200: "OK", 201: "Created", 204: "No content", 400: "Invalid request",
    401: "Unauthenticated", 403: "Forbidden", 404: "Not found", 409: "Conflict",
    413: "Too large", 415: "Unsupported media type", 422: "Unprocessable",
    429: "Too many attempts (retry_after seconds; Retry-After header)", 503: "Unavailable"})
SECURITY: MappingProxyType[Access, list[dict[str, list[str]]] | None] = MappingProxyType({
    "user": None,  # the document's default: an API token or a session
    "session": [{"sessionCookie": []}],
    "recorder": [{"recorderToken": []}],
    "public": [],
})


def operation_id(method: str, path: str) -> str:
    name = path.removeprefix("/api/v1/").replace("/", "_")
    for char in "{}":
        name = name.replace(char, "")
    return f"{method}_{name}".replace("-", "_").replace(".", "_")


def error_statuses(op: Operation) -> list[int]:
    """The declared error statuses and those the route's shape implies."""
    implied: set[int] = set(op.errors)
    if op.access in ("user", "session"):
        implied |= {401, 403}
    if op.access == "recorder":
        implied.add(401)
    if op.body is not None or op.query:
        implied.add(400)
    if "{" in op.path and op.access != "public":
        implied.add(404)
    return sorted(implied)


def parameters(op: Operation) -> list[Schema]:
    found: list[Schema] = []
    if "{id}" in op.path:
        found.append({"name": "id", "in": "path", "required": True, "schema": identifier()})
    if "{name}" in op.path:
        found.append({"name": "name", "in": "path", "required": True,
                      "schema": {"type": "string", "pattern": f"^{FILE_NAME}$"}})
    if op.body == UPLOAD:
        found.append(upload_name())
    return [*found, *op.query]


def _operation(op: Operation) -> dict[str, Any]:
    success: dict[str, Any] = {"description": DESCRIPTIONS[op.ok]}
    if op.returns:
        success["content"] = {c.media_type: {"schema": c.schema} for c in op.returns}
    responses = {str(status): success for status in (op.ok, *op.also_ok)}
    error = {"application/json": {"schema": ref("Error")}}
    for status in error_statuses(op):
        responses[str(status)] = {"description": DESCRIPTIONS[status], "content": error}
    found: dict[str, Any] = {"operationId": operation_id(op.method, op.path),
                             "summary": op.summary, "responses": responses}
    if op.body in (UPLOAD, BYTES):
        found["requestBody"] = {"required": True, "content": {"application/octet-stream": {
            "schema": {"type": "string", "format": "binary"}}}}
    elif op.body is not None:
        found["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": ref(op.body)}}}
    if params := parameters(op):
        found["parameters"] = params
    security = SECURITY[op.access]
    if security is not None:
        found["security"] = security
    return found


def document() -> dict[str, Any]:
    """The description, built afresh (callers may change it freely)."""
    paths: dict[str, dict[str, Any]] = {}
    for op in ROUTES:
        paths.setdefault(op.path, {})[op.method] = copy.deepcopy(_operation(op))
    return {
        "openapi": "3.0.3",
        "info": {"title": "huizhen consultation records API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": components(),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer",
                               "description": "a revocable API token (hz_...), issued by an "
                                              "admin (POST /api/v1/api-tokens)"},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "huizhen_session",
                                  "description": "set by POST /api/v1/session; unsafe "
                                                 "methods also need the X-CSRF-Token header"},
                "recorderToken": {"type": "http", "scheme": "bearer",
                                  "description": "the recorder's service secret"}}},
        "security": [{"bearerAuth": []}, {"sessionCookie": []}],
    }
