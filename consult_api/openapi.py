"""The OpenAPI 3.0 description of the API, served at ``GET /api/v1/openapi.json``.

Request schemas are derived from the constants the parsers validate against (enums, allowed
values, length limits), so a change there changes the description too. ``ROUTES`` lists every
operation; a test checks it against the app's router.
"""

from __future__ import annotations

from typing import Any

from consult_api import accounts, artefacts, audit, icd10, materials, referrals, reports
from consult_api.models import AUDIT_OUTCOMES, HOSPITAL_LEVELS, LANGUAGES, MATERIAL_KINDS
from consult_api.passwords import MAX_LENGTH
from consult_api.referral_flow import Direction, ReferralState
from consult_api.schemas import SEXES
from consult_api.web_routes import FILE_NAME
from consult_api.workflow import ConsultationType, Role, State, Urgency

ID_MAX = 2**31 - 1
OPENAPI_PATH = "/api/v1/openapi.json"

ERROR = {"type": "object", "required": ["error", "code"],
         "properties": {"error": {"type": "string"}, "code": {"type": "string"}}}
ANY_OBJECT: dict[str, Any] = {"type": "object"}
PNG = {"image/png": {"schema": {"type": "string", "format": "binary"}}}
NULLABLE_TEXT: dict[str, Any] = {"type": "string", "nullable": True}
NULLABLE_INT: dict[str, Any] = {"type": "integer", "nullable": True}

# A material as responses show it (upload, listing).
MATERIAL: dict[str, Any] = {
    "type": "object",
    "required": ["id", "consultation_id", "uploader_id", "kind", "media_type", "filename",
                 "size", "sha256", "created_at", "preview"],
    "properties": {
        "id": {"type": "integer"}, "consultation_id": {"type": "integer"},
        "uploader_id": {"type": "integer"},
        "kind": {"type": "string", "enum": list(MATERIAL_KINDS)},
        "media_type": {"type": "string"}, "filename": {"type": "string"},
        "size": {"type": "integer"}, "sha256": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "preview": {"type": "boolean"},
        "dicom": {"type": "object", "properties": {
            "modality": NULLABLE_TEXT, "study_date": NULLABLE_TEXT,
            "study_uid": NULLABLE_TEXT, "series_uid": NULLABLE_TEXT,
            "instance_uid": NULLABLE_TEXT, "rows": NULLABLE_INT, "columns": NULLABLE_INT,
            "frames": NULLABLE_INT, "photometric": NULLABLE_TEXT,
            "transfer_syntax": {"type": "object", "nullable": True,
                                "properties": {"uid": {"type": "string"},
                                               "name": {"type": "string"}}},
            "compressed": {"type": "boolean", "nullable": True},
            "window": {"type": "object", "nullable": True,
                       "description": "default window in modality units (e.g. HU)",
                       "properties": {"center": {"type": "number"},
                                      "width": {"type": "number"}}}}}}}
RESPONSE_CONTENT: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/api/v1/consultations/{id}/materials"): {"application/json": {
        "schema": {"$ref": "#/components/schemas/Material"}}},
    ("get", "/api/v1/consultations/{id}/materials"): {"application/json": {"schema": {
        "type": "object", "properties": {"materials": {
            "type": "array", "items": {"$ref": "#/components/schemas/Material"}}}}}},
    ("get", "/api/v1/materials/{id}/preview"): PNG,
    ("get", "/api/v1/materials/{id}/frames/{n}"): PNG,
}
FRAME_PARAMETERS: list[dict[str, Any]] = [
    {"name": "n", "in": "path", "required": True, "description": "the frame, from 0",
     "schema": {"type": "integer", "minimum": 0}},
    {"name": "center", "in": "query", "required": False,
     "description": "window center in modality units (default: the material's window)",
     "schema": {"type": "number"}},
    {"name": "width", "in": "query", "required": False,
     "description": "window width in modality units, above 0 (default: the material's)",
     "schema": {"type": "number", "exclusiveMinimum": True, "minimum": 0}}]


def _enum(kind: Any) -> dict[str, Any]:
    return {"type": "string", "enum": [m.value for m in kind]}


def _text(max_len: int) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_len}


def _id() -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": ID_MAX}


PATIENT = {
    "type": "object", "required": ["name", "sex", "age", "summary"],
    "properties": {
        "name": _text(200), "sex": {"type": "string", "enum": list(SEXES)},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "record_number": {"type": "string", "maxLength": 100, "nullable": True},
        "summary": _text(20000)}}

USERNAME = {"type": "string", "minLength": 2, "maxLength": 64,
            "pattern": accounts.USERNAME.pattern,
            "description": "case-insensitive (stored lower-cased); needed to sign in"}
PASSWORD = {"type": "string", "minLength": 1, "maxLength": MAX_LENGTH, "format": "password"}
TIME = {"type": "string", "format": "date-time"}
NULLABLE_TIME = {**TIME, "nullable": True}
LANGUAGE = {"type": "string", "enum": list(LANGUAGES)}

REQUEST_BODIES: dict[str, dict[str, Any]] = {
    "SessionIn": {
        "type": "object", "required": ["username", "password"],
        "properties": {"username": {"type": "string", "minLength": 1, "maxLength": 64},
                       "password": PASSWORD,
                       "totp": {"type": "string", "maxLength": 16,
                                "description": "the authenticator code, when enabled"}}},
    "PasswordChangeIn": {
        "type": "object", "required": ["current_password", "new_password"],
        "properties": {"current_password": PASSWORD, "new_password": PASSWORD}},
    "RedeemIn": {
        "type": "object", "required": ["token", "password"],
        "properties": {"token": {"type": "string", "minLength": 1, "maxLength": 512},
                       "password": PASSWORD}},
    "LanguageIn": {"type": "object", "required": ["language"],
                   "properties": {"language": LANGUAGE}},
    "CodeIn": {"type": "object", "required": ["code"],
               "properties": {"code": {"type": "string", "minLength": 1, "maxLength": 16}}},
    "UserChangeIn": {
        "type": "object", "minProperties": 1,
        "properties": {"display_name": _text(200), "role": _enum(Role),
                       "hospital_id": _id(), "department_id": {**_id(), "nullable": True},
                       "disabled": {"type": "boolean"}}},
    "DepartmentIn": {"type": "object", "required": ["hospital_id", "name"],
                     "properties": {"hospital_id": _id(), "name": _text(200)}},
    "ApiTokenIn": {
        "type": "object", "required": ["user_id", "label", "ttl"],
        "properties": {"user_id": _id(), "label": _text(200),
                       "ttl": {"type": "integer", "minimum": accounts.API_TOKEN_MIN_TTL,
                               "maximum": accounts.API_TOKEN_MAX_TTL,
                               "description": "lifetime in seconds"}}},
    "ConsultationIn": {
        "type": "object", "required": ["patient", "question", "urgency", "type"],
        "properties": {"patient": PATIENT, "question": _text(20000), "urgency": _enum(Urgency),
                       "type": _enum(ConsultationType),
                       "expert_id": {**_id(), "nullable": True}}},
    "TransitionIn": {
        "type": "object", "required": ["to"],
        "properties": {"to": _enum(State), "note": {"type": "string", "maxLength": 5000}}},
    "ScheduleIn": {
        "type": "object", "required": ["start", "end", "expert_id"],
        "properties": {"start": {"type": "string", "format": "date-time"},
                       "end": {"type": "string", "format": "date-time"},
                       "expert_id": _id()}},
    "HospitalIn": {
        "type": "object", "required": ["name", "level"],
        "properties": {"name": _text(200),
                       "level": {"type": "string", "enum": list(HOSPITAL_LEVELS)}}},
    "UserIn": {
        "type": "object", "required": ["hospital_id", "display_name", "role"],
        "properties": {"username": USERNAME,
                       "hospital_id": _id(), "display_name": _text(200), "role": _enum(Role),
                       "department_id": {**_id(), "nullable": True},
                       "specialty": {"type": "string", "maxLength": 200, "nullable": True},
                       "availability": {"type": "string", "maxLength": 2000}}},
    "DraftIn": {
        "type": "object",
        "properties": {"template_id": {**_id(), "nullable": True}}},
    "EditIn": {
        "type": "object",
        "properties": {
            "sections": {"type": "object", "maxProperties": reports.MAX_SECTIONS,
                         "additionalProperties": {"type": "string",
                                                  "maxLength": reports.MAX_SECTION}},
            "diagnosis": {**_text(reports.MAX_DIAGNOSIS), "nullable": True},
            "diagnosis_code": {**_text(icd10.MAX_CODE), "nullable": True,
                               "description": "an ICD-10 code of the code table "
                                              "(unknown: 400 unknown-icd10-code)"}}},
    "AmendIn": {
        "type": "object", "required": ["reason"],
        "properties": {"reason": _text(reports.MAX_REASON)}},
    "HandoffIn": {
        "type": "object", "required": ["manifest", "artefacts"],
        "properties": {
            "recording": {"type": "string"},
            "manifest": {"type": "object", "required": ["id", "room"],
                         "properties": {"id": _text(100), "room": _text(100)}},
            "artefacts": {"type": "object", "required": ["files"], "properties": {"files": {
                "type": "array", "minItems": 1, "items": {
                    "type": "object", "required": list(artefacts.FILE_FIELDS),
                    "properties": {name: {"type": "integer" if kind is int else "string"}
                                   for name, kind in artefacts.FILE_FIELDS.items()}}}}}}},
    "SlotIn": {
        "type": "object", "required": ["start", "end"],
        "properties": {"start": {"type": "string", "format": "date-time"},
                       "end": {"type": "string", "format": "date-time"}}},
    "AppointmentIn": {
        "type": "object", "required": ["slot_id"], "properties": {"slot_id": _id()}},
    "ReferralIn": {
        "type": "object",
        "required": ["direction", "to_hospital_id", "reason", "patient"],
        "properties": {
            "direction": _enum(Direction), "to_hospital_id": _id(),
            "to_department_id": {**_id(), "nullable": True},
            "consultation_id": {**_id(), "nullable": True},
            "reason": _text(referrals.MAX_REASON),
            "patient": {"type": "object", "required": ["name", "sex", "age"], "properties": {
                "name": _text(200), "sex": {"type": "string", "enum": list(SEXES)},
                "age": {"type": "integer", "minimum": 0, "maximum": 150},
                "record_number": {"type": "string", "maxLength": 100, "nullable": True}}}}},
    "ReferralTransitionIn": {
        "type": "object", "required": ["to"],
        "properties": {"to": _enum(ReferralState),
                       "note": {"type": "string", "maxLength": referrals.MAX_NOTE}}},
    "NoteIn": {
        "type": "object", "required": ["text"],
        "properties": {"text": _text(referrals.MAX_NOTE)}},
}

_TIME = {"type": "string", "format": "date-time"}
# Query parameters of the listings: path -> [(name, schema)].
QUERY: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "/api/v1/report-templates": [("specialty", {"type": "string"})],
    "/api/v1/users": [("hospital_id", _id()), ("role", _enum(Role)),
                      ("q", {"type": "string", "maxLength": 100})],
    "/api/v1/departments": [("hospital_id", _id())],
    "/api/v1/consultations": [("state", _enum(State)),
                              ("mine", {"type": "string", "enum": ["0", "1"]})],
    "/api/v1/experts/{id}/slots": [("from", _TIME), ("to", _TIME)],
    "/api/v1/appointments": [("from", _TIME), ("to", _TIME), ("expert_id", _id())],
    "/api/v1/referrals": [("direction", _enum(Direction)), ("state", _enum(ReferralState))],
    "/api/v1/notifications": [("unread", {"type": "string", "enum": ["0", "1"]})],
}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


_STRING = {"type": "string"}
_COUNT = {"type": "integer", "minimum": 0}
_HOURS = {"type": "number", "nullable": True}
_TURNAROUND_SUMMARY = {"type": "object", "required": ["count", "median_hours", "p90_hours"],
                       "properties": {"count": _COUNT, "median_hours": _HOURS,
                                      "p90_hours": _HOURS}}
_TURNAROUND = {"type": "object", "required": ["request_to_scheduled", "request_to_reported"],
               "properties": {"request_to_scheduled": _TURNAROUND_SUMMARY,
                              "request_to_reported": _TURNAROUND_SUMMARY}}
_COUNTS = {"type": "object", "additionalProperties": _COUNT}


def _named_counts(id_field: str) -> dict[str, Any]:
    return {"type": "array", "items": {
        "type": "object", "required": [id_field, "name", "count"],
        "properties": {id_field: {"type": "integer"}, "name": _nullable(_STRING),
                       "count": _COUNT}}}


RESPONSE_BODIES: dict[str, dict[str, Any]] = {
    "Icd10Codes": {
        "type": "object", "required": ["codes"],
        "properties": {"codes": {"type": "array", "maxItems": icd10.MAX_LIMIT, "items": {
            "type": "object", "required": ["code", "name_zh", "name_en"],
            "properties": {"code": _STRING, "name_zh": _STRING, "name_en": _STRING}}}}},
    "Statistics": {
        "type": "object",
        "required": ["total", "period", "by_state", "by_hospital", "by_requesting_doctor",
                     "by_expert", "by_diagnosis", "by_month", "turnaround",
                     "reports_published", "amendments_published"],
        "properties": {
            "total": _COUNT,
            "period": {"type": "object", "required": ["from", "to"], "properties": {
                "from": _nullable({"type": "string", "format": "date"}),
                "to": _nullable({"type": "string", "format": "date"})}},
            "per_requesting_doctor": _COUNTS, "per_expert": _COUNTS,
            "per_requesting_hospital": _COUNTS, "per_diagnosis": _COUNTS,
            "per_month": _COUNTS,
            "turnaround": _TURNAROUND,
            "by_state": {"type": "object", "required": [s.value for s in State],
                         "properties": {s.value: _COUNT for s in State}},
            "by_hospital": _named_counts("hospital_id"),
            "by_requesting_doctor": _named_counts("user_id"),
            "by_expert": _named_counts("user_id"),
            "by_diagnosis": {"type": "array", "items": {
                "type": "object",
                "required": ["code", "name_zh", "name_en", "diagnosis", "count"],
                "properties": {"code": _nullable(_STRING), "name_zh": _nullable(_STRING),
                               "name_en": _nullable(_STRING),
                               "diagnosis": _nullable(_STRING), "count": _COUNT}}},
            "by_month": {"type": "array", "items": {
                "type": "object", "required": ["month", "requested", "reported", "turnaround"],
                "properties": {"month": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"},
                               "requested": _COUNT, "reported": _COUNT,
                               "turnaround": _TURNAROUND}}},
            "reports_published": _COUNT, "amendments_published": _COUNT}},
}

# Success response schemas, by (method, path).
RESPONSES = {("get", "/api/v1/icd10"): "Icd10Codes", ("get", "/api/v1/statistics"): "Statistics"}

# Query parameters, by path.
QUERY_PARAMETERS: dict[str, list[dict[str, Any]]] = {
    "/api/v1/icd10": [
        {"name": "q", "in": "query", "required": False,
         "description": "code prefix (i21, I21.9), Chinese name (心肌梗死) or English words",
         "schema": {"type": "string", "maxLength": icd10.MAX_QUERY}},
        {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": icd10.MAX_LIMIT,
                    "default": icd10.DEFAULT_LIMIT}}],
    "/api/v1/statistics": [
        {"name": name, "in": "query", "required": False,
         "description": f"{name} this day (UTC, inclusive): consultations by request date",
         "schema": {"type": "string", "format": "date"}} for name in ("from", "to")],
}

ME = {"type": "object", "required": ["id", "username", "display_name", "role", "hospital_id",
                                     "hospital_name", "department_id", "language",
                                     "totp_enabled"],
      "properties": {"id": _id(), "username": {"type": "string", "nullable": True},
                     "display_name": {"type": "string"}, "role": _enum(Role),
                     "hospital_id": _id(), "hospital_name": {"type": "string", "nullable": True},
                     "department_id": {**_id(), "nullable": True},
                     "language": {**LANGUAGE, "nullable": True},
                     "totp_enabled": {"type": "boolean"}}}
USER = {"type": "object", "required": ["id", "username", "display_name", "role", "hospital_id",
                                       "department_id", "disabled", "last_sign_in"],
        "properties": {"id": _id(), "username": {"type": "string", "nullable": True},
                       "display_name": {"type": "string"}, "role": _enum(Role),
                       "hospital_id": _id(), "department_id": {**_id(), "nullable": True},
                       "disabled": {"type": "boolean"}, "last_sign_in": NULLABLE_TIME}}
LINK = {"set_password_url": {"type": "string", "nullable": True,
                             "description": "/#/set-password/<token>, single use"},
        "link_expires_at": NULLABLE_TIME}
ACCOUNT_BODIES: dict[str, dict[str, Any]] = {
    "Me": ME,
    "SessionOut": {"type": "object", "required": ["user", "csrf_token"],
                   "properties": {"user": {"$ref": "#/components/schemas/Me"},
                                  "csrf_token": {"type": "string", "nullable": True}}},
    "User": USER,
    "UserList": {"type": "object", "required": ["users"],
                 "properties": {"users": {"type": "array",
                                          "items": {"$ref": "#/components/schemas/User"}}}},
    "UserCreated": {"type": "object", "required": ["id", *LINK],
                    "properties": {"id": _id(), **LINK}},
    "PasswordLink": {"type": "object", "required": list(LINK), "properties": LINK},
    "Hospitals": {"type": "object", "required": ["hospitals"], "properties": {"hospitals": {
        "type": "array", "items": {"type": "object", "required": ["id", "name", "level"],
                                   "properties": {"id": _id(), "name": {"type": "string"},
                                                  "level": {"type": "string"}}}}}},
    "Departments": {"type": "object", "required": ["departments"], "properties": {
        "departments": {"type": "array", "items": {
            "type": "object", "required": ["id", "hospital_id", "name"],
            "properties": {"id": _id(), "hospital_id": _id(), "name": {"type": "string"}}}}}},
    "Created": {"type": "object", "required": ["id"], "properties": {"id": _id()}},
    "TotpEnrolment": {"type": "object", "required": ["secret", "uri"],
                      "properties": {"secret": {"type": "string"},
                                     "uri": {"type": "string"}}},
    "ApiTokenIssued": {"type": "object", "required": ["id", "token", "expires_at"],
                       "properties": {"id": _id(), "token": {"type": "string"},
                                      "expires_at": TIME}},
    "ApiTokens": {"type": "object", "required": ["tokens"], "properties": {"tokens": {
        "type": "array", "items": {
            "type": "object",
            "required": ["id", "user_id", "label", "created_at", "expires_at", "revoked",
                         "last_used_at"],
            "properties": {"id": _id(), "user_id": _id(), "label": {"type": "string"},
                           "created_at": TIME, "expires_at": TIME,
                           "revoked": {"type": "boolean"}, "last_used_at": NULLABLE_TIME}}}}},
}
# The success body of an operation, where described: (method, path) -> schema name.
SUCCESS_BODIES: dict[tuple[str, str], str] = {
    ("post", "/api/v1/session"): "SessionOut", ("get", "/api/v1/session"): "SessionOut",
    ("get", "/api/v1/me"): "Me", ("patch", "/api/v1/me"): "Me",
    ("post", "/api/v1/me/totp"): "TotpEnrolment",
    ("get", "/api/v1/users"): "UserList", ("post", "/api/v1/users"): "UserCreated",
    ("patch", "/api/v1/users/{id}"): "User", ("post", "/api/v1/users/{id}/reset"): "PasswordLink",
    ("get", "/api/v1/hospitals"): "Hospitals", ("post", "/api/v1/hospitals"): "Created",
    ("get", "/api/v1/departments"): "Departments", ("post", "/api/v1/departments"): "Created",
    ("post", "/api/v1/api-tokens"): "ApiTokenIssued", ("get", "/api/v1/api-tokens"): "ApiTokens",
}
# Routes that need no credentials.
PUBLIC = {OPENAPI_PATH, "/api/v1/password-links/redeem"}

# (method, path, summary, request body schema name or None, success status, error statuses)
ROUTES: list[tuple[str, str, str, str | None, int, tuple[int, ...]]] = [
    ("post", "/api/v1/hospitals", "Create a hospital", "HospitalIn", 201, (400, 401, 403)),
    ("post", "/api/v1/users", "Create a user (admin; with a set-password link)", "UserIn", 201,
     (400, 401, 403, 404, 409)),
    ("get", "/api/v1/experts", "List experts", None, 200, (401,)),
    ("post", "/api/v1/consultations", "Request a consultation", "ConsultationIn", 201,
     (400, 401, 403, 404, 409)),
    ("get", "/api/v1/consultations", "List visible consultations", None, 200, (401,)),
    ("get", "/api/v1/consultations/{id}", "Read a consultation", None, 200, (401, 403, 404)),
    ("post", "/api/v1/consultations/{id}/transitions", "Move a consultation", "TransitionIn",
     200, (400, 401, 403, 404, 409)),
    ("post", "/api/v1/consultations/{id}/schedule", "Schedule a consultation", "ScheduleIn",
     200, (400, 401, 403, 404, 409)),
    ("post", "/api/v1/consultations/{id}/room-token", "Mint a live room token", None, 200,
     (401, 403, 404, 409, 503)),
    ("post", "/api/v1/consultations/{id}/materials", "Upload a material", "upload", 201,
     (400, 401, 403, 404, 409, 413, 415, 422)),
    ("get", "/api/v1/consultations/{id}/materials", "List materials", None, 200,
     (401, 403, 404)),
    ("get", "/api/v1/materials/{id}", "Download a material", None, 200, (401, 403, 404)),
    ("get", "/api/v1/materials/{id}/preview", "A material's PNG preview", None, 200,
     (401, 403, 404)),
    ("get", "/api/v1/materials/{id}/frames/{n}", "One frame of a DICOM material as PNG", None,
     200, (400, 401, 403, 404, 422)),
    ("post", "/api/v1/artefacts", "Recorder hand-off", "HandoffIn", 201,
     (400, 401, 404, 409, 503)),
    ("post", "/api/v1/consultations/{id}/reports", "Start a report draft", "DraftIn", 201,
     (400, 401, 403, 404, 409)),
    ("get", "/api/v1/consultations/{id}/reports", "List reports", None, 200, (401, 403, 404)),
    ("patch", "/api/v1/reports/{id}", "Edit a report draft", "EditIn", 200,
     (400, 401, 403, 404, 409)),
    ("post", "/api/v1/reports/{id}/publish", "Publish a report", None, 200,
     (401, 403, 404, 409)),
    ("post", "/api/v1/reports/{id}/amend", "Amend a published report", "AmendIn", 201,
     (400, 401, 403, 404, 409)),
    ("get", "/api/v1/report-templates", "List report templates", None, 200, (401,)),
    ("get", "/api/v1/statistics", "Consultation statistics", None, 200, (401, 403)),
    ("get", "/api/v1/experts/{id}/slots", "An expert's free and booked slots", None, 200,
     (400, 401, 404)),
    ("post", "/api/v1/experts/{id}/slots", "Offer a slot of an expert", "SlotIn", 201,
     (400, 401, 403, 404, 409)),
    ("delete", "/api/v1/slots/{id}", "Remove a free slot", None, 204, (401, 403, 404, 409)),
    ("post", "/api/v1/consultations/{id}/appointment", "Schedule into a slot",
     "AppointmentIn", 200, (400, 401, 403, 404, 409)),
    ("get", "/api/v1/appointments", "The calendar of booked slots", None, 200, (400, 401)),
    ("post", "/api/v1/referrals", "Send a referral", "ReferralIn", 201, (400, 401, 403)),
    ("get", "/api/v1/referrals", "Referrals sent by or to my hospital", None, 200, (400, 401)),
    ("get", "/api/v1/referrals/{id}", "Read a referral", None, 200, (401, 403, 404)),
    ("post", "/api/v1/referrals/{id}/transitions", "Move a referral", "ReferralTransitionIn",
     200, (400, 401, 403, 404, 409)),
    ("post", "/api/v1/referrals/{id}/notes", "Add a note to a referral", "NoteIn", 201,
     (400, 401, 403, 404)),
    ("get", "/api/v1/notifications", "My notifications", None, 200, (400, 401)),
    ("post", "/api/v1/notifications/{id}/read", "Mark a notification read", None, 200,
     (401, 404)),
    ("post", "/api/v1/notifications/read-all", "Mark all my notifications read", None, 200,
     (401,)),
    ("get", "/api/v1/statistics", "Consultation statistics", None, 200, (400, 401, 403)),
    ("get", "/api/v1/icd10", "Search ICD-10 codes", None, 200, (400, 401)),
    ("get", OPENAPI_PATH, "This description", None, 200, ()),
    ("get", "/api/v1/audit", "Search the audit log (admins)", None, 200, (400, 401, 403)),
    ("get", "/api/v1/audit/export", "Export the audit log as CSV (admins)", None, 200,
     (400, 401, 403)),
    ("post", "/api/v1/session", "Sign in (sets the session cookie)", "SessionIn", 200,
     (400, 401, 403, 429)),
    ("get", "/api/v1/session", "The signed-in person and the CSRF token", None, 200, (401,)),
    ("delete", "/api/v1/session", "Sign out", None, 204, (401, 403)),
    ("post", "/api/v1/session/password", "Change one's own password", "PasswordChangeIn", 204,
     (400, 401, 403, 429)),
    ("post", "/api/v1/password-links/redeem", "Set a password with a one-time link",
     "RedeemIn", 204, (400, 403, 429)),
    ("get", "/api/v1/me", "The signed-in person", None, 200, (401,)),
    ("patch", "/api/v1/me", "Choose the interface language", "LanguageIn", 200,
     (400, 401, 403)),
    ("post", "/api/v1/me/totp", "Enrol an authenticator app", None, 200, (400, 401, 403)),
    ("post", "/api/v1/me/totp/confirm", "Confirm the authenticator with a code", "CodeIn",
     204, (400, 401, 403)),
    ("post", "/api/v1/me/totp/disable", "Disable the authenticator with a code", "CodeIn",
     204, (400, 401, 403)),
    ("get", "/api/v1/users", "List users (admin)", None, 200, (400, 401, 403)),
    ("patch", "/api/v1/users/{id}", "Change a user (admin)", "UserChangeIn", 200,
     (400, 401, 403, 404)),
    ("post", "/api/v1/users/{id}/reset", "Reset a user's password (admin)", None, 200,
     (400, 401, 403, 404)),
    ("get", "/api/v1/hospitals", "List hospitals", None, 200, (401,)),
    ("get", "/api/v1/departments", "List departments", None, 200, (400, 401)),
    ("post", "/api/v1/departments", "Create a department (admin)", "DepartmentIn", 201,
     (400, 401, 403)),
    ("post", "/api/v1/api-tokens", "Issue an API token (admin)", "ApiTokenIn", 201,
     (400, 401, 403)),
    ("get", "/api/v1/api-tokens", "List API tokens", None, 200, (401,)),
    ("delete", "/api/v1/api-tokens/{id}", "Revoke an API token", None, 204, (401, 403, 404)),
    ("get", "/", "The workspace page (HTML)", None, 200, (404,)),
    ("get", "/workspace/{name}", "A workspace script, style or page file", None, 200, (404,)),
    ("get", "/i18n.js", "The message catalogue script", None, 200, (404,)),
    ("get", "/i18n/{name}", "A message catalogue file (both languages)", None, 200, (404,)),
]

# The pages and their files: public (the sign-in page must load), not JSON.
PAGE_PATHS = frozenset({"/", "/workspace/{name}", "/i18n.js", "/i18n/{name}"})
PAGE_TYPES = {"/": "text/html", "/workspace/{name}": "*/*", "/i18n.js": "text/javascript",
              "/i18n/{name}": "application/json"}



def _audit_filters(max_limit: int, default_limit: int) -> list[dict[str, Any]]:
    when = {"type": "string", "maxLength": 40,
            "description": "ISO 8601 date-time with a UTC offset, or a date (a UTC day); "
                           "from is inclusive, to exclusive (a date: the whole day included)"}
    return [
        {"name": "user_id", "in": "query", "required": False, "schema": _id()},
        {"name": "consultation_id", "in": "query", "required": False, "schema": _id(),
         "description": "entries about this consultation, its materials and reports, "
                        "list entries included"},
        {"name": "patient", "in": "query", "required": False,
         "schema": _text(audit.MAX_PATIENT_QUERY),
         "description": "patient name or record number (exact or prefix, any case) of the "
                        "consultations the entries are about"},
        {"name": "action", "in": "query", "required": False, "schema": _text(audit.MAX_ACTION)},
        {"name": "outcome", "in": "query", "required": False,
         "schema": {"type": "string", "enum": list(AUDIT_OUTCOMES)}},
        {"name": "from", "in": "query", "required": False, "schema": when},
        {"name": "to", "in": "query", "required": False, "schema": when},
        {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": max_limit,
                    "default": default_limit}},
        {"name": "before_id", "in": "query", "required": False, "schema": _id(),
         "description": "the next_before_id of the previous page"},
    ]


AUDIT_QUERY_PARAMETERS: dict[str, list[dict[str, Any]]] = {
    "/api/v1/audit": _audit_filters(audit.MAX_LIMIT, audit.DEFAULT_LIMIT),
    "/api/v1/audit/export": [
        *_audit_filters(audit.MAX_EXPORT_LIMIT, audit.DEFAULT_EXPORT_LIMIT),
        {"name": "lang", "in": "query", "required": False,
         "schema": {"type": "string", "enum": ["zh-CN", "en"]},
         "description": "the language of the heading row (default: Accept-Language)"}],
}

_NULLABLE_INT = {"type": "integer", "nullable": True}
_NULLABLE_TEXT = {"type": "string", "nullable": True}
AUDIT_ENTRY: dict[str, Any] = {
    "type": "object",
    "required": ["id", "at", "actor_id", "actor_name", "role", "hospital_id", "hospital_name",
                 "address", "action", "object_type", "object_id", "outcome", "ids"],
    "properties": {
        "id": {"type": "integer"}, "at": {"type": "string", "format": "date-time"},
        "actor_id": {"type": "integer"}, "actor_name": {"type": "string"},
        "role": _NULLABLE_TEXT, "hospital_id": _NULLABLE_INT, "hospital_name": _NULLABLE_TEXT,
        "address": _NULLABLE_TEXT, "action": {"type": "string"},
        "object_type": {"type": "string"}, "object_id": _NULLABLE_INT,
        "outcome": {"type": "string", "enum": list(AUDIT_OUTCOMES)},
        "ids": {"type": "array", "items": {"type": "integer"}, "nullable": True},
        "detail": _NULLABLE_TEXT}}

AUDIT_RESPONSE_CONTENT: dict[tuple[str, str], dict[str, Any]] = {
    ("get", "/api/v1/audit"): {"application/json": {"schema": {
        "type": "object", "required": ["entries", "next_before_id"],
        "properties": {"entries": {"type": "array", "items": AUDIT_ENTRY},
                       "next_before_id": _NULLABLE_INT}}}},
    ("get", "/api/v1/audit/export"): {"text/csv": {"schema": {
        "type": "string", "description": "UTF-8 with a byte order mark; heading row first"}}},
}

QUERY_PARAMETERS.update(AUDIT_QUERY_PARAMETERS)
RESPONSE_CONTENT.update(AUDIT_RESPONSE_CONTENT)

DESCRIPTIONS = {200: "OK", 201: "Created", 204: "No content", 400: "Invalid request",
                401: "Unauthenticated", 403: "Forbidden", 404: "Not found", 409: "Conflict",
                413: "Too large", 415: "Unsupported media type", 422: "Unprocessable",
                429: "Too many attempts (retry_after seconds; Retry-After header)",
                503: "Unavailable"}


def _operation(method: str, path: str, summary: str, body: str | None, ok: int,
               errors: tuple[int, ...]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": f"{method}_{path.removeprefix('/api/v1/').replace('/', '_')}"
                       .replace("{", "").replace("}", "").replace("-", "_")
                       .replace(".", "_"),
        "summary": summary,
        "responses": {str(ok): {"description": DESCRIPTIONS[ok]} | (
            {"content": RESPONSE_CONTENT[method, path]} if (method, path) in RESPONSE_CONTENT
            else {})} | {
            str(code): {"description": DESCRIPTIONS[code], "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            for code in errors}}
    parameters: list[dict[str, Any]] = []
    if "{id}" in path:
        parameters.append({"name": "id", "in": "path", "required": True, "schema": _id()})
    if "{name}" in path:
        parameters.append({"name": "name", "in": "path", "required": True,
                           "schema": {"type": "string", "pattern": f"^{FILE_NAME}$"}})
    if body == "upload":
        parameters.append({"name": "X-Filename", "in": "header", "required": True,
                           "description": "the file name, percent-encoded UTF-8",
                           "schema": {"type": "string", "minLength": 1,
                                      "maxLength": materials.MAX_FILENAME}})
        op["requestBody"] = {"required": True, "content": {"application/octet-stream": {
            "schema": {"type": "string", "format": "binary"}}}}
    elif body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{body}"}}}}
    for name, schema in QUERY.get(path, []) if method == "get" else []:
        parameters.append({"name": name, "in": "query", "required": False, "schema": schema})
    parameters.extend(QUERY_PARAMETERS.get(path, []))
    if (method, path) in RESPONSES:
        op["responses"][str(ok)]["content"] = {"application/json": {"schema": {
            "$ref": f"#/components/schemas/{RESPONSES[(method, path)]}"}}}
    if "{n}" in path:
        parameters.extend(FRAME_PARAMETERS)
    if parameters:
        op["parameters"] = parameters
    success = SUCCESS_BODIES.get((method, path))
    if success is not None:
        op["responses"][str(ok)]["content"] = {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{success}"}}}
    if path in PAGE_PATHS:
        op["responses"][str(ok)]["content"] = {PAGE_TYPES[path]: {"schema": {"type": "string"}}}
    if path in PUBLIC or path in PAGE_PATHS or (method, path) == ("post", "/api/v1/session"):
        op["security"] = []
    elif path == "/api/v1/artefacts":
        op["security"] = [{"recorderToken": []}]
    return op


def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route[1], {})[route[0]] = _operation(*route)
    return {
        "openapi": "3.0.3",
        "info": {"title": "huizhen consultation records API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR, "Material": MATERIAL, **REQUEST_BODIES,
                        **RESPONSE_BODIES, **ACCOUNT_BODIES},
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
