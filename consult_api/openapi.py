"""The OpenAPI 3.0 description of the API, served at ``GET /api/v1/openapi.json``.

Request schemas are derived from the constants the parsers validate against (enums, allowed
values, length limits), so a change there changes the description too. ``ROUTES`` lists every
operation; a test checks it against the app's router.
"""

from __future__ import annotations

from typing import Any

from consult_api import accounts, artefacts, materials, reports
from consult_api.models import HOSPITAL_LEVELS, LANGUAGES
from consult_api.passwords import MAX_LENGTH
from consult_api.schemas import SEXES
from consult_api.workflow import ConsultationType, Role, State, Urgency

ID_MAX = 2**31 - 1
OPENAPI_PATH = "/api/v1/openapi.json"

ERROR = {"type": "object", "required": ["error", "code"],
         "properties": {"error": {"type": "string"}, "code": {"type": "string"}}}
ANY_OBJECT: dict[str, Any] = {"type": "object"}


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
            "diagnosis": {**_text(reports.MAX_DIAGNOSIS), "nullable": True}}},
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
RESPONSE_BODIES: dict[str, dict[str, Any]] = {
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
QUERIES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "/api/v1/report-templates": [("specialty", {"type": "string"})],
    "/api/v1/users": [("hospital_id", _id()), ("role", _enum(Role)),
                      ("q", {"type": "string", "maxLength": 100})],
    "/api/v1/departments": [("hospital_id", _id())],
}

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
    ("get", OPENAPI_PATH, "This description", None, 200, ()),
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
]

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
        "responses": {str(ok): {"description": DESCRIPTIONS[ok]}} | {
            str(code): {"description": DESCRIPTIONS[code], "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            for code in errors}}
    parameters: list[dict[str, Any]] = []
    if "{id}" in path:
        parameters.append({"name": "id", "in": "path", "required": True, "schema": _id()})
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
    if method == "get":
        parameters += [{"name": name, "in": "query", "required": False, "schema": schema}
                       for name, schema in QUERIES.get(path, [])]
    if parameters:
        op["parameters"] = parameters
    success = SUCCESS_BODIES.get((method, path))
    if success is not None:
        op["responses"][str(ok)]["content"] = {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{success}"}}}
    if path in PUBLIC or (method, path) == ("post", "/api/v1/session"):
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
            "schemas": {"Error": ERROR, **REQUEST_BODIES, **RESPONSE_BODIES},
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
