"""The component schemas of the OpenAPI description: request bodies and success bodies.

Request schemas are derived from the constants the parsers validate against (enums, allowed
values, length limits), so a change there changes the description too. Response schemas
follow the ``*_json`` functions and handlers that build the bodies: every field they always
send is required, every field that may be ``null`` is nullable, times are ``date-time``.

``components()`` builds the whole table afresh on each call (nothing here is shared state).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from consult_api import accounts, artefacts, audit, icd10, materials, referrals, reports
from consult_api.models import AUDIT_OUTCOMES, HOSPITAL_LEVELS, LANGUAGES, MATERIAL_KINDS
from consult_api.passwords import MAX_LENGTH
from consult_api.referral_flow import Direction, ReferralState
from consult_api.schemas import SEXES
from consult_api.workflow import ConsultationType, Role, State, Urgency

ID_MAX = 2**31 - 1
Schema = dict[str, Any]


# --- building blocks -------------------------------------------------------------------------

def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {**schema, "nullable": True}


def enum(kind: type[Enum]) -> Schema:
    return {"type": "string", "enum": [m.value for m in kind]}


def text(max_len: int) -> Schema:
    """Non-empty text of at most ``max_len`` characters (request bodies)."""
    return {"type": "string", "minLength": 1, "maxLength": max_len}


def identifier() -> Schema:
    return {"type": "integer", "minimum": 1, "maximum": ID_MAX}


def string() -> Schema:
    return {"type": "string"}


def integer() -> Schema:
    return {"type": "integer"}


def count() -> Schema:
    return {"type": "integer", "minimum": 0}


def boolean() -> Schema:
    return {"type": "boolean"}


def time() -> Schema:
    return {"type": "string", "format": "date-time"}


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    """An object whose ``required`` properties are always sent, ``optional`` ones sometimes."""
    schema: Schema = {"type": "object", "properties": {**required, **(optional or {})}}
    if required:
        schema["required"] = list(required)
    return schema


def listing(name: str, items: Schema) -> Schema:
    """``{"<name>": [items]}``: the shape of every listing."""
    return obj({name: array(items)})


# --- request bodies --------------------------------------------------------------------------

def _password() -> Schema:
    return {"type": "string", "minLength": 1, "maxLength": MAX_LENGTH, "format": "password"}


def _patient_in() -> Schema:
    return {"type": "object", "required": ["name", "sex", "age", "summary"],
            "properties": {
                "name": text(200), "sex": {"type": "string", "enum": list(SEXES)},
                "age": {"type": "integer", "minimum": 0, "maximum": 150},
                "record_number": {"type": "string", "maxLength": 100, "nullable": True},
                "summary": text(20000)}}


def request_bodies() -> dict[str, Schema]:
    username = {"type": "string", "minLength": 2, "maxLength": 64,
                "pattern": accounts.USERNAME.pattern,
                "description": "case-insensitive (stored lower-cased); needed to sign in"}
    return {
        "SessionIn": {
            "type": "object", "required": ["username", "password"],
            "properties": {"username": {"type": "string", "minLength": 1, "maxLength": 64},
                           "password": _password(),
                           "totp": {"type": "string", "maxLength": 16,
                                    "description": "the authenticator code, when enabled"}}},
        "PasswordChangeIn": {
            "type": "object", "required": ["current_password", "new_password"],
            "properties": {"current_password": _password(), "new_password": _password()}},
        "RedeemIn": {
            "type": "object", "required": ["token", "password"],
            "properties": {"token": {"type": "string", "minLength": 1, "maxLength": 512},
                           "password": _password()}},
        "LanguageIn": {"type": "object", "required": ["language"],
                       "properties": {"language": {"type": "string", "enum": list(LANGUAGES)}}},
        "CodeIn": {"type": "object", "required": ["code"],
                   "properties": {"code": {"type": "string", "minLength": 1, "maxLength": 16}}},
        "UserChangeIn": {
            "type": "object", "minProperties": 1,
            "properties": {"display_name": text(200), "role": enum(Role),
                           "hospital_id": identifier(),
                           "department_id": nullable(identifier()),
                           "disabled": boolean()}},
        "DepartmentIn": {"type": "object", "required": ["hospital_id", "name"],
                         "properties": {"hospital_id": identifier(), "name": text(200)}},
        "ApiTokenIn": {
            "type": "object", "required": ["user_id", "label", "ttl"],
            "properties": {"user_id": identifier(), "label": text(200),
                           "ttl": {"type": "integer", "minimum": accounts.API_TOKEN_MIN_TTL,
                                   "maximum": accounts.API_TOKEN_MAX_TTL,
                                   "description": "lifetime in seconds"}}},
        "ConsultationIn": {
            "type": "object", "required": ["patient", "question", "urgency", "type"],
            "properties": {"patient": _patient_in(), "question": text(20000),
                           "urgency": enum(Urgency), "type": enum(ConsultationType),
                           "expert_id": nullable(identifier())}},
        "TransitionIn": {
            "type": "object", "required": ["to"],
            "properties": {"to": enum(State), "note": {"type": "string", "maxLength": 5000}}},
        "ScheduleIn": {
            "type": "object", "required": ["start", "end", "expert_id"],
            "properties": {"start": time(), "end": time(), "expert_id": identifier(),
                           "bed_room": {"type": "string", "maxLength": 100,
                                        "pattern": "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$",
                                        "description": "the bed's media room it is held at: "
                                                       "its recordings in the slot attach"}}},
        "HospitalIn": {
            "type": "object", "required": ["name", "level"],
            "properties": {"name": text(200),
                           "level": {"type": "string", "enum": list(HOSPITAL_LEVELS)}}},
        "UserIn": {
            "type": "object", "required": ["hospital_id", "display_name", "role"],
            "properties": {"username": username,
                           "hospital_id": identifier(), "display_name": text(200),
                           "role": enum(Role), "department_id": nullable(identifier()),
                           "specialty": {"type": "string", "maxLength": 200, "nullable": True},
                           "availability": {"type": "string", "maxLength": 2000}}},
        "DraftIn": {"type": "object",
                    "properties": {"template_id": nullable(identifier())}},
        "EditIn": {
            "type": "object",
            "properties": {
                "sections": {"type": "object", "maxProperties": reports.MAX_SECTIONS,
                             "additionalProperties": {"type": "string",
                                                      "maxLength": reports.MAX_SECTION}},
                "diagnosis": nullable(text(reports.MAX_DIAGNOSIS)),
                "diagnosis_code": {**text(icd10.MAX_CODE), "nullable": True,
                                   "description": "an ICD-10 code of the code table "
                                                  "(unknown: 400 unknown-icd10-code)"}}},
        "AmendIn": {"type": "object", "required": ["reason"],
                    "properties": {"reason": text(reports.MAX_REASON)}},
        "HandoffIn": {
            "type": "object", "required": ["manifest", "artefacts"],
            "properties": {
                "recording": string(),
                "manifest": {"type": "object", "required": ["id", "room"],
                             "properties": {"id": text(100), "room": text(100)}},
                "artefacts": {"type": "object", "required": ["files"], "properties": {"files": {
                    "type": "array", "minItems": 1, "items": {
                        "type": "object", "required": list(artefacts.FILE_FIELDS),
                        "properties": {name: integer() if kind is int else string()
                                       for name, kind in artefacts.FILE_FIELDS.items()}}}}}}},
        "RecordingIn": {
            "type": "object", "required": ["manifest", "files"],
            "properties": {
                "recording": string(),
                "manifest": {"type": "object", "required": ["id", "room"],
                             "properties": {"id": text(100), "room": text(100),
                                            "start_ms": integer(), "end_ms": integer()}},
                "files": {"type": "array", "minItems": 1, "maxItems": 200, "items": {
                    "type": "object", "required": ["file", "mime_type", "bytes", "sha256"],
                    "properties": {"file": text(200), "mime_type": text(100),
                                   "bytes": {"type": "integer", "minimum": 0},
                                   "sha256": {"type": "string",
                                              "pattern": "^[0-9a-f]{64}$"}}}}}},
        "RecordingAttachIn": {"type": "object", "required": ["consultation_id"],
                              "properties": {"consultation_id": identifier()}},
        "SlotIn": {"type": "object", "required": ["start", "end"],
                   "properties": {"start": time(), "end": time()}},
        "AppointmentIn": {"type": "object", "required": ["slot_id"],
                          "properties": {"slot_id": identifier()}},
        "ReferralIn": {
            "type": "object",
            "required": ["direction", "to_hospital_id", "reason", "patient"],
            "properties": {
                "direction": enum(Direction), "to_hospital_id": identifier(),
                "to_department_id": nullable(identifier()),
                "consultation_id": nullable(identifier()),
                "reason": text(referrals.MAX_REASON),
                "patient": {"type": "object", "required": ["name", "sex", "age"],
                            "properties": {
                                "name": text(200), "sex": {"type": "string", "enum": list(SEXES)},
                                "age": {"type": "integer", "minimum": 0, "maximum": 150},
                                "record_number": {"type": "string", "maxLength": 100,
                                                  "nullable": True}}}}},
        "ReferralTransitionIn": {
            "type": "object", "required": ["to"],
            "properties": {"to": enum(ReferralState),
                           "note": {"type": "string", "maxLength": referrals.MAX_NOTE}}},
        "NoteIn": {"type": "object", "required": ["text"],
                   "properties": {"text": text(referrals.MAX_NOTE)}},
    }


# --- success bodies --------------------------------------------------------------------------

def _consultation() -> Schema:
    """``schemas.consultation_summary``: the record without patient data."""
    return obj({
        "id": integer(), "requesting_hospital_id": integer(), "requesting_doctor_id": integer(),
        "expert_id": nullable(integer()), "question": string(), "urgency": enum(Urgency),
        "type": enum(ConsultationType), "state": enum(State),
        "slot": nullable(obj({"start": time(), "end": time()})),
        "room": nullable(string()), "created_at": time(), "updated_at": time()})


def _consultation_detail() -> Schema:
    summary = _consultation()
    extra = {
        "patient": obj({"name": string(), "sex": {"type": "string", "enum": list(SEXES)},
                        "age": integer(), "record_number": nullable(string()),
                        "summary": string()}),
        "transitions": array(obj({"from": nullable(enum(State)), "to": enum(State),
                                  "actor_id": integer(), "at": time(),
                                  "note": nullable(string())}))}
    return {**summary, "required": [*summary["required"], *extra],
            "properties": {**summary["properties"], **extra}}


def _material() -> Schema:
    """``materials.material_json``; ``dicom`` only for DICOM files (no patient fields)."""
    nullable_text, nullable_int = nullable(string()), nullable(integer())
    dicom = obj({
        "modality": nullable_text, "study_date": nullable_text, "study_uid": nullable_text,
        "series_uid": nullable_text, "instance_uid": nullable_text, "rows": nullable_int,
        "columns": nullable_int, "frames": nullable_int, "photometric": nullable_text,
        "transfer_syntax": nullable(obj({"uid": string(), "name": string()})),
        "compressed": nullable(boolean()),
        "window": {**nullable(obj({"center": {"type": "number"},
                                   "width": {"type": "number"}})),
                   "description": "default window in modality units (e.g. HU)"}})
    return obj({
        "id": integer(), "consultation_id": integer(), "uploader_id": integer(),
        "kind": {"type": "string", "enum": list(MATERIAL_KINDS)},
        "media_type": string(), "filename": string(), "size": count(), "sha256": string(),
        "created_at": time(), "preview": boolean()}, {"dicom": dicom})


def _recording() -> Schema:
    return obj({"id": integer(), "recording": string(), "room": string(), "status": string(),
                "started_at": nullable(time()), "ended_at": nullable(time()),
                "duration": nullable({"type": "number"}), "bytes": integer(),
                "verified": boolean(), "received_at": time(), "teaching_video": boolean(),
                "window_start": nullable(time()), "window_end": nullable(time()),
                "files": array(obj({"file": string(), "bytes": integer(),
                                    "verified": boolean()}))})


def _report() -> Schema:
    """``reports.report_json``."""
    return obj({
        "id": integer(), "consultation_id": integer(), "author_id": integer(),
        "template_id": nullable(integer()), "version": {"type": "integer", "minimum": 1},
        "previous_id": nullable(integer()), "amendment_reason": nullable(string()),
        "status": {"type": "string", "enum": ["draft", "published"]},
        "sections": {"type": "object", "additionalProperties": string()},
        "diagnosis": nullable(string()), "diagnosis_code": nullable(string()),
        "diagnosis_name_zh": nullable(string()), "diagnosis_name_en": nullable(string()),
        "created_at": time(), "updated_at": time(), "published_at": nullable(time())})


def _referral() -> Schema:
    """``referrals.referral_summary``: without patient data; ``allowed``: this actor's moves."""
    return obj({
        "id": integer(), "direction": enum(Direction), "state": enum(ReferralState),
        "from_hospital_id": integer(), "from_hospital": nullable(string()),
        "to_hospital_id": integer(), "to_hospital": nullable(string()),
        "to_department_id": nullable(integer()), "consultation_id": nullable(integer()),
        "reason": string(), "created_by": integer(), "created_at": time(),
        "updated_at": time(), "allowed": array(enum(ReferralState))})


def _referral_event() -> Schema:
    return obj({"id": integer(), "kind": {"type": "string", "enum": ["transition", "note"]},
                "from": nullable(enum(ReferralState)), "to": nullable(enum(ReferralState)),
                "actor_id": integer(), "note": nullable(string()), "at": time()})


def _referral_detail() -> Schema:
    summary = _referral()
    extra = {"patient": obj({"name": string(), "sex": {"type": "string", "enum": list(SEXES)},
                             "age": integer(), "record_number": nullable(string())}),
             "events": array(ref("ReferralEvent"))}
    return {**summary, "required": [*summary["required"], *extra],
            "properties": {**summary["properties"], **extra}}


def _notification() -> Schema:
    return obj({"id": integer(), "kind": string(), "params": {"type": "object"},
                "consultation_id": nullable(integer()), "referral_id": nullable(integer()),
                "created_at": time(), "read": boolean()})


def _slot() -> Schema:
    """``appointments.slot_json``: the consultation only for those who may read it."""
    return obj({"id": integer(), "expert_id": integer(), "start": time(), "end": time(),
                "status": {"type": "string", "enum": ["free", "booked"]},
                "consultation_id": nullable(integer())})


def _appointment() -> Schema:
    """An entry of ``appointments.calendar``: id and patient only for those who may read."""
    return obj({
        "slot_id": integer(), "expert_id": integer(), "start": time(), "end": time(),
        "consultation_id": nullable(integer()), "state": enum(State),
        "urgency": enum(Urgency), "type": enum(ConsultationType),
        "requesting_hospital_id": integer(), "requesting_hospital": string(),
        "patient": nullable(obj({"name": string(),
                                 "sex": {"type": "string", "enum": list(SEXES)},
                                 "age": integer()}))})


def _turnaround() -> Schema:
    hours = nullable({"type": "number"})
    summary = obj({"count": count(), "median_hours": hours, "p90_hours": hours})
    return obj({"request_to_scheduled": summary, "request_to_reported": summary})


def _named_counts(id_field: str) -> Schema:
    return array(obj({id_field: integer(), "name": nullable(string()), "count": count()}))


def _statistics() -> Schema:
    """``statistics.statistics``."""
    counts = {"type": "object", "additionalProperties": count()}
    date = nullable({"type": "string", "format": "date"})
    return obj({
        "total": count(), "period": obj({"from": date, "to": date}),
        "by_state": obj({s.value: count() for s in State}),
        "by_hospital": _named_counts("hospital_id"),
        "by_requesting_doctor": _named_counts("user_id"),
        "by_expert": _named_counts("user_id"),
        "by_diagnosis": array(obj({"code": nullable(string()), "name_zh": nullable(string()),
                                   "name_en": nullable(string()),
                                   "diagnosis": nullable(string()), "count": count()})),
        "by_month": array(obj({"month": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"},
                               "requested": count(), "reported": count(),
                               "turnaround": _turnaround()})),
        "turnaround": _turnaround(),
        "reports_published": count(), "amendments_published": count()},
        {"per_requesting_doctor": counts, "per_expert": counts,
         "per_requesting_hospital": counts, "per_diagnosis": counts, "per_month": counts})


def _audit_entry() -> Schema:
    """An entry of ``audit.search``."""
    return obj({
        "id": integer(), "at": time(), "actor_id": integer(), "actor_name": string(),
        "role": nullable(string()), "hospital_id": nullable(integer()),
        "hospital_name": nullable(string()), "address": nullable(string()),
        "action": string(), "object_type": string(), "object_id": nullable(integer()),
        "outcome": {"type": "string", "enum": list(AUDIT_OUTCOMES)},
        "ids": nullable(array(integer())), "detail": nullable(string())})


def _me() -> Schema:
    """``accounts.me_json``: the signed-in person."""
    return obj({"id": integer(), "username": nullable(string()), "display_name": string(),
                "role": enum(Role), "hospital_id": integer(),
                "hospital_name": nullable(string()), "department_id": nullable(integer()),
                "language": nullable({"type": "string", "enum": list(LANGUAGES)}),
                "totp_enabled": boolean()})


def _user() -> Schema:
    """``directory.user_json``."""
    return obj({"id": integer(), "username": nullable(string()), "display_name": string(),
                "role": enum(Role), "hospital_id": integer(),
                "department_id": nullable(integer()), "disabled": boolean(),
                "last_sign_in": nullable(time())})


def _link() -> dict[str, Schema]:
    return {"set_password_url": {**nullable(string()),
                                 "description": "/#/set-password/<token>, single use"},
            "link_expires_at": nullable(time())}


def response_bodies() -> dict[str, Schema]:
    return {
        "Error": obj({"error": string(), "code": string()},
                     {"retry_after": {**count(), "description": "seconds (429 only)"}}),
        "Created": obj({"id": integer()}),
        "ConsultationCreated": obj({"id": integer(),
                                    "state": {"type": "string", "enum": [State.REQUESTED.value]}}),
        "Consultation": _consultation(),
        "ConsultationDetail": _consultation_detail(),
        "Consultations": obj({"consultations": array(ref("Consultation")),
                              "next_before_id": nullable(integer())}),
        "Experts": listing("experts", obj({
            "id": integer(), "display_name": string(), "hospital_id": integer(),
            "hospital": string(), "hospital_level": string(),
            "specialty": nullable(string()), "availability": nullable(string()),
            "department_id": nullable(integer()), "department": nullable(string())})),
        "RoomToken": obj({
            "room": string(), "role": string(), "token": string(),
            "expires_at": {"type": "integer", "description": "Unix time, seconds"},
            "page_url": {"type": "string",
                         "description": "the media server's page for this role (empty when "
                                        "the server has no media URL)"}}),
        "Material": _material(),
        "Materials": listing("materials", ref("Material")),
        "Artefact": obj({
            "id": integer(), "consultation_id": integer(), "manifest_id": string(),
            "kind": string(), "room": string(),
            "files": array(obj({name: integer() if kind is int else string()
                                for name, kind in artefacts.FILE_FIELDS.items()})),
            "checksums": {"type": "object", "additionalProperties": string()},
            "received_at": time()}),
        "RecordingNeed": obj({"recording": string(), "status": string(),
                              "need": array(obj({"file": string(), "offset": integer()}))}),
        "RecordingFileState": obj({"file": string(), "offset": integer(),
                                   "verified": boolean()}),
        "Recording": _recording(),
        "Recordings": listing("recordings", ref("Recording")),
        "Report": _report(),
        "Reports": listing("reports", ref("Report")),
        "ReportTemplates": listing("templates", obj({
            "id": integer(), "specialty": string(), "name": string(), "name_en": string(),
            "sections": array(obj({"key": string(), "title": string(),
                                   "title_en": string()}))})),
        "Statistics": _statistics(),
        "Slot": _slot(),
        "Slots": listing("slots", ref("Slot")),
        "Appointments": listing("appointments", _appointment()),
        "Referral": _referral(),
        "ReferralDetail": _referral_detail(),
        "ReferralEvent": _referral_event(),
        "Referrals": listing("referrals", ref("Referral")),
        "Notification": _notification(),
        "Notifications": obj({"notifications": array(ref("Notification")),
                              "unread": count()}),
        "NotificationsMarked": obj({"marked": count(), "unread": count()}),
        "Icd10Codes": obj({"codes": {**array(obj({"code": string(), "name_zh": string(),
                                                  "name_en": string()})),
                                     "maxItems": icd10.MAX_LIMIT}}),
        "AuditEntries": obj({"entries": array(_audit_entry()),
                             "next_before_id": nullable(integer())}),
        "Me": _me(),
        "SessionOut": obj({"user": ref("Me"), "csrf_token": {
            **nullable(string()), "description": "null when asked with an API token"}}),
        "User": _user(),
        "Users": listing("users", ref("User")),
        "UserCreated": obj({"id": integer(), **_link()}),
        "PasswordLink": obj(_link()),
        "Hospitals": listing("hospitals", obj({"id": integer(), "name": string(),
                                               "level": {"type": "string",
                                                         "enum": list(HOSPITAL_LEVELS)}})),
        "Departments": listing("departments", obj({"id": integer(), "hospital_id": integer(),
                                                   "name": string()})),
        "TotpEnrolment": obj({"secret": string(), "uri": string()}),
        "ApiTokenIssued": obj({"id": integer(), "token": string(), "expires_at": time()}),
        "ApiTokens": listing("tokens", obj({
            "id": integer(), "user_id": integer(), "label": string(), "created_at": time(),
            "expires_at": time(), "revoked": boolean(), "last_used_at": nullable(time())})),
        "CatalogueFile": {"oneOf": [
            {**obj({"areas": array(string())}), "additionalProperties": False,
             "description": "index.json: the areas, in load order"},
            {"type": "object", "description": "an area's messages, by key",
             "additionalProperties": obj({"zh-CN": string(), "en": string()})}]},
        "OpenApi": obj({"openapi": string(), "info": {"type": "object"},
                        "paths": {"type": "object"}, "components": {"type": "object"}}),
    }


def components() -> dict[str, Schema]:
    """Every component schema, by name (request bodies end in ``In``)."""
    return {**request_bodies(), **response_bodies()}


def audit_filters(export: bool) -> list[Schema]:
    """The query parameters of the audit search and its CSV export."""
    max_limit = audit.MAX_EXPORT_LIMIT if export else audit.MAX_LIMIT
    default_limit = audit.DEFAULT_EXPORT_LIMIT if export else audit.DEFAULT_LIMIT
    when = {"type": "string", "maxLength": 40,
            "description": "ISO 8601 date-time with a UTC offset, or a date (a UTC day); "
                           "from is inclusive, to exclusive (a date: the whole day included)"}
    return [
        query("user_id", identifier()),
        query("consultation_id", identifier(),
              "entries about this consultation, its materials and reports, list entries "
              "included"),
        query("patient", text(audit.MAX_PATIENT_QUERY),
              "patient name or record number (exact or prefix, any case) of the "
              "consultations the entries are about"),
        query("action", text(audit.MAX_ACTION)),
        query("outcome", {"type": "string", "enum": list(AUDIT_OUTCOMES)}),
        query("from", when), query("to", when),
        query("limit", {"type": "integer", "minimum": 1, "maximum": max_limit,
                        "default": default_limit}),
        query("before_id", identifier(), "the next_before_id of the previous page"),
        *([query("lang", {"type": "string", "enum": ["zh-CN", "en"]},
                 "the language of the heading row (default: Accept-Language)")]
          if export else [])]


def query(name: str, schema: Schema, description: str | None = None) -> Schema:
    """An optional query parameter."""
    parameter: Schema = {"name": name, "in": "query", "required": False, "schema": schema}
    if description is not None:
        parameter["description"] = description
    return parameter


def upload_name() -> Schema:
    return {"name": "X-Filename", "in": "header", "required": True,
            "description": "the file name, percent-encoded UTF-8",
            "schema": {"type": "string", "minLength": 1, "maxLength": materials.MAX_FILENAME}}
