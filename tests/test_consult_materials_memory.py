"""A 500 MB upload keeps the server's memory flat: the app runs in a subprocess whose RSS is
sampled (psutil) while the test streams the body to it in chunks (SQLite)."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import psutil  # type: ignore[import-untyped]

from consult_api import records
from consult_api.db import make_engine, make_sessionmaker, upgrade
from tests.conftest import free_port, stop_process
from tests.test_consult_api import REQUEST, SECRET, DbTokens, seed

SIZE = 500 * 1024 * 1024
CHUNK = 1024 * 1024
MAX_GROWTH = 64 * 1024 * 1024
PDF_HEAD = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"

SERVER = """
import sys
from pathlib import Path
from aiohttp import web
from consult_api.app import create_app
url, data_dir, port = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
app = create_app(url, sys.argv[4], data_dir=data_dir, max_upload=1 << 30)
web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)
"""


class PeakRss:
    """Samples a process's resident set size every few milliseconds in a thread."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


async def wait_until_up(base: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(f"{base}/api/v1/experts"):
                    return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
    raise AssertionError("the server did not start")


async def test_a_500_mb_upload_keeps_memory_flat(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'consult.sqlite3'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        people = records.run_in_session(make_sessionmaker(engine), seed)
    finally:
        engine.dispose()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data_dir = tmp_path / "files"
    server = subprocess.Popen([sys.executable, "-c", SERVER, url, str(data_dir), str(port),
                               SECRET])
    try:
        await wait_until_up(base)
        auth = {"Authorization": f"Bearer {DbTokens(url).mint(people['doctor'])}"}
        digest = hashlib.sha256()

        async def body() -> AsyncIterator[bytes]:
            padding = bytes(CHUNK)
            first = PDF_HEAD + padding[len(PDF_HEAD):]
            for index in range(SIZE // CHUNK):
                chunk = first if index == 0 else padding
                digest.update(chunk)
                yield chunk

        async with aiohttp.ClientSession() as session:
            async with session.post(f"{base}/api/v1/consultations", headers=auth,
                                    json=REQUEST) as response:
                cid = (await response.json())["id"]
            # Warm up (first request paths, thread pool) before the baseline.
            async with session.post(f"{base}/api/v1/consultations/{cid}/materials",
                                    data=PDF_HEAD, headers={**auth, "X-Filename": "a.pdf"}):
                pass
            baseline = psutil.Process(server.pid).memory_info().rss
            with PeakRss(server.pid) as rss:
                async with session.post(
                        f"{base}/api/v1/consultations/{cid}/materials", data=body(),
                        headers={**auth, "X-Filename": "big.pdf"},
                        timeout=aiohttp.ClientTimeout(total=600)) as response:
                    result = await response.json()
                    assert response.status == 201, result
        growth = rss.peak - baseline
        print(f"server RSS: baseline {baseline / 2**20:.1f} MiB, peak {rss.peak / 2**20:.1f} "
              f"MiB, growth {growth / 2**20:.1f} MiB")
        assert growth < MAX_GROWTH
        assert result["size"] == SIZE and result["kind"] == "pdf"
        assert result["sha256"] == digest.hexdigest()
        stored = data_dir / "materials" / digest.hexdigest()
        assert stored.stat().st_size == SIZE
        with stored.open("rb") as handle:
            on_disk = hashlib.file_digest(handle, "sha256").hexdigest()
        assert on_disk == digest.hexdigest()
        assert list((data_dir / "uploads").iterdir()) == []
    finally:
        stop_process(server)

