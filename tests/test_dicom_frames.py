"""The viewer's frames endpoint (numbers, windows, access, audit) and the rule that closed
consultations take no more materials, over real HTTP on SQLite AND PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from consult_api.dicom import Window, parse_frame_index, parse_level, pick_window
from consult_api.errors import InvalidRequest, NotFound
from consult_api.models import AuditLog, Consultation, Material
from tests import dicom_samples as samples
from tests.test_consult_materials import PDF, Site, consultation, count, stored_files, upload
from tests.test_dicom_codecs import dicom_site_fixture, near, png  # noqa: F401 - fixture

# --- pure cores ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "index"), [("0", 0), ("7", 7), ("000012", 12)])
def test_frame_numbers(raw: str, index: int) -> None:
    assert parse_frame_index(raw) == index


@pytest.mark.parametrize("raw", ["", "-1", "1.5", "1e3", "x", " 1", "\u0663", "\uff11", "0x1"])
def test_bad_frame_numbers_are_400(raw: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_frame_index(raw)
    assert caught.value.code == "invalid-frame-number"


def test_absurd_frame_numbers_are_404() -> None:
    with pytest.raises(NotFound) as caught:
        parse_frame_index("1" * 40)
    assert caught.value.code == "frame-not-found"


def test_window_levels() -> None:
    assert parse_level(None, "center") is None and parse_level("", "width") is None
    assert parse_level("-600", "center") == -600.0 and parse_level("1500.5", "width") == 1500.5
    for raw, what in [("nan", "center"), ("inf", "width"), ("0", "width"), ("-1", "width"),
                      ("abc", "center"), ("1e99", "center"), ("40,400", "center")]:
        with pytest.raises(InvalidRequest) as caught:
            parse_level(raw, what)
        assert caught.value.code == "invalid-window", raw
    base = Window(40, 400)
    assert pick_window(None, None, base) == base
    assert pick_window(-600, None, base) == Window(-600, 400)
    assert pick_window(None, 1500, base) == Window(40, 1500)


# --- the endpoint -------------------------------------------------------------------------------

async def frame_error(site: Site, path: str, status: int, who: str = "doctor") -> str:
    response = await site.client.get(path, headers=site.auth(who))
    assert response.status == status, await response.text()
    code: str = (await response.json())["code"]
    return code


async def test_frames_of_a_multi_frame_ct(dicom_site: Site, tmp_path: Path) -> None:
    site = dicom_site
    path = samples.native_ct(tmp_path / "ct.dcm", frames=4, rows=96, columns=80)
    cid = await consultation(site, expert_id=site.people["expert"].user_id)
    result = await upload(site, cid, path.read_bytes(), filename="ct.dcm")
    assert result["dicom"]["frames"] == 4 and result["dicom"]["compressed"] is False
    mid = result["id"]
    for k in (3, 0, 2):
        image = await png(site, f"/api/v1/materials/{mid}/frames/{k}", who="expert")
        assert near(image, samples.expected_png(samples.ct_values(96, 80, k)))
    # Only the center, or only the width: the rest from the header's window.
    image = await png(site, f"/api/v1/materials/{mid}/frames/1?center=500")
    assert near(image, samples.expected_png(samples.ct_values(96, 80, 1), 500, samples.WIDTH))
    image = await png(site, f"/api/v1/materials/{mid}/frames/1?width=3000")
    assert near(image, samples.expected_png(samples.ct_values(96, 80, 1), samples.CENTER, 3000))

    base = f"/api/v1/materials/{mid}/frames"
    assert await frame_error(site, f"{base}/4", 404) == "frame-not-found"
    assert await frame_error(site, f"{base}/99999999999999", 404) == "frame-not-found"
    for bad in ("-1", "one", "1.0", "%D9%A3"):
        assert await frame_error(site, f"{base}/{bad}", 400) == "invalid-frame-number"
    for query in ("center=nan", "width=0", "width=-10", "center=x&width=400", "width=1e400"):
        assert await frame_error(site, f"{base}/0?{query}", 400) == "invalid-window"

    # The same read rules as the preview: the parties only.
    for who in ("stranger", "other_expert"):
        assert await frame_error(site, f"{base}/0", 403, who=who) == "forbidden"
    response = await site.client.get(f"{base}/0")
    assert response.status == 401
    assert await frame_error(site, "/api/v1/materials/999999/frames/0", 404) == "not-found"
    pdf = await upload(site, cid, PDF, filename="report.pdf")
    assert await frame_error(site, f"/api/v1/materials/{pdf['id']}/frames/0", 404) == (
        "frame-not-found")

    audited = site.query(lambda s: [(a.action, a.object_id) for a in s.scalars(
        sa.select(AuditLog).where(AuditLog.object_type == "material",
                                  AuditLog.action == "material.frame").order_by(AuditLog.id))])
    # Every frame read by a party is audited (also those past the last frame).
    assert audited == [("material.frame", mid)] * 6 + [("material.frame", pdf["id"])]


def set_state(site: Site, cid: int, state: str) -> None:
    def work(s: Session) -> None:
        c = s.get(Consultation, cid)
        assert c is not None
        c.state = state

    site.query(work)


async def test_closed_rejected_and_cancelled_consultations_take_no_materials(
        dicom_site: Site, tmp_path: Path) -> None:
    site = dicom_site
    ct = samples.jpeg_ct(tmp_path / "ct.dcm").read_bytes()
    cancelled = await consultation(site)
    response = await site.client.post(f"/api/v1/consultations/{cancelled}/transitions",
                                      json={"to": "cancelled"}, headers=site.auth("doctor"))
    assert response.status == 200
    result = await upload(site, cancelled, ct, status=409)
    assert result["code"] == "consultation-closed"
    rejected = await consultation(site, expert_id=site.people["expert"].user_id)
    response = await site.client.post(f"/api/v1/consultations/{rejected}/transitions",
                                      json={"to": "rejected"}, headers=site.auth("expert"))
    assert response.status == 200
    assert (await upload(site, rejected, PDF, who="expert", status=409))["code"] == (
        "consultation-closed")
    closed = await consultation(site)
    set_state(site, closed, "closed")
    assert (await upload(site, closed, ct, status=409))["code"] == "consultation-closed"
    # Who may not write is told so, closed or not.
    assert (await upload(site, closed, ct, who="stranger", status=403))["code"] == "forbidden"
    assert stored_files(site) == [] and count(site, Material) == 0
    # An open consultation still takes them.
    await upload(site, await consultation(site), ct)
    assert count(site, Material) == 1


async def test_a_consultation_closed_during_the_upload_keeps_nothing(
        dicom_site: Site, tmp_path: Path) -> None:
    site = dicom_site
    ct = samples.jpeg_ct(tmp_path / "ct.dcm").read_bytes()
    cid = await consultation(site)
    uploads = site.data_dir / "uploads"

    async def body() -> AsyncIterator[bytes]:
        yield ct[:4096]
        # The server checked the consultation and is receiving: cancel it now.
        for _ in range(500):
            if uploads.is_dir() and any(uploads.iterdir()):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the upload did not start")
        response = await site.client.post(f"/api/v1/consultations/{cid}/transitions",
                                          json={"to": "cancelled"},
                                          headers=site.auth("doctor"))
        assert response.status == 200
        yield ct[4096:]

    result = await upload(site, cid, body(), filename="ct.dcm", status=409)
    assert result["code"] == "consultation-closed"
    assert stored_files(site) == [] and count(site, Material) == 0
