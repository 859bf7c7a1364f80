"""A 600 MB multi-frame DICOM upload grows the records service's memory by less than 64 MiB.

The real records service (``python -m huizhen records``, SQLite) runs in a child process
whose RSS is sampled (psutil) while the test streams a generated 600 MiB CT (1200 frames of
512 x 512 x 16 bits, written to disk frame by frame, never whole in the test's memory) to
it, and while the viewer reads the preview and frames from it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import cv2
import numpy as np
import psutil  # type: ignore[import-untyped]
from numpy.typing import NDArray

from consult_api import records
from consult_api.db import make_engine, make_sessionmaker, upgrade
from tests import dicom_samples as samples
from tests.conftest import free_port, stop_process
from tests.test_consult_api import REQUEST, SECRET, DbTokens, World, seed
from tests.test_consult_materials_memory import PeakRss

FRAMES = 1200  # x 512 KiB = 600 MiB
CHUNK = 1024 * 1024
MAX_GROWTH = 64 * 1024 * 1024


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, CHUNK):
            yield chunk


async def started(child: subprocess.Popen[bytes]) -> None:
    assert child.stdout is not None
    line = await asyncio.get_running_loop().run_in_executor(None, child.stdout.readline)
    assert b"records service listening" in line, line


def decoded(body: bytes) -> NDArray[np.uint8]:
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None
    return np.asarray(image)


def near(image: NDArray[Any], expected: NDArray[Any]) -> bool:
    return image.shape == expected.shape and int(
        np.abs(image.astype(np.int64) - expected).max()) <= 1


async def test_a_600_mb_dicom_upload_keeps_the_service_small(tmp_path: Path) -> None:
    source = samples.native_ct(tmp_path / "ct-600mb.dcm", frames=FRAMES)
    size = source.stat().st_size
    assert size > 600 * 1024 * 1024
    data_dir = tmp_path / "service"
    data_dir.mkdir()
    url = f"sqlite:///{data_dir / 'records.sqlite3'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        people = records.run_in_session(make_sessionmaker(engine), seed)
    finally:
        engine.dispose()
    world = World(client=cast(Any, None), url=url, people=people, tokens=DbTokens(url))
    port = free_port()
    env = {**os.environ, "HUIZHEN_RECORDS_HOST": "127.0.0.1", "HUIZHEN_RECORDS_PORT": str(port),
           "HUIZHEN_RECORDS_DATABASE_URL": url, "HUIZHEN_RECORDS_TOKEN_SECRET": SECRET,
           "HUIZHEN_RECORDS_MAX_UPLOAD_BYTES": str(1 << 30),
           "HUIZHEN_STORAGE_DATA_DIR": str(data_dir)}
    child = subprocess.Popen([sys.executable, "-m", "huizhen", "records"], env=env,
                             stdout=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        await started(child)
        auth = world.auth("doctor")
        timeout = aiohttp.ClientTimeout(total=900)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(f"{base}/api/v1/consultations", headers=auth,
                                    json=REQUEST) as response:
                cid = (await response.json())["id"]
            # Warm up every path (upload, decode, render) before the baseline.
            small = samples.jpeg_ct(tmp_path / "small.dcm", frames=2).read_bytes()
            async with session.post(f"{base}/api/v1/consultations/{cid}/materials", data=small,
                                    headers={**auth, "X-Filename": "small.dcm"}) as response:
                assert response.status == 201
                warm = (await response.json())["id"]
            async with session.get(f"{base}/api/v1/materials/{warm}/frames/1",
                                   headers=auth) as response:
                assert response.status == 200
            baseline = psutil.Process(child.pid).memory_info().rss
            with PeakRss(child.pid) as rss:
                async with session.post(
                        f"{base}/api/v1/consultations/{cid}/materials",
                        data=file_chunks(source),
                        headers={**auth, "X-Filename": "ct-600mb.dcm"}) as response:
                    result = await response.json()
                    assert response.status == 201, result
                after_upload = rss.peak
                frames = {}
                for path in ("preview", "frames/0", f"frames/{FRAMES // 2}",
                             f"frames/{FRAMES - 1}"):
                    async with session.get(f"{base}/api/v1/materials/{result['id']}/{path}",
                                           headers=auth) as response:
                        assert response.status == 200, path
                        frames[path] = decoded(await response.read())
        growth = rss.peak - baseline
        print(f"\nrecords service RSS for a {size / 2**20:.0f} MiB DICOM upload: baseline "
              f"{baseline / 2**20:.1f} MiB, peak during upload {after_upload / 2**20:.1f} MiB, "
              f"peak with frames read {rss.peak / 2**20:.1f} MiB, growth "
              f"{growth / 2**20:.1f} MiB (limit {MAX_GROWTH / 2**20:.0f} MiB)")
        assert growth < MAX_GROWTH
        assert result["size"] == size and result["kind"] == "dicom"
        assert result["dicom"]["frames"] == FRAMES and result["dicom"]["rows"] == 512
        assert result["dicom"]["compressed"] is False
        for path, k in (("preview", 0), ("frames/0", 0), (f"frames/{FRAMES // 2}", FRAMES // 2),
                        (f"frames/{FRAMES - 1}", FRAMES - 1)):
            assert near(frames[path], samples.expected_png(samples.ct_values(frame=k))), path
        assert (data_dir / "materials" / result["sha256"]).stat().st_size == size
        assert list((data_dir / "uploads").iterdir()) == []
    finally:
        stop_process(child)
