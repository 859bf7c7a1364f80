"""The consultation records schema (SQLAlchemy 2, typed declarative mapping).

Patient fields live in their own ``patient_*`` columns so they can be protected (column
encryption, masking, restricted views) without touching the rest of the record.
Enumerations are strings with CHECK constraints: portable between SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from consult_api.workflow import ConsultationType, Role, State, Urgency

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

HOSPITAL_LEVELS = ("province", "prefecture", "county")


def _one_of(column: str, values: tuple[str, ...] | list[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Hospital(Base):
    __tablename__ = "hospitals"
    __table_args__ = (CheckConstraint(_one_of("level", HOSPITAL_LEVELS), name="level"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(20))


class Department(Base):
    __tablename__ = "departments"

    id: Mapped[int] = mapped_column(primary_key=True)
    hospital_id: Mapped[int] = mapped_column(ForeignKey("hospitals.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))


LANGUAGES = ("zh-CN", "en")


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_one_of("role", [r.value for r in Role]), name="role"),
                      CheckConstraint(_one_of("language", LANGUAGES), name="language"))

    id: Mapped[int] = mapped_column(primary_key=True)
    hospital_id: Mapped[int] = mapped_column(ForeignKey("hospitals.id"), index=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    # Sign-in (consult_api.accounts). ``username`` is stored lower-cased (unique, so
    # case-insensitively unique); null until an admin gives the person one.
    username: Mapped[str | None] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa.false())
    # "zh-CN" or "en"; null: not chosen (the page follows the browser).
    language: Mapped[str | None] = mapped_column(String(8))
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    # Set when the person confirmed their authenticator with a code: only then is it asked.
    totp_enabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    password_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_sign_in_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class UserSession(Base):
    """A signed-in browser. ``id`` is the keyed hash of the cookie value, never the value."""

    __tablename__ = "user_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    address: Mapped[str] = mapped_column(String(64), default="")


class ApiToken(Base):
    """A revocable bearer token for a machine, stored only as its keyed hash."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    label: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PasswordLink(Base):
    """A one-time set-password link (new account or reset), stored as its keyed hash."""

    __tablename__ = "password_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ExpertProfile(Base):
    __tablename__ = "expert_profiles"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    specialty: Mapped[str] = mapped_column(String(200))
    availability: Mapped[str] = mapped_column(Text, default="")


class Consultation(Base):
    __tablename__ = "consultations"
    __table_args__ = (
        CheckConstraint(_one_of("urgency", [u.value for u in Urgency]), name="urgency"),
        CheckConstraint(_one_of("type", [t.value for t in ConsultationType]), name="type"),
        CheckConstraint(_one_of("state", [s.value for s in State]), name="state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    requesting_hospital_id: Mapped[int] = mapped_column(ForeignKey("hospitals.id"), index=True)
    requesting_doctor_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    expert_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    # Patient data: dedicated columns, so they can be protected separately.
    patient_name: Mapped[str] = mapped_column(String(200))
    patient_sex: Mapped[str] = mapped_column(String(10))
    patient_age: Mapped[int] = mapped_column(Integer)
    patient_record_number: Mapped[str | None] = mapped_column(String(100))
    patient_summary: Mapped[str] = mapped_column(Text)
    question: Mapped[str] = mapped_column(Text)
    urgency: Mapped[str] = mapped_column(String(20))
    type: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20), index=True)
    slot_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    slot_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    room_name: Mapped[str | None] = mapped_column(String(100), unique=True)
    # The bed's own media room the consultation is held at (its recordings in the slot's
    # window become part of this consultation's record); None: not at a bed.
    bed_room: Mapped[str | None] = mapped_column(String(100), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ConsultationTransition(Base):
    __tablename__ = "consultation_transitions"

    id: Mapped[int] = mapped_column(primary_key=True)
    consultation_id: Mapped[int] = mapped_column(ForeignKey("consultations.id"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    note: Mapped[str] = mapped_column(Text, default="")


AUDIT_OUTCOMES = ("ok", "refused", "failed")


class AuditLog(Base):
    """One row per access to patient data (a read; a list, with the ids it returned), per
    other audited action, and per refused or failed attempt (``consult_api.audit``).

    ``role``, ``hospital_id`` and ``address`` are what they were at the time (a snapshot,
    not a reference). Append-only: database triggers refuse UPDATE and DELETE (0007).
    """

    __tablename__ = "audit_log"
    __table_args__ = (CheckConstraint(_one_of("outcome", AUDIT_OUTCOMES), name="outcome"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[str | None] = mapped_column(String(20))
    hospital_id: Mapped[int | None] = mapped_column(Integer)
    address: Mapped[str | None] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(100), index=True)
    object_type: Mapped[str] = mapped_column(String(50))
    object_id: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(10), server_default="ok")
    ids: Mapped[list[int] | None] = mapped_column(JSON)
    detail: Mapped[str | None] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class AuditObject(Base):
    """Every object one audit row is about (its object and each id a list returned), so that
    rows are found by object on any database without JSON containment. Append-only too."""

    __tablename__ = "audit_objects"
    __table_args__ = (Index("ix_audit_objects_object", "object_type", "object_id"),)

    audit_id: Mapped[int] = mapped_column(ForeignKey("audit_log.id"), primary_key=True)
    object_type: Mapped[str] = mapped_column(String(50), primary_key=True)
    object_id: Mapped[int] = mapped_column(Integer, primary_key=True)


MATERIAL_KINDS = ("dicom", "jpeg", "png", "pdf")


class Material(Base):
    """An uploaded file (image, scan, report), stored by checksum under the data directory.

    ``dicom_patient_*`` hold what the DICOM header says about the patient: kept out of logs
    and out of every response."""

    __tablename__ = "materials"
    __table_args__ = (CheckConstraint(_one_of("kind", MATERIAL_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    consultation_id: Mapped[int] = mapped_column(ForeignKey("consultations.id"), index=True)
    uploader_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(10))
    filename: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    stored_path: Mapped[str] = mapped_column(String(500))
    preview_path: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    modality: Mapped[str | None] = mapped_column(String(16))
    study_date: Mapped[str | None] = mapped_column(String(8))
    study_uid: Mapped[str | None] = mapped_column(String(64))
    series_uid: Mapped[str | None] = mapped_column(String(64))
    instance_uid: Mapped[str | None] = mapped_column(String(64))
    rows: Mapped[int | None] = mapped_column(Integer)
    columns: Mapped[int | None] = mapped_column(Integer)
    dicom_patient_name: Mapped[str | None] = mapped_column(String(200))
    dicom_patient_id: Mapped[str | None] = mapped_column(String(100))
    # DICOM image facts for the viewer: frame count, transfer syntax UID, photometric
    # interpretation and the default window (modality units; none for colour images).
    frames: Mapped[int | None] = mapped_column(Integer)
    transfer_syntax: Mapped[str | None] = mapped_column(String(64))
    photometric: Mapped[str | None] = mapped_column(String(16))
    window_center: Mapped[float | None] = mapped_column(Float)
    window_width: Mapped[float | None] = mapped_column(Float)


class Artefact(Base):
    """A recording handed off by the recorder (one per manifest). Its files are stored under
    the records service's data directory at ``stored_dir/<file>`` (relative); ``files``
    holds each one's name, mime type, bytes, SHA-256 and whether the received bytes were
    verified. ``status``: receiving, attached (to the consultations of its
    ``ArtefactLink`` rows), unclaimed (no consultation owns its room: for an admin to
    attach or discard) or discarded (files deleted, the row kept for the audit trail)."""

    __tablename__ = "artefacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    consultation_id: Mapped[int | None] = mapped_column(ForeignKey("consultations.id"),
                                                        index=True)
    manifest_id: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    room: Mapped[str] = mapped_column(String(100), index=True)
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    checksums: Mapped[dict[str, str]] = mapped_column(JSON)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(20), default="attached", index=True)
    stored_dir: Mapped[str | None] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ArtefactLink(Base):
    """A recording attached to a consultation: the whole recording (no window) for the
    consultation whose live room it is, or the consultation's appointment window
    [window_start, window_end] of a bed room's recording; by the hand-off or an admin."""

    __tablename__ = "artefact_links"
    __table_args__ = (UniqueConstraint("artefact_id", "consultation_id",
                                       name="uq_artefact_links_artefact_consultation"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    artefact_id: Mapped[int] = mapped_column(ForeignKey("artefacts.id"), index=True)
    consultation_id: Mapped[int] = mapped_column(ForeignKey("consultations.id"), index=True)
    window_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    window_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attached_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    attached_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


REPORT_STATUSES = ("draft", "published")


class Icd10Code(Base):
    """One ICD-10 diagnosis code with its Chinese and English names.

    Seeded with a starter set (``consult_api/data/icd10_starter.csv``); a hospital imports
    its full edition (e.g. the national clinical edition) with
    ``huizhen records-import-icd10``. Codes are never deleted: reports refer to them."""

    __tablename__ = "icd10_codes"

    code: Mapped[str] = mapped_column(String(20), primary_key=True)
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(300), default="")
    edition: Mapped[str] = mapped_column(String(100))
    chapter: Mapped[str | None] = mapped_column(String(10))


class ReportTemplate(Base):
    """A report layout for one specialty: ``name`` (Chinese) and ``name_en``; ``sections``
    is a list of {key, title, title_en} (``title`` Chinese)."""

    __tablename__ = "report_templates"

    id: Mapped[int] = mapped_column(primary_key=True)
    specialty: Mapped[str] = mapped_column(String(200), index=True)
    name: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str | None] = mapped_column(String(200))
    sections: Mapped[list[dict[str, str]]] = mapped_column(JSON)


class Report(Base):
    """One version of the expert's report. Published versions are immutable; an amendment
    is a new version linked to the one it amends (``previous_id``) with a reason."""

    __tablename__ = "reports"
    __table_args__ = (
        CheckConstraint(_one_of("status", REPORT_STATUSES), name="status"),
        UniqueConstraint("consultation_id", "version", name="uq_reports_consultation_version"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    consultation_id: Mapped[int] = mapped_column(ForeignKey("consultations.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    template_id: Mapped[int | None] = mapped_column(ForeignKey("report_templates.id"))
    version: Mapped[int] = mapped_column(Integer)
    previous_id: Mapped[int | None] = mapped_column(ForeignKey("reports.id"))
    amendment_reason: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    sections: Mapped[dict[str, str]] = mapped_column(JSON)
    diagnosis: Mapped[str | None] = mapped_column(String(200))
    diagnosis_code: Mapped[str | None] = mapped_column(ForeignKey("icd10_codes.code"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    diagnosis_icd: Mapped[Icd10Code | None] = relationship()


class ExpertSlot(Base):
    """A time an expert is available for a live consultation (half-open: [start, end)).

    ``consultation_id`` set = booked. Slots of one expert never overlap: the check runs
    with the expert's users row locked (``appointments``/``slots``)."""

    __tablename__ = "expert_slots"
    __table_args__ = (CheckConstraint("end_at > start_at", name="span"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    expert_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    start_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    end_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    consultation_id: Mapped[int | None] = mapped_column(ForeignKey("consultations.id"),
                                                        unique=True)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


REFERRAL_DIRECTIONS = ("up", "down")
REFERRAL_STATES = ("requested", "accepted", "rejected", "cancelled", "admitted", "completed")
REFERRAL_EVENT_KINDS = ("transition", "note")


class Referral(Base):
    """A two-way referral: ``up`` (county to province) or ``down`` (back to the county,
    e.g. for rehabilitation). Patient fields in their own ``patient_*`` columns."""

    __tablename__ = "referrals"
    __table_args__ = (
        CheckConstraint(_one_of("direction", REFERRAL_DIRECTIONS), name="direction"),
        CheckConstraint(_one_of("state", REFERRAL_STATES), name="state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    consultation_id: Mapped[int | None] = mapped_column(ForeignKey("consultations.id"),
                                                        index=True)
    direction: Mapped[str] = mapped_column(String(10))
    from_hospital_id: Mapped[int] = mapped_column(ForeignKey("hospitals.id"), index=True)
    to_hospital_id: Mapped[int] = mapped_column(ForeignKey("hospitals.id"), index=True)
    to_department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # Patient data: dedicated columns, so they can be protected separately.
    patient_name: Mapped[str] = mapped_column(String(200))
    patient_sex: Mapped[str] = mapped_column(String(10))
    patient_age: Mapped[int] = mapped_column(Integer)
    patient_record_number: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(20), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ReferralEvent(Base):
    """The referral's history: state changes (``transition``) and notes (``note``)."""

    __tablename__ = "referral_events"
    __table_args__ = (CheckConstraint(_one_of("kind", REFERRAL_EVENT_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    referral_id: Mapped[int] = mapped_column(ForeignKey("referrals.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    from_state: Mapped[str | None] = mapped_column(String(20))
    to_state: Mapped[str | None] = mapped_column(String(20))
    actor_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    note: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Notification(Base):
    """Something one user should know about. ``params`` holds ids, states and codes only,
    never patient data: pages render ``notify.<kind>`` from the catalogue with them."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(50))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    consultation_id: Mapped[int | None] = mapped_column(ForeignKey("consultations.id"))
    referral_id: Mapped[int | None] = mapped_column(ForeignKey("referrals.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
