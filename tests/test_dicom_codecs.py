"""Compressed DICOM as PACS send it, over real HTTP on SQLite AND PostgreSQL: every transfer
syntax is uploaded, and the preview and the frames are checked pixel by pixel against the
values the file was made from. Unsupported and hostile files are refused with a code."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pydicom
import pytest
from numpy.typing import NDArray
from pydicom.data import get_testdata_file
from pydicom.pixels import pixel_array  # type: ignore[attr-defined]
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLossless,
    JPEGLosslessSV1,
    RLELossless,
)

from consult_api import dicom, records
from consult_api.app import create_app
from consult_api.db import make_engine, make_sessionmaker
from consult_api.errors import Unprocessable
from consult_api.models import Material
from tests import dicom_samples as samples
from tests.test_consult_api import MEDIA_TOKENS, SECRET, Clock, DbTokens, seed
from tests.test_consult_materials import Site, consultation, count, stored_files, upload

LIMIT = 16 * 1024 * 1024


@pytest.fixture(name="dicom_site")
async def dicom_site_fixture(migrated: str, aiohttp_client: Any,
                             tmp_path: Path) -> AsyncIterator[Site]:
    """A records app with a 16 MiB upload limit, on SQLite and on PostgreSQL."""
    engine = make_engine(migrated)
    try:
        people = records.run_in_session(make_sessionmaker(engine), seed)
    finally:
        engine.dispose()
    data_dir = tmp_path / "files"
    client = await aiohttp_client(create_app(migrated, SECRET, clock=Clock(),
                                             room_tokens=MEDIA_TOKENS, data_dir=data_dir,
                                             max_upload=LIMIT))
    yield Site(client=client, url=migrated, people=people, tokens=DbTokens(migrated),
               data_dir=data_dir)


async def png(site: Site, path: str, who: str = "doctor") -> NDArray[np.uint8]:
    response = await site.client.get(path, headers=site.auth(who))
    assert response.status == 200, await response.text()
    assert response.content_type == "image/png"
    image = cv2.imdecode(np.frombuffer(await response.read(), np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None and image.dtype == np.uint8
    return np.asarray(image)


def near(image: NDArray[Any], expected: NDArray[Any], tolerance: int = 1) -> bool:
    """Equal but for rounding (float32 here, float64 in the expectation)."""
    return image.shape == expected.shape and int(
        np.abs(image.astype(np.int64) - expected.astype(np.int64)).max()) <= tolerance


def native(frames: int = 1, rows: int = 128, columns: int = 128,
           **options: Any) -> pydicom.Dataset:
    """A native CT dataset with ``ct_values`` frames, to be compressed by pydicom."""
    ds = samples.ct_dataset(rows, columns, frames, **options)
    stack = np.stack([samples.ct_values(rows, columns, k) for k in range(frames)])
    ds.PixelData = (stack[0] if frames == 1 else stack).astype("<u2").tobytes()
    return ds


def compressed(tmp_path: Path, syntax: UID, frames: int = 1, **encoding: Any) -> Path:
    ds = native(frames)
    ds.compress(syntax, **encoding)
    return samples.save(ds, tmp_path / f"{syntax}.dcm")


# (file maker, transfer syntax, frames, size, lossless?)
Maker = Callable[[Path], Path]
GREY: list[tuple[str, Maker, UID, int, int, int]] = [
    ("jpeg-lossless-sv1", lambda p: samples.jpeg_ct(p / "ct.dcm"), JPEGLosslessSV1, 1, 512, 0),
    ("jpeg-lossless", lambda p: samples.jpeg_ct(p / "ct.dcm", 3, JPEGLossless), JPEGLossless, 3,
     512, 0),
    ("jpeg-2000-lossless", lambda p: compressed(p, JPEG2000Lossless, 2), JPEG2000Lossless, 2,
     128, 0),
    ("jpeg-2000", lambda p: compressed(p, JPEG2000, 1, j2k_psnr=[80]), JPEG2000, 1, 128, 3),
    ("rle", lambda p: compressed(p, RLELossless, 3), RLELossless, 3, 128, 0),
]


@pytest.mark.parametrize(("maker", "syntax", "frames", "size", "tolerance"),
                         [case[1:] for case in GREY], ids=[case[0] for case in GREY])
async def test_compressed_ct_is_accepted_and_every_frame_decodes(
        dicom_site: Site, tmp_path: Path, maker: Maker, syntax: UID, frames: int, size: int,
        tolerance: int) -> None:
    site = dicom_site
    path = maker(tmp_path)
    cid = await consultation(site)
    result = await upload(site, cid, path.read_bytes(), filename="ct.dcm")
    assert result["dicom"]["transfer_syntax"] == {"uid": str(syntax),
                                                  "name": dicom.SYNTAX_NAMES[syntax]}
    assert result["dicom"]["compressed"] is True
    assert result["dicom"]["frames"] == frames
    assert (result["dicom"]["rows"], result["dicom"]["columns"]) == (size, size)
    assert result["dicom"]["window"] == {"center": samples.CENTER, "width": samples.WIDTH}
    assert result["dicom"]["modality"] == "CT"
    assert samples.PATIENT_NAME not in json.dumps(result)
    assert samples.PATIENT_ID not in json.dumps(result)

    mid = result["id"]
    preview = await png(site, f"/api/v1/materials/{mid}/preview")
    assert near(preview, samples.expected_png(samples.ct_values(size, size)), 1 + tolerance)
    for k in range(frames):
        image = await png(site, f"/api/v1/materials/{mid}/frames/{k}")
        expected = samples.expected_png(samples.ct_values(size, size, k))
        assert near(image, expected, 1 + tolerance), k
    # The viewer's own window: bone, over the whole 12-bit range.
    image = await png(site, f"/api/v1/materials/{mid}/frames/{frames - 1}?center=1000&width=4096")
    expected = samples.expected_png(samples.ct_values(size, size, frames - 1), 1000, 4096)
    assert near(image, expected, 1 + tolerance)
    response = await site.client.get(f"/api/v1/materials/{mid}/frames/{frames}",
                                     headers=site.auth("doctor"))
    assert response.status == 404 and (await response.json())["code"] == "frame-not-found"
    response = await site.client.get(f"/api/v1/materials/{mid}", headers=site.auth("doctor"))
    assert await response.read() == path.read_bytes()


async def test_jpeg_baseline_8_bit(dicom_site: Site, tmp_path: Path) -> None:
    path, pixels = samples.jpeg_baseline_ct(tmp_path / "baseline.dcm")
    cid = await consultation(dicom_site)
    result = await upload(dicom_site, cid, path.read_bytes(), filename="ct.dcm")
    assert result["dicom"]["transfer_syntax"]["name"] == "JPEG Baseline"
    # No window in the header: the first frame's own range is the default.
    window = result["dicom"]["window"]
    decoded = pixel_array(path).astype(np.float64)
    assert window == {"center": (decoded.min() + decoded.max()) / 2,
                      "width": decoded.max() - decoded.min()}
    image = await png(dicom_site, f"/api/v1/materials/{result['id']}/frames/0?center=127.5"
                                  "&width=255")
    assert near(image, pixels, 2)  # lossy: within 2 levels of the original


async def test_deflated_dicom_is_inflated_once_and_read_like_any_other(
        dicom_site: Site, tmp_path: Path) -> None:
    ds = native(2, syntax=DeflatedExplicitVRLittleEndian)
    path = samples.save(ds, tmp_path / "deflated.dcm")
    raw = path.read_bytes()
    assert len(raw) < 2 * 128 * 128 * 2 / 2  # it is compressed
    cid = await consultation(dicom_site)
    result = await upload(dicom_site, cid, raw, filename="ct.dcm")
    assert result["dicom"]["transfer_syntax"] == {
        "uid": str(DeflatedExplicitVRLittleEndian), "name": "Deflate"}
    assert result["dicom"]["compressed"] is True and result["dicom"]["frames"] == 2
    image = await png(dicom_site, f"/api/v1/materials/{result['id']}/frames/1")
    assert near(image, samples.expected_png(samples.ct_values(128, 128, 1)))
    assert (dicom_site.data_dir / "inflated" / f"{result['sha256']}.dcm").is_file()
    response = await dicom_site.client.get(f"/api/v1/materials/{result['id']}",
                                           headers=dicom_site.auth("doctor"))
    assert await response.read() == raw  # the download is the file as sent


async def test_jpeg_ls_lossless_and_near_lossless(dicom_site: Site) -> None:
    cid = await consultation(dicom_site)
    reference = pydicom.dcmread(str(get_testdata_file("MR_small.dcm")))
    lossless = Path(str(get_testdata_file("MR_small_jpeg_ls_lossless.dcm")))
    result = await upload(dicom_site, cid, lossless.read_bytes(), filename="mr.dcm")
    assert result["dicom"]["transfer_syntax"]["name"] == "JPEG-LS Lossless"
    assert result["dicom"]["window"] == {"center": 600.0, "width": 1600.0}
    image = await png(dicom_site, f"/api/v1/materials/{result['id']}/frames/0")
    assert near(image, samples.expected_png(reference.pixel_array, 600, 1600, 0))

    near_lossless = Path(str(get_testdata_file("JPEGLSNearLossless_16.dcm")))
    result = await upload(dicom_site, cid, near_lossless.read_bytes(), filename="x.dcm")
    assert result["dicom"]["transfer_syntax"]["name"] == "JPEG-LS Near-lossless"
    decoded = pixel_array(near_lossless)
    image = await png(dicom_site, f"/api/v1/materials/{result['id']}/frames/0?center=30000"
                                  "&width=20000")
    assert near(image, samples.expected_png(decoded, 30000, 20000, 0))


async def test_colour_frames_ignore_the_window(dicom_site: Site) -> None:
    cid = await consultation(dicom_site)
    rgb = Path(str(get_testdata_file("SC_rgb_rle_2frame.dcm")))
    result = await upload(dicom_site, cid, rgb.read_bytes(), filename="rgb.dcm")
    assert result["dicom"]["frames"] == 2 and result["dicom"]["window"] is None
    assert result["dicom"]["photometric"] == "RGB"
    for k in range(2):
        expected = cv2.cvtColor(pixel_array(rgb, index=k), cv2.COLOR_RGB2BGR)
        for query in ("", "?center=0&width=1"):
            image = await png(dicom_site, f"/api/v1/materials/{result['id']}/frames/{k}{query}")
            assert np.array_equal(image, expected)
    ybr = Path(str(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm")))  # JPEG baseline, YBR_FULL
    result = await upload(dicom_site, cid, ybr.read_bytes(), filename="ybr.dcm")
    image = await png(dicom_site, f"/api/v1/materials/{result['id']}/preview")
    assert near(image, cv2.cvtColor(pixel_array(ybr), cv2.COLOR_RGB2BGR), 0)


async def test_monochrome1_is_inverted(dicom_site: Site, tmp_path: Path) -> None:
    ds = native(1, 64, 64, photometric="MONOCHROME1")
    ds.compress(RLELossless)
    path = samples.save(ds, tmp_path / "m1.dcm")
    cid = await consultation(dicom_site)
    result = await upload(dicom_site, cid, path.read_bytes(), filename="cr.dcm")
    assert result["dicom"]["photometric"] == "MONOCHROME1"
    image = await png(dicom_site, f"/api/v1/materials/{result['id']}/frames/0")
    assert near(image, 255 - samples.expected_png(samples.ct_values(64, 64)))


# --- refusals ----------------------------------------------------------------------------------

def with_syntax(tmp_path: Path, syntax: str) -> bytes:
    """A JPEG CT whose file meta names another transfer syntax."""
    ds = samples.ct_dataset(64, 64, syntax=JPEGLosslessSV1)
    ds.PixelData = pydicom.encaps.encapsulate([b"\x00\x00\x01\xb3" + bytes(100)])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    path = tmp_path / "other.dcm"
    ds.save_as(path, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return path.read_bytes()


UNSUPPORTED = ["1.2.840.10008.1.2.4.100",  # MPEG2 video
               "1.2.840.10008.1.2.4.102",  # MPEG-4 AVC video
               "1.2.156.112536.1.2.4.1"]  # a vendor's private syntax


async def test_unsupported_transfer_syntaxes_are_refused_with_415(
        dicom_site: Site, tmp_path: Path) -> None:
    cid = await consultation(dicom_site)
    for syntax in UNSUPPORTED:
        result = await upload(dicom_site, cid, with_syntax(tmp_path, syntax), status=415)
        assert result["code"] == "dicom-unsupported-syntax" and syntax in result["error"]
    assert stored_files(dicom_site) == [] and count(dicom_site, Material) == 0


def truncated_native(tmp_path: Path) -> bytes:
    path = samples.native_ct(tmp_path / "n.dcm", frames=3, rows=64, columns=64)
    return path.read_bytes()[:-100]


def missing_frame(tmp_path: Path) -> bytes:
    ds = samples.ct_dataset(64, 64, frames=3, syntax=JPEGLosslessSV1)
    frames = [samples.jpeg_lossless(samples.ct_values(64, 64, k), 12) for k in range(2)]
    return samples.encapsulated(ds, frames, tmp_path / "m.dcm").read_bytes()


def broken_jpeg(tmp_path: Path) -> bytes:
    ds = samples.ct_dataset(64, 64, syntax=JPEGLosslessSV1)
    noise = np.random.default_rng(7).integers(0, 255, 4000, dtype=np.uint8).tobytes()
    return samples.encapsulated(ds, [b"\xff\xd8" + noise], tmp_path / "b.dcm").read_bytes()


def no_pixels(tmp_path: Path) -> bytes:
    return samples.save(samples.ct_dataset(64, 64), tmp_path / "np.dcm").read_bytes()


def huge_frame(tmp_path: Path) -> bytes:
    ds = samples.ct_dataset(60000, 60000, syntax=JPEGLosslessSV1)
    frame = samples.jpeg_lossless(samples.ct_values(64, 64), 12)
    return samples.encapsulated(ds, [frame], tmp_path / "h.dcm").read_bytes()


HOSTILE: list[tuple[Callable[[Path], bytes], str]] = [
    (truncated_native, "dicom-corrupt"), (missing_frame, "dicom-corrupt"),
    (broken_jpeg, "dicom-corrupt"), (no_pixels, "dicom-no-image"),
    (huge_frame, "dicom-frame-too-large")]


async def test_broken_and_hostile_files_are_refused_with_422(
        dicom_site: Site, tmp_path: Path) -> None:
    cid = await consultation(dicom_site)
    for make, code in HOSTILE:
        result = await upload(dicom_site, cid, make(tmp_path), status=422)
        assert result["code"] == code, make.__name__
        assert samples.PATIENT_NAME not in result["error"]
    assert stored_files(dicom_site) == [] and count(dicom_site, Material) == 0


async def test_a_deflate_bomb_is_refused_and_nothing_is_left(
        dicom_site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dicom, "MAX_INFLATED", 8 * 1024 * 1024)
    ds = samples.ct_dataset(2048, 2048, frames=2, syntax=DeflatedExplicitVRLittleEndian)
    ds.PixelData = bytes(2 * 2048 * 2048 * 2)  # 16 MiB of zeros: a few KiB deflated
    path = samples.save(ds, tmp_path / "bomb.dcm")
    assert path.stat().st_size < 64 * 1024
    cid = await consultation(dicom_site)
    result = await upload(dicom_site, cid, path.read_bytes(), status=422)
    assert result["code"] == "dicom-too-large"
    assert stored_files(dicom_site) == [] and count(dicom_site, Material) == 0


def test_a_corrupt_deflate_stream_is_refused(tmp_path: Path) -> None:
    ds = native(1, 32, 32, syntax=DeflatedExplicitVRLittleEndian)
    raw = bytearray(samples.save(ds, tmp_path / "d.dcm").read_bytes())
    raw[-40:] = bytes(range(40))
    (tmp_path / "bad.dcm").write_bytes(bytes(raw))
    with pytest.raises(Unprocessable) as caught:
        dicom.inflate(tmp_path / "bad.dcm", tmp_path / "out.dcm")
        dicom.examine(tmp_path / "out.dcm")
    assert caught.value.code == "dicom-corrupt"
