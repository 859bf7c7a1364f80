"""The former hand-off by path (``POST /api/v1/artefacts``): a manifest and where its files
lie on the recorder's disk, attached to the consultation whose live room the manifest names.
Idempotent by manifest id. Kept for recorders not yet upgraded; the recorder now sends the
bytes (``consult_api.recordings``, protocol in ``contracts.handoff``).

Body: ``{"recording": id, "manifest": {...Manifest.to_json()...}, "artefacts":
{"transfer": "local-path", "host", "directory", "files": [{"file", "path", "mime_type",
"bytes", "sha256"}, ...]}}``; header ``Idempotency-Key: <recording id>``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from consult_api.errors import InvalidRequest, NotFound
from consult_api.models import Artefact, ArtefactLink, Consultation
from consult_api.schemas import iso
from contracts.handoff import UNCLAIMED_ROOM_CODE

logger = logging.getLogger(__name__)

KIND = "recording"
FILE_FIELDS = {"file": str, "path": str, "mime_type": str, "bytes": int, "sha256": str}


@dataclass(frozen=True)
class HandoffIn:
    manifest_id: str
    room: str
    manifest: dict[str, Any]
    files: list[dict[str, Any]]


def _file(entry: Any) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise InvalidRequest("artefacts.files must hold objects")
    for name, kind in FILE_FIELDS.items():
        value = entry.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise InvalidRequest(f"artefacts.files[].{name} must be a {kind.__name__}")
    return {name: entry[name] for name in FILE_FIELDS}


def parse_handoff(body: Any, idempotency_key: str | None) -> HandoffIn:
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    manifest, artefacts = body.get("manifest"), body.get("artefacts")
    if not isinstance(manifest, dict) or not isinstance(artefacts, dict):
        raise InvalidRequest("the body needs 'manifest' and 'artefacts' objects")
    manifest_id, room = manifest.get("id"), manifest.get("room")
    if not isinstance(manifest_id, str) or not 0 < len(manifest_id) <= 100:
        raise InvalidRequest("manifest.id must be a string of 1 to 100 characters")
    if not isinstance(room, str) or not 0 < len(room) <= 100:
        raise InvalidRequest("manifest.room must be a string of 1 to 100 characters")
    if body.get("recording", manifest_id) != manifest_id:
        raise InvalidRequest("recording must equal manifest.id")
    if idempotency_key is not None and idempotency_key != manifest_id:
        raise InvalidRequest("the Idempotency-Key header must equal manifest.id")
    files = artefacts.get("files")
    if not isinstance(files, list) or not files:
        raise InvalidRequest("artefacts.files must be a non-empty list")
    return HandoffIn(manifest_id=manifest_id, room=room, manifest=manifest,
                     files=[_file(f) for f in files])


def artefact_json(a: Artefact) -> dict[str, Any]:
    return {"id": a.id, "consultation_id": a.consultation_id, "manifest_id": a.manifest_id,
            "kind": a.kind, "room": a.room, "files": a.files, "checksums": a.checksums,
            "received_at": iso(a.received_at)}


def receive(session: Session, data: HandoffIn, now: datetime) -> tuple[Artefact, bool]:
    """(the artefact row, whether it was created now). Unknown room: ``NotFound``."""
    existing = session.scalars(sa.select(Artefact).where(
        Artefact.manifest_id == data.manifest_id)).one_or_none()
    if existing is not None:
        return existing, False
    consultation_id = session.scalar(sa.select(Consultation.id).where(
        Consultation.room_name == data.room))
    if consultation_id is None:
        raise NotFound("no consultation has this live room", code=UNCLAIMED_ROOM_CODE)
    artefact = Artefact(
        consultation_id=consultation_id, manifest_id=data.manifest_id, kind=KIND,
        room=data.room, files=data.files, manifest=data.manifest, received_at=now,
        checksums={f["file"]: f["sha256"] for f in data.files})
    session.add(artefact)
    session.flush()
    session.add(ArtefactLink(artefact_id=artefact.id, consultation_id=consultation_id,
                             attached_at=now))
    logger.info("consultation %s: recording %s attached (%d files)", consultation_id,
                data.manifest_id, len(data.files))
    return artefact, True
