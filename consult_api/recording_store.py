"""The received recordings' files on the records service's disk (blocking calls, run in
worker threads by ``recording_routes``).

``<data_dir>/received-recordings/<id>/<file>`` once verified;
``<data_dir>/received-recordings/<id>/.partial/<file>`` while bytes arrive (the names the
protocol allows never start with a dot, so a partial file never collides with a received
one). A partial file's size is the offset an
upload resumes from; a whole one is hashed in 1 MiB reads (never read into memory at once).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import BinaryIO

PARTIAL_DIR = ".partial"
READ_SIZE = 1 << 20


def final_path(data_dir: Path, stored_dir: str, name: str) -> Path:
    return data_dir / stored_dir / name


def partial_path(data_dir: Path, stored_dir: str, name: str) -> Path:
    return data_dir / stored_dir / PARTIAL_DIR / name


def held(data_dir: Path, stored_dir: str, names: list[str]) -> dict[str, int]:
    """Bytes already held of each name (a partial file's size)."""
    sizes = {}
    for name in names:
        path = partial_path(data_dir, stored_dir, name)
        sizes[name] = path.stat().st_size if path.is_file() else 0
    return sizes


def open_partial(data_dir: Path, stored_dir: str, name: str) -> tuple[BinaryIO, int]:
    """The partial file opened for appending, and its size."""
    path = partial_path(data_dir, stored_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "ab")  # noqa: SIM115 - closed by the caller after streaming
    return handle, handle.tell()


def finish(data_dir: Path, stored_dir: str, name: str, size: int, sha256: str) -> bool:
    """Check a whole partial file's size and SHA-256: move it into place (True), or delete it
    (False: the upload starts again from 0)."""
    path = partial_path(data_dir, stored_dir, name)
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(READ_SIZE):
            digest.update(chunk)
    if path.stat().st_size != size or digest.hexdigest() != sha256:
        path.unlink(missing_ok=True)
        return False
    target = final_path(data_dir, stored_dir, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, target)
    return True


def remove(data_dir: Path, stored_dir: str) -> None:
    shutil.rmtree(data_dir / stored_dir, ignore_errors=True)
