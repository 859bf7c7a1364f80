"""Materials and recorder artefacts over real HTTP, on SQLite AND PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pydicom
import pytest
import sqlalchemy as sa
from pydicom.data import get_testdata_file

from consult_api import records
from consult_api.app import create_app
from consult_api.db import make_engine, make_sessionmaker
from consult_api.models import Artefact, AuditLog, Material
from recorder.handoff import handoff_body
from recorder.manifest import FileEntry, Manifest, TrackEntry, file_digest
from tests.test_consult_api import MEDIA_TOKENS, REQUEST, SECRET, Clock, DbTokens, World, seed

LIMIT = 1024 * 1024
RECORDER_TOKEN = "recorder-service-token-" + "r" * 20
CT_SMALL = Path(str(get_testdata_file("CT_small.dcm")))


@dataclass
class Site(World):
    data_dir: Path


@pytest.fixture
async def site(migrated: str, aiohttp_client: Any, tmp_path: Path) -> AsyncIterator[Site]:
    engine = make_engine(migrated)
    try:
        people = records.run_in_session(make_sessionmaker(engine), seed)
    finally:
        engine.dispose()
    data_dir = tmp_path / "files"
    client = await aiohttp_client(create_app(
        migrated, SECRET, clock=Clock(), room_tokens=MEDIA_TOKENS, data_dir=data_dir,
        max_upload=LIMIT, recorder_token=RECORDER_TOKEN))
    yield Site(client=client, url=migrated, people=people, tokens=DbTokens(migrated),
               data_dir=data_dir)


async def consultation(site: Site, **extra: Any) -> int:
    response = await site.client.post("/api/v1/consultations", json={**REQUEST, **extra},
                                      headers=site.auth("doctor"))
    assert response.status == 201
    return int((await response.json())["id"])


async def upload(site: Site, cid: int, body: Any, filename: str = "scan.bin",
                 who: str = "doctor", status: int = 201) -> dict[str, Any]:
    response = await site.client.post(
        f"/api/v1/consultations/{cid}/materials", data=body,
        headers={**site.auth(who), "X-Filename": filename})
    result: dict[str, Any] = await response.json()
    assert response.status == status, result
    return result


def image(ext: str) -> bytes:
    pixels = np.zeros((12, 16, 3), dtype=np.uint8)
    pixels[:, :8] = (0, 128, 255)
    ok, encoded = cv2.imencode(ext, pixels)
    assert ok
    return encoded.tobytes()


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def stored_files(site: Site) -> list[Path]:
    return sorted(p for p in site.data_dir.rglob("*") if p.is_file())


def count(site: Site, model: type[Any]) -> int:
    return int(site.query(lambda s: s.scalar(sa.select(sa.func.count()).select_from(model))))


async def test_dicom_upload_extracts_metadata_and_renders_a_preview(site: Site) -> None:
    cid = await consultation(site)
    raw = CT_SMALL.read_bytes()
    result = await upload(site, cid, raw, filename="ct.dcm")
    dataset = pydicom.dcmread(CT_SMALL)
    assert result["kind"] == "dicom" and result["size"] == len(raw)
    assert result["sha256"] == hashlib.sha256(raw).hexdigest()
    assert result["dicom"] == {
        "modality": "CT", "study_date": str(dataset.StudyDate),
        "study_uid": str(dataset.StudyInstanceUID),
        "series_uid": str(dataset.SeriesInstanceUID),
        "instance_uid": str(dataset.SOPInstanceUID), "rows": 128, "columns": 128,
        "frames": 1, "photometric": "MONOCHROME2", "compressed": False,
        "transfer_syntax": {"uid": "1.2.840.10008.1.2.1", "name": "Explicit VR Little Endian"},
        # CT_small.dcm has no window in its header: the first frame's range, in HU
        "window": {"center": float(dataset.pixel_array.min() + dataset.pixel_array.max()) / 2
                   + float(dataset.RescaleIntercept),
                   "width": float(dataset.pixel_array.max() - dataset.pixel_array.min())}}
    assert str(dataset.PatientName) not in json.dumps(result)
    assert str(dataset.PatientID) not in json.dumps(result)

    response = await site.client.get(f"/api/v1/materials/{result['id']}/preview",
                                     headers=site.auth("doctor"))
    assert response.status == 200 and response.content_type == "image/png"
    png = cv2.imdecode(np.frombuffer(await response.read(), np.uint8), cv2.IMREAD_UNCHANGED)
    assert png is not None
    assert png.shape[:2] == (dataset.Rows, dataset.Columns)
    assert png.dtype == np.uint8 and int(png.max()) > int(png.min())

    response = await site.client.get(f"/api/v1/materials/{result['id']}",
                                     headers=site.auth("doctor"))
    assert response.status == 200 and await response.read() == raw
    assert response.content_type == "application/dicom"
    audited = site.query(lambda s: [a.action for a in s.scalars(sa.select(AuditLog).where(
        AuditLog.object_type == "material"))])
    assert audited == ["material.preview", "material.download"]


@pytest.mark.parametrize(("body", "name", "kind"), [
    (image(".jpg"), "photo.png", "jpeg"), (image(".png"), "xray.jpg", "png"),
    (PDF, "report.dcm", "pdf")])
async def test_types_come_from_the_bytes_not_the_name(site: Site, body: bytes, name: str,
                                                      kind: str) -> None:
    cid = await consultation(site)
    result = await upload(site, cid, body, filename=name)
    assert (result["kind"], result["filename"], "dicom" in result) == (kind, name, False)
    response = await site.client.get(f"/api/v1/consultations/{cid}/materials",
                                     headers=site.auth("coordinator"))
    assert [m["id"] for m in (await response.json())["materials"]] == [result["id"]]
    assert (site.data_dir / "materials" / hashlib.sha256(body).hexdigest()).read_bytes() == body


@pytest.mark.parametrize(("body", "name"), [
    (b"MZ\x90\x00\x03\x00\x00\x00" + bytes(200), "scan.jpg"),
    (b"Patient notes, plain text\n" * 10, "report.pdf")])
async def test_other_types_are_refused(site: Site, body: bytes, name: str) -> None:
    cid = await consultation(site)
    result = await upload(site, cid, body, filename=name, status=415)
    assert "accepted" in result["error"]
    assert stored_files(site) == [] and count(site, Material) == 0


async def test_oversize_uploads_are_refused_and_nothing_is_kept(site: Site) -> None:
    cid = await consultation(site)
    result = await upload(site, cid, PDF + bytes(LIMIT), status=413)
    assert str(LIMIT) in result["error"]

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: caught while streaming
        yield PDF
        for _ in range(LIMIT // 65536 + 1):
            yield bytes(65536)

    result = await upload(site, cid, chunked(), status=413)
    assert str(LIMIT) in result["error"]
    assert stored_files(site) == [] and count(site, Material) == 0


async def test_corrupt_dicom_is_refused(site: Site) -> None:
    cid = await consultation(site)
    body = bytes(128) + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff" + b"garbage" * 8
    result = await upload(site, cid, body, status=422)
    assert "DICOM" in result["error"]
    truncated = CT_SMALL.read_bytes()[:2000]
    await upload(site, cid, truncated, status=422)
    assert stored_files(site) == [] and count(site, Material) == 0


async def test_only_the_parties_may_upload_and_read(site: Site) -> None:
    cid = await consultation(site, expert_id=site.people["expert"].user_id)
    await upload(site, cid, PDF, who="stranger", status=403)
    await upload(site, cid, PDF, who="other_expert", status=403)
    assert stored_files(site) == []
    mine = await upload(site, cid, PDF, who="expert")
    await upload(site, cid, image(".png"), who="colleague")
    await upload(site, cid, image(".jpg"), who="admin")
    for who in ("stranger", "other_expert"):
        for path in (f"/api/v1/materials/{mine['id']}",
                     f"/api/v1/consultations/{cid}/materials"):
            response = await site.client.get(path, headers=site.auth(who))
            assert response.status == 403
    response = await site.client.get(f"/api/v1/materials/{mine['id']}/preview",
                                     headers=site.auth("doctor"))
    assert response.status == 404
    response = await site.client.get("/api/v1/materials/999999", headers=site.auth("admin"))
    assert response.status == 404
    await upload(site, 999999, PDF, status=404)
    response = await site.client.post(f"/api/v1/consultations/{cid}/materials", data=PDF,
                                      headers=site.auth("doctor"))
    assert response.status == 400  # no X-Filename


# --- recorder artefacts ------------------------------------------------------------------------

def recording(directory: Path, room: str, recording_id: str = "rec-0001") -> bytes:
    (directory / "tracks").mkdir(parents=True)
    track_file = directory / "tracks" / "s-1-0.webm"
    track_file.write_bytes(b"\x1a\x45\xdf\xa3" + bytes(100))
    (directory / "timeline.msgpack").write_bytes(b"\x90")
    size, digest = file_digest(track_file)
    timeline_size, timeline_digest = file_digest(directory / "timeline.msgpack")
    track = TrackEntry(
        id="s-1-0", stream="s-1", participant="p-1", role="expert", kind="video",
        codec="VP8", container="webm", mime_type="video/webm", file="tracks/s-1-0.webm",
        duration=1.0, bytes=size, sha256=digest, start_ms=1000, end_ms=2000,
        clock="arrival", frames=30)
    manifest = Manifest(
        id=recording_id, room=room, status="complete", reason="room-closed",
        started_at="2026-03-03T01:00:00.000Z", ended_at="2026-03-03T01:00:01.000Z",
        start_ms=1000, end_ms=2000, tracks=[track],
        timeline=FileEntry(file="timeline.msgpack", bytes=timeline_size,
                           sha256=timeline_digest, events=0))
    manifest.write(directory)
    return legacy_body(directory, handoff_body(directory, manifest))


def legacy_body(directory: Path, announcement: bytes) -> bytes:
    """The former hand-off by path (``POST /api/v1/artefacts``) of a recorder announcement."""
    document = json.loads(announcement)
    files = [{**f, "path": str(directory / f["file"])} for f in document["files"]]
    return json.dumps({"recording": document["recording"], "manifest": document["manifest"],
                       "artefacts": {"transfer": "local-path", "files": files}}).encode()


async def hand_off(site: Site, body: bytes, key: str = "rec-0001",
                   token: str = RECORDER_TOKEN) -> tuple[int, dict[str, Any]]:
    response = await site.client.post("/api/v1/artefacts", data=body, headers={
        "Content-Type": "application/json", "Idempotency-Key": key,
        "Authorization": f"Bearer {token}"})
    return response.status, await response.json()


async def test_artefact_handoff_is_attached_once(site: Site, tmp_path: Path) -> None:
    await consultation(site)
    cid = await consultation(site)
    response = await site.client.post(f"/api/v1/consultations/{cid}/schedule", json={
        "start": "2026-03-03T09:00:00+08:00", "end": "2026-03-03T09:30:00+08:00",
        "expert_id": site.people["expert"].user_id}, headers=site.auth("coordinator"))
    room = (await response.json())["room"]
    body = recording(tmp_path / "rec-0001", room)

    status, first = await hand_off(site, body)
    assert status == 201, first
    assert first["consultation_id"] == cid and first["manifest_id"] == "rec-0001"
    assert first["kind"] == "recording"
    assert set(first["checksums"]) == {"manifest.json", "tracks/s-1-0.webm", "timeline.msgpack"}
    assert first["checksums"]["tracks/s-1-0.webm"] == file_digest(
        tmp_path / "rec-0001" / "tracks" / "s-1-0.webm")[1]
    status, again = await hand_off(site, body)
    assert (status, again) == (200, first)
    assert count(site, Artefact) == 1


async def test_artefact_handoff_refusals(site: Site, tmp_path: Path) -> None:
    body = recording(tmp_path / "rec-0001", "consult-unknown-room")
    status, result = await hand_off(site, body)
    assert status == 404 and "room" in result["error"]
    assert (await hand_off(site, body, token="wrong-" + RECORDER_TOKEN))[0] == 401
    user_token = site.tokens.mint(site.people["admin"])
    assert (await hand_off(site, body, token=user_token))[0] == 401
    assert (await hand_off(site, body, key="another-id"))[0] == 400
    assert (await hand_off(site, b'{"manifest": {}}'))[0] == 400
    assert count(site, Artefact) == 0
