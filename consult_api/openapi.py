"""The OpenAPI 3.0 description of the API, served at ``GET /api/v1/openapi.json``.

Request schemas are derived from the constants the parsers validate against (enums, allowed
values, length limits), so a change there changes the description too. ``ROUTES`` lists every
operation; a test checks it against the app's router.
"""

from __future__ import annotations

from typing import Any

from consult_api import artefacts, materials, reports
from consult_api.models import HOSPITAL_LEVELS
from consult_api.schemas import SEXES
from consult_api.web_routes import FILE_NAME
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

REQUEST_BODIES: dict[str, dict[str, Any]] = {
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
        "properties": {"hospital_id": _id(), "display_name": _text(200), "role": _enum(Role),
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

# (method, path, summary, request body schema name or None, success status, error statuses)
ROUTES: list[tuple[str, str, str, str | None, int, tuple[int, ...]]] = [
    ("post", "/api/v1/hospitals", "Create a hospital", "HospitalIn", 201, (400, 401, 403)),
    ("post", "/api/v1/users", "Create a user", "UserIn", 201, (400, 401, 403, 404, 409)),
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
    ("get", "/", "The workspace page (HTML)", None, 200, (404,)),
    ("get", "/workspace/{name}", "A workspace script, style or page file", None, 200, (404,)),
    ("get", "/i18n.js", "The message catalogue script", None, 200, (404,)),
    ("get", "/i18n/{name}", "A message catalogue file (both languages)", None, 200, (404,)),
]

# The pages and their files: public (the sign-in page must load), not JSON.
PAGE_PATHS = frozenset({"/", "/workspace/{name}", "/i18n.js", "/i18n/{name}"})
PAGE_TYPES = {"/": "text/html", "/workspace/{name}": "*/*", "/i18n.js": "text/javascript",
              "/i18n/{name}": "application/json"}

DESCRIPTIONS = {200: "OK", 201: "Created", 400: "Invalid request", 401: "Unauthenticated",
                403: "Forbidden", 404: "Not found", 409: "Conflict", 413: "Too large",
                415: "Unsupported media type", 422: "Unprocessable", 503: "Unavailable"}


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
    if path == "/api/v1/report-templates":
        parameters.append({"name": "specialty", "in": "query", "required": False,
                           "schema": {"type": "string"}})
    if parameters:
        op["parameters"] = parameters
    if path in PAGE_PATHS:
        op["security"] = []
        op["responses"][str(ok)]["content"] = {PAGE_TYPES[path]: {"schema": {"type": "string"}}}
    if path == OPENAPI_PATH:
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
            "schemas": {"Error": ERROR, **REQUEST_BODIES},
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "recorderToken": {"type": "http", "scheme": "bearer",
                                  "description": "the recorder's service secret"}}},
        "security": [{"bearerAuth": []}],
    }
