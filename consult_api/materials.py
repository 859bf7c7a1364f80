"""Uploaded materials: streamed to disk while hashed, typed from their bytes, stored by
checksum under the data directory, and recorded (with DICOM metadata) in ``materials``.

Layout under the data directory: ``uploads/`` (partial uploads), ``materials/<sha256>``
(contents, one file per distinct content), ``previews/<sha256>.png`` (DICOM previews),
``inflated/<sha256>.dcm`` (deflated DICOM, inflated once so that frames can be found in it).
A DICOM upload is parsed from the file on disk, never loaded whole (see ``dicom``).
Materials may only be added while the consultation is open (not closed, rejected, cancelled).
Logs name material and consultation ids only: never file names or DICOM patient fields.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import tempfile
from collections.abc import AsyncIterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from consult_api import audit, auth, dicom
from consult_api.errors import InvalidTransition, NotFound, TooLarge, UnsupportedType
from consult_api.filetype import HEAD_BYTES, MEDIA_TYPES, sniff
from consult_api.models import Consultation, Material
from consult_api.schemas import iso
from consult_api.workflow import Actor, State

logger = logging.getLogger(__name__)

CHUNK = 1024 * 1024
MAX_FILENAME = 255
# Consultations in these states take no more materials.
FINISHED = frozenset({State.CLOSED, State.REJECTED, State.CANCELLED})


@dataclass(frozen=True)
class Received:
    """A complete upload in a temporary file."""

    path: Path
    size: int
    sha256: str
    head: bytes


@dataclass(frozen=True)
class Stored:
    kind: str
    size: int
    sha256: str
    stored_path: str  # relative to the data directory
    preview_path: str | None
    dicom: dicom.DicomInfo | None


def too_large(limit: int) -> TooLarge:
    return TooLarge(f"the upload exceeds the limit of {limit} bytes")


def _append(handle: Any, digest: Any, chunk: bytes) -> None:
    handle.write(chunk)
    digest.update(chunk)


async def receive(chunks: AsyncIterable[bytes], data_dir: Path, limit: int) -> Received:
    """Stream ``chunks`` to a temporary file, hashing as it goes; never more than one chunk
    in memory. Over ``limit`` bytes: the partial file is removed and ``TooLarge`` raised."""
    uploads = data_dir / "uploads"
    await asyncio.to_thread(uploads.mkdir, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=uploads, suffix=".part")
    path = Path(name)
    digest = hashlib.sha256()
    size, head = 0, b""
    try:
        with os.fdopen(fd, "wb") as handle:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                if len(head) < HEAD_BYTES:
                    head += chunk[:HEAD_BYTES - len(head)]
                await asyncio.to_thread(_append, handle, digest, chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Received(path=path, size=size, sha256=digest.hexdigest(), head=head)


def inflated_path(sha256: str) -> str:
    """Where a deflated DICOM's inflated copy lives (relative to the data directory)."""
    return f"inflated/{sha256}.dcm"


def _examine_dicom(received: Received, data_dir: Path) -> tuple[dicom.DicomInfo, str]:
    """Validate a DICOM upload and write its preview; returns its metadata and the preview's
    path. Reads the header and one or two frames, never the whole pixel data."""
    syntax = dicom.transfer_syntax(received.path)
    source = received.path
    inflated: Path | None = None
    try:
        if dicom.needs_inflating(syntax):
            inflated = data_dir / inflated_path(received.sha256)
            inflated.parent.mkdir(parents=True, exist_ok=True)
            partial = inflated.with_suffix(".part")
            dicom.inflate(received.path, partial)
            os.replace(partial, inflated)
            source = inflated
        examined = dicom.examine(source)
        preview = f"previews/{received.sha256}.png"
        (data_dir / "previews").mkdir(parents=True, exist_ok=True)
        dicom.write_png(examined.preview, data_dir / preview)
    except BaseException:
        if inflated is not None:
            inflated.unlink(missing_ok=True)
        raise
    return dataclasses.replace(examined.info, transfer_syntax=syntax), preview


def store(received: Received, data_dir: Path) -> Stored:
    """Type, validate and file a received upload (synchronous: run in a worker thread).
    The temporary file is gone afterwards, whatever happens."""
    try:
        kind = sniff(received.head)
        if kind is None:
            raise UnsupportedType(
                f"only {', '.join(k.upper() for k in MEDIA_TYPES)} files are accepted")
        info, preview = None, None
        if kind == "dicom":
            info, preview = _examine_dicom(received, data_dir)
        relative = f"materials/{received.sha256}"
        (data_dir / "materials").mkdir(parents=True, exist_ok=True)
        os.replace(received.path, data_dir / relative)
        return Stored(kind=kind, size=received.size, sha256=received.sha256,
                      stored_path=relative, preview_path=preview, dicom=info)
    finally:
        received.path.unlink(missing_ok=True)


def pixel_path(m: Material, data_dir: Path) -> Path:
    """The file a DICOM material's frames are decoded from."""
    if m.transfer_syntax is not None and dicom.needs_inflating(m.transfer_syntax):
        return data_dir / inflated_path(m.sha256)
    return data_dir / m.stored_path


def discard(received: Received) -> None:
    received.path.unlink(missing_ok=True)


# --- records -----------------------------------------------------------------------------------

def _consultation(session: Session, actor: Actor, consultation_id: int, *,
                  lock: bool = False) -> Consultation:
    """The consultation, if this actor may add materials to it and it is still open.
    ``lock``: hold it (shared) until commit, so that it cannot close under the insert."""
    query = sa.select(Consultation).where(Consultation.id == consultation_id)
    if lock:
        query = query.with_for_update(read=True)
    c = session.scalars(query).one_or_none()
    if c is None:
        raise NotFound(f"no consultation {consultation_id}")
    auth.require_write(actor, c.requesting_hospital_id, c.expert_id)
    if c.state in FINISHED:
        raise InvalidTransition(
            f"materials cannot be added to a consultation that is {c.state}",
            code="consultation-closed")
    return c


def check_upload(session: Session, actor: Actor, consultation_id: int) -> None:
    """Before any byte is read: may this actor add materials to this consultation now?"""
    _consultation(session, actor, consultation_id)


def add(session: Session, actor: Actor, consultation_id: int, filename: str, stored: Stored,
        now: datetime) -> Material:
    """Record a stored upload; the consultation is checked again (it may have closed while
    the body was being received)."""
    _consultation(session, actor, consultation_id, lock=True)
    info = stored.dicom
    window = info.window if info else None
    material = Material(
        consultation_id=consultation_id, uploader_id=actor.user_id, kind=stored.kind,
        filename=filename, size=stored.size, sha256=stored.sha256,
        stored_path=stored.stored_path, preview_path=stored.preview_path, created_at=now,
        modality=info and info.modality, study_date=info and info.study_date,
        study_uid=info and info.study_uid, series_uid=info and info.series_uid,
        instance_uid=info and info.instance_uid, rows=info and info.rows,
        columns=info and info.columns, dicom_patient_name=info and info.patient_name,
        dicom_patient_id=info and info.patient_id, frames=info and info.frames,
        transfer_syntax=info and info.transfer_syntax,
        photometric=info and info.photometric,
        window_center=window and window.center, window_width=window and window.width)
    session.add(material)
    session.flush()
    logger.info("consultation %s: material %s (%s, %s bytes) uploaded by user %s",
                consultation_id, material.id, stored.kind, stored.size, actor.user_id)
    return material


def listing(session: Session, actor: Actor, consultation_id: int,
            now: datetime) -> list[Material]:
    c = session.get(Consultation, consultation_id)
    if c is None:
        raise NotFound(f"no consultation {consultation_id}")
    auth.require_read(actor, c.requesting_hospital_id, c.expert_id)
    found = list(session.scalars(sa.select(Material).where(
        Material.consultation_id == consultation_id).order_by(Material.id)))
    audit.record(session, actor, "material.list", "consultation", consultation_id,
                 ids=[m.id for m in found], ids_type="material", now=now)
    return found


def open_material(session: Session, actor: Actor, material_id: int, action: str,
                  now: datetime) -> Material:
    """The material, if this actor may read its consultation; audited as ``action``."""
    m = session.get(Material, material_id)
    if m is None:
        raise NotFound(f"no material {material_id}")
    c = session.get(Consultation, m.consultation_id)
    assert c is not None  # a foreign key
    auth.require_read(actor, c.requesting_hospital_id, c.expert_id)
    audit.record(session, actor, action, "material", m.id, now=now)
    return m


def material_json(m: Material) -> dict[str, Any]:
    """A material for responses: no DICOM patient fields, no server paths."""
    document: dict[str, Any] = {
        "id": m.id, "consultation_id": m.consultation_id, "uploader_id": m.uploader_id,
        "kind": m.kind, "media_type": MEDIA_TYPES[m.kind], "filename": m.filename,
        "size": m.size, "sha256": m.sha256, "created_at": iso(m.created_at),
        "preview": m.preview_path is not None}
    if m.kind == "dicom":
        syntax = m.transfer_syntax
        document["dicom"] = {
            "modality": m.modality, "study_date": m.study_date, "study_uid": m.study_uid,
            "series_uid": m.series_uid, "instance_uid": m.instance_uid, "rows": m.rows,
            "columns": m.columns, "frames": m.frames, "photometric": m.photometric,
            "transfer_syntax": None if syntax is None else {
                "uid": syntax, "name": dicom.syntax_name(syntax)},
            "compressed": None if syntax is None else dicom.is_compressed(syntax),
            "window": None if m.window_center is None or m.window_width is None else {
                "center": m.window_center, "width": m.window_width}}
    return document


def remove_if_unused(session: Session, stored: Stored, data_dir: Path) -> None:
    """After a failed insert: drop the stored files (contents, preview, inflated copy) unless
    another row refers to them."""
    used = session.scalar(sa.select(sa.func.count()).select_from(Material).where(
        Material.sha256 == stored.sha256))
    if not used:
        for relative in (stored.stored_path, stored.preview_path,
                         inflated_path(stored.sha256)):
            if relative is not None:
                with contextlib.suppress(OSError):
                    (data_dir / relative).unlink()
