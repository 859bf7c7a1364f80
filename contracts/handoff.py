"""What the recorder and the records service agree on about a recording's hand-off.

The recording's bytes travel, not its paths (the two services may run on different
machines). The upload protocol, relative to the recorder's ``handoff_url`` (the records
service's ``/api/v1/recordings``), every request with ``Authorization: Bearer <token>``:

1. ``POST {url}`` with ``{"recording": id, "manifest": {...}, "files": [{"file", "mime_type",
   "bytes", "sha256"}, ...]}`` (idempotent by recording id; a later call may add files, e.g. a
   teaching video rendered after the first hand-off) answers ``{"need": [{"file",
   "offset"}, ...]}``: the files the service still lacks and how many bytes of each it holds.
2. ``PUT {url}/{id}/files?name=<file>`` with ``Content-Range: bytes <offset>-<last>/<size>``
   and those bytes (``bytes */0`` for an empty file). The service streams them to disk; a
   start other than its offset is ``409`` ``offset-mismatch`` with ``{"offset": n}``. When
   the file is whole its size and SHA-256 are checked: a mismatch discards it (``422``
   ``checksum-mismatch``; the recorder sends it again once, then gives up: ``rejected``).
3. ``POST {url}/{id}/commit`` attaches the recording: ``200`` (to the consultation whose room
   it is, and to every consultation scheduled on that bed's room whose window overlaps it),
   ``404`` with code ``UNCLAIMED_ROOM_CODE`` when none does (the service keeps the files,
   listed for an admin to attach or discard; the recorder ends the hand-off as
   ``unclaimed``), ``409`` ``files-missing`` while a file is not verified yet.

File names are relative POSIX paths (``manifest.json``, ``tracks/x.webm``,
``vod/teaching.mp4``): segments of letters, digits, ``_``, ``-`` and ``.``, never starting
with a dot, at most ``MAX_NAME_SEGMENTS`` deep; anything else is refused with 400.
"""

from __future__ import annotations

import re

UNCLAIMED_ROOM_CODE = "room-unclaimed"
OFFSET_MISMATCH_CODE = "offset-mismatch"
CHECKSUM_MISMATCH_CODE = "checksum-mismatch"
FILES_MISSING_CODE = "files-missing"

MAX_NAME_SEGMENTS = 3
MAX_NAME_LENGTH = 200
_SEGMENT = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,99}")
_RANGE = re.compile(r"bytes (?:(\d{1,15})-(\d{1,15})|\*)/(\d{1,15})")


def valid_file_name(name: str) -> bool:
    """A relative name that cannot leave the recording's directory: no ``..``, no leading
    ``/``, no NUL or backslash, no hidden segment."""
    if not 0 < len(name) <= MAX_NAME_LENGTH:
        return False
    segments = name.split("/")
    return len(segments) <= MAX_NAME_SEGMENTS and all(
        _SEGMENT.fullmatch(segment) for segment in segments)


def valid_recording_id(recording: str) -> bool:
    return 0 < len(recording) <= 100 and _SEGMENT.fullmatch(recording) is not None


def content_range(offset: int, size: int) -> str:
    """The ``Content-Range`` of a PUT sending bytes ``offset..size-1`` of a ``size``-byte file."""
    return f"bytes {offset}-{size - 1}/{size}" if offset < size else f"bytes */{size}"


def parse_content_range(header: str) -> tuple[int, int, int] | None:
    """(first, last + 1, size) of a ``Content-Range``; ``bytes */n`` is (n, n, n); None if
    malformed or inconsistent."""
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    size = int(match.group(3))
    if match.group(1) is None:
        return size, size, size
    first, last = int(match.group(1)), int(match.group(2))
    if first > last or last >= size:
        return None
    return first, last + 1, size
