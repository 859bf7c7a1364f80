"""Recordings received as bytes from the recorder (protocol: ``contracts.handoff``), and
what the workspace does with them: a consultation's recordings, the admin's unclaimed ones.

Database work only (sessions in, rows out); the files are the HTTP shell's
(``recording_routes``). A recording is one ``Artefact`` row (``files``: each declared file
with its size, SHA-256 and ``verified``) whose bytes lie under the records service's data
directory at ``received-recordings/<id>/``. At commit it is attached to the consultation
whose live room it is (whole), and to every consultation scheduled on that bed's room whose
slot overlaps it (that window); with none it stays ``unclaimed`` for an admin to attach or
discard.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from consult_api import audit, auth
from consult_api.errors import ConsultError, Forbidden, InvalidRequest, NotFound
from consult_api.models import Artefact, ArtefactLink, Consultation
from consult_api.schemas import iso
from consult_api.workflow import Actor, Role
from contracts.handoff import (
    FILES_MISSING_CODE,
    UNCLAIMED_ROOM_CODE,
    valid_file_name,
    valid_recording_id,
)

logger = logging.getLogger(__name__)

KIND = "recording"
# Not "recordings": on one machine with one data directory that is the recorder's own.
RECORDINGS_DIR = "received-recordings"
MAX_FILES = 200
TEACHING_VIDEO = "vod/teaching.mp4"
SHA256_HEX = frozenset("0123456789abcdef")


class Conflict(ConsultError):
    status = 409
    code = "recording-conflict"


@dataclass(frozen=True)
class FileIn:
    file: str
    mime_type: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class RecordingIn:
    recording: str
    room: str
    manifest: dict[str, Any]
    files: tuple[FileIn, ...]
    start: datetime | None
    end: datetime | None


def check_name(name: str) -> str:
    if not valid_file_name(name):
        raise InvalidRequest("a file name must be a relative path of plain segments "
                             "(letters, digits, _ - .), no '..', no leading '/'",
                             code="invalid-file-name")
    return name


def check_recording_id(recording: str) -> str:
    if not valid_recording_id(recording):
        raise InvalidRequest("a recording id is 1 to 100 letters, digits, _ - .",
                             code="invalid-recording-id")
    return recording


def _ms(value: Any) -> datetime | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10**14:
        return datetime.fromtimestamp(value / 1000, UTC)
    return None


def _file_in(entry: Any, max_file: int) -> FileIn:
    if not isinstance(entry, dict):
        raise InvalidRequest("files must hold objects")
    name, mime, size, digest = (entry.get(k) for k in ("file", "mime_type", "bytes", "sha256"))
    if not isinstance(name, str):
        raise InvalidRequest("files[].file must be a string")
    check_name(name)
    if not isinstance(mime, str) or not 0 < len(mime) <= 100:
        raise InvalidRequest("files[].mime_type must be a string of 1 to 100 characters")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidRequest("files[].bytes must be a non-negative integer")
    if size > max_file:
        raise InvalidRequest(f"a file may have at most {max_file} bytes", code="too-large")
    if not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= SHA256_HEX:
        raise InvalidRequest("files[].sha256 must be 64 lowercase hex digits")
    return FileIn(name, mime, size, digest)


def parse_recording(body: Any, idempotency_key: str | None, max_file: int) -> RecordingIn:
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    manifest, files = body.get("manifest"), body.get("files")
    if not isinstance(manifest, dict):
        raise InvalidRequest("the body needs a 'manifest' object")
    recording, room = manifest.get("id"), manifest.get("room")
    if not isinstance(recording, str):
        raise InvalidRequest("manifest.id must be a string")
    check_recording_id(recording)
    if not isinstance(room, str) or not 0 < len(room) <= 100:
        raise InvalidRequest("manifest.room must be a string of 1 to 100 characters")
    if body.get("recording", recording) != recording:
        raise InvalidRequest("recording must equal manifest.id")
    if idempotency_key is not None and idempotency_key != recording:
        raise InvalidRequest("the Idempotency-Key header must equal manifest.id")
    if not isinstance(files, list) or not 0 < len(files) <= MAX_FILES:
        raise InvalidRequest(f"files must be a list of 1 to {MAX_FILES} entries")
    parsed = tuple(_file_in(f, max_file) for f in files)
    if len({f.file for f in parsed}) != len(parsed):
        raise InvalidRequest("files must not name a file twice")
    return RecordingIn(recording, room, manifest, parsed, _ms(manifest.get("start_ms")),
                       _ms(manifest.get("end_ms")))


def stored_dir(recording: str) -> str:
    return f"{RECORDINGS_DIR}/{recording}"


def _find(session: Session, recording: str) -> Artefact:
    found = session.scalars(sa.select(Artefact).where(
        Artefact.manifest_id == recording)).one_or_none()
    if found is None or found.stored_dir is None or found.status == "discarded":
        raise NotFound("no such recording")
    return found


def need(a: Artefact, held: dict[str, int]) -> list[dict[str, Any]]:
    """The files still missing and the bytes of each already held (``held``: partial sizes)."""
    return [{"file": f["file"], "offset": held.get(f["file"], 0)}
            for f in a.files if not f["verified"]]


def announce(session: Session, data: RecordingIn, now: datetime) -> tuple[Artefact, bool]:
    """Create the recording's row, or add newly declared files to it (idempotent). A file
    declared again with another size or digest is a 409 ``recording-conflict``."""
    existing = session.scalars(sa.select(Artefact).where(
        Artefact.manifest_id == data.recording).with_for_update()).one_or_none()
    if existing is not None and (existing.stored_dir is None or existing.status == "discarded"):
        raise Conflict("this recording was handed off by path or discarded")
    files = {f["file"]: f for f in existing.files} if existing is not None else {}
    for f in data.files:
        known = files.get(f.file)
        if known is not None and (known["bytes"], known["sha256"]) != (f.bytes, f.sha256):
            raise Conflict(f"{f.file} was declared with another size or digest")
        if known is None:
            files[f.file] = {"file": f.file, "mime_type": f.mime_type, "bytes": f.bytes,
                             "sha256": f.sha256, "verified": False}
    ordered = list(files.values())
    if existing is None:
        existing = Artefact(
            consultation_id=None, manifest_id=data.recording, kind=KIND, room=data.room,
            files=ordered, manifest=data.manifest, received_at=now, status="receiving",
            stored_dir=stored_dir(data.recording), size=sum(f["bytes"] for f in ordered),
            verified=False, started_at=data.start, ended_at=data.end,
            checksums={f["file"]: f["sha256"] for f in ordered})
        session.add(existing)
        session.flush()
        return existing, True
    existing.files = ordered
    existing.checksums = {f["file"]: f["sha256"] for f in ordered}
    existing.size = sum(f["bytes"] for f in ordered)
    existing.verified = all(f["verified"] for f in ordered)
    return existing, False


def declared(session: Session, recording: str, name: str) -> dict[str, Any]:
    """The declared entry of ``name`` in a recording still receiving files."""
    a = _find(session, recording)
    for f in a.files:
        if f["file"] == name:
            return dict(f)
    raise NotFound("this file was not declared for this recording", code="file-not-declared")


def mark_verified(session: Session, recording: str, name: str) -> None:
    a = _find(session, recording)
    a.files = [{**f, "verified": True} if f["file"] == name else f for f in a.files]
    a.verified = all(f["verified"] for f in a.files)


def _overlap(c: Consultation, start: datetime | None, end: datetime | None
             ) -> tuple[datetime, datetime] | None:
    if c.slot_start is None or c.slot_end is None or start is None or end is None:
        return None
    lo, hi = max(_utc(c.slot_start), start), min(_utc(c.slot_end), end)
    # A recording of no length (a room opened and closed at once) counts inside the slot.
    return (lo, hi) if lo < hi or (lo == hi and start == end) else None


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _link(session: Session, a: Artefact, consultation_id: int, now: datetime,
          window: tuple[datetime, datetime] | None, by: int | None) -> None:
    found = session.scalars(sa.select(ArtefactLink).where(
        ArtefactLink.artefact_id == a.id,
        ArtefactLink.consultation_id == consultation_id)).one_or_none()
    if found is None:
        session.add(ArtefactLink(artefact_id=a.id, consultation_id=consultation_id,
                                 window_start=window and window[0],
                                 window_end=window and window[1], attached_at=now,
                                 attached_by=by))
    if a.consultation_id is None:
        a.consultation_id = consultation_id
    a.status = "attached"


def commit(session: Session, recording: str, now: datetime) -> Artefact:
    """Attach a fully verified recording (idempotent). With no consultation to attach it to,
    it stays ``unclaimed`` and this raises ``NotFound`` with ``UNCLAIMED_ROOM_CODE``."""
    a = _find(session, recording)
    if not a.verified:
        raise Conflict("some files are not received and verified yet", code=FILES_MISSING_CODE)
    if a.status == "attached":
        return a
    owner = session.scalar(sa.select(Consultation.id).where(Consultation.room_name == a.room))
    if owner is not None:
        _link(session, a, owner, now, None, None)
    for c in session.scalars(sa.select(Consultation).where(Consultation.bed_room == a.room)):
        window = _overlap(c, a.started_at and _utc(a.started_at), a.ended_at and _utc(a.ended_at))
        if window is not None:
            _link(session, a, c.id, now, window, None)
    if a.status != "attached":
        a.status = "unclaimed"
        session.flush()
        logger.info("recording %s of room %s: no consultation owns it; kept unclaimed",
                    a.manifest_id, a.room)
        # The row stays (the transaction commits): NotFound is raised by the caller.
        return a
    session.flush()
    logger.info("recording %s attached (%d files, %d bytes)", a.manifest_id, len(a.files),
                a.size)
    return a


def unclaimed_error() -> NotFound:
    return NotFound("no consultation has this live room", code=UNCLAIMED_ROOM_CODE)


# --- the workspace --------------------------------------------------------------------------

def recording_json(a: Artefact, link: ArtefactLink | None = None) -> dict[str, Any]:
    names = {f["file"]: f for f in a.files}
    teaching = names.get(TEACHING_VIDEO)
    start, end = a.started_at, a.ended_at
    return {"id": a.id, "recording": a.manifest_id, "room": a.room, "status": a.status,
            "started_at": iso(start), "ended_at": iso(end),
            "duration": (_utc(end) - _utc(start)).total_seconds() if start and end else None,
            "bytes": a.size, "verified": a.verified, "received_at": iso(a.received_at),
            "teaching_video": bool(teaching and teaching["verified"]),
            "window_start": iso(link.window_start) if link else None,
            "window_end": iso(link.window_end) if link else None,
            "files": [{"file": f["file"], "bytes": f["bytes"], "verified": f["verified"]}
                      for f in a.files]}


def for_consultation(session: Session, actor: Actor, consultation_id: int,
                     now: datetime) -> list[dict[str, Any]]:
    c = session.get(Consultation, consultation_id)
    if c is None:
        raise NotFound(f"no consultation {consultation_id}")
    auth.require_read(actor, c.requesting_hospital_id, c.expert_id)
    rows = session.execute(sa.select(Artefact, ArtefactLink).join(
        ArtefactLink, ArtefactLink.artefact_id == Artefact.id).where(
        ArtefactLink.consultation_id == consultation_id,
        Artefact.status == "attached").order_by(Artefact.started_at, Artefact.id)).all()
    audit.record(session, actor, "recording.list", "consultation", consultation_id,
                 ids=[a.id for a, _ in rows], ids_type="recording", now=now)
    return [recording_json(a, link) for a, link in rows]


def open_file(session: Session, actor: Actor, artefact_id: int, name: str,
              now: datetime, *, audited: bool) -> tuple[str, str]:
    """(stored path relative to the data dir, mime type) of a verified file, if the actor
    may read a consultation the recording is attached to (an admin: any recording)."""
    a = session.get(Artefact, artefact_id)
    if a is None or a.stored_dir is None or a.status == "discarded":
        raise NotFound("no such recording")
    if actor.role is not Role.ADMIN:
        consultations = session.scalars(sa.select(Consultation).join(
            ArtefactLink, ArtefactLink.consultation_id == Consultation.id).where(
            ArtefactLink.artefact_id == a.id))
        if not any(auth.can_read(actor, c.requesting_hospital_id, c.expert_id)
                   for c in consultations):
            raise Forbidden("you have no access to this recording")
    entry = next((f for f in a.files if f["file"] == name and f["verified"]), None)
    if entry is None:
        raise NotFound("this recording has no such file", code="file-not-received")
    if audited:
        audit.record(session, actor, "recording.open", "recording", a.id,
                     detail=name, now=now)
    return f"{a.stored_dir}/{name}", str(entry["mime_type"])


def unclaimed(session: Session, actor: Actor, now: datetime) -> list[dict[str, Any]]:
    auth.require_role(actor, Role.ADMIN)
    found = list(session.scalars(sa.select(Artefact).where(
        Artefact.status == "unclaimed").order_by(Artefact.started_at, Artefact.id)))
    audit.record(session, actor, "recording.list-unclaimed", "recording", None,
                 ids=[a.id for a in found], now=now)
    return [recording_json(a) for a in found]


def _unclaimed_row(session: Session, artefact_id: int) -> Artefact:
    a = session.get(Artefact, artefact_id)
    if a is None or a.status != "unclaimed":
        raise NotFound("no such unclaimed recording")
    return a


def attach(session: Session, actor: Actor, artefact_id: int, consultation_id: int,
           now: datetime) -> dict[str, Any]:
    auth.require_role(actor, Role.ADMIN)
    a = _unclaimed_row(session, artefact_id)
    if session.get(Consultation, consultation_id) is None:
        raise NotFound(f"no consultation {consultation_id}")
    _link(session, a, consultation_id, now, None, actor.user_id)
    session.flush()
    audit.record(session, actor, "recording.attach", "recording", a.id,
                 detail=f"consultation {consultation_id}", now=now)
    return recording_json(a)


def discard(session: Session, actor: Actor, artefact_id: int, now: datetime) -> str:
    """Mark an unclaimed recording discarded; its stored directory (for the caller to delete)."""
    auth.require_role(actor, Role.ADMIN)
    a = _unclaimed_row(session, artefact_id)
    a.status = "discarded"
    audit.record(session, actor, "recording.discard", "recording", a.id, now=now)
    assert a.stored_dir is not None
    return a.stored_dir
