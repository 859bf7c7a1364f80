"""HTTP routes of recordings received as bytes (protocol: ``contracts.handoff``).

The recorder's (``Authorization: Bearer <recorder token>``): ``POST /api/v1/recordings``,
``PUT /api/v1/recordings/{recording}/files?name=``, ``POST
/api/v1/recordings/{recording}/commit``. The
workspace's (signed in): ``GET /api/v1/consultations/{id}/recordings``, ``GET
/api/v1/recording-files/{id}?name=`` (HTTP Range, for ``<video>``), and the admin's
``GET /api/v1/recordings?status=unclaimed``, ``POST /api/v1/recording-files/{id}/attach``
and ``.../discard``. Bodies are streamed to disk in chunks; memory stays bounded whatever
the file's size.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

from aiohttp import ClientPayloadError, web
from aiohttp.http_exceptions import HttpProcessingError

from consult_api import recording_store, recordings
from consult_api.auth import service_token_matches
from consult_api.errors import InvalidRequest, TooLarge, Unauthenticated, Unavailable
from consult_api.http import (
    CLOCK,
    DATA_DIR,
    RECORDER_TOKEN,
    actor_of,
    in_db,
    json_body,
    path_id,
    query_text,
)
from contracts.handoff import (
    CHECKSUM_MISMATCH_CODE,
    OFFSET_MISMATCH_CODE,
    UNCLAIMED_ROOM_CODE,
    parse_content_range,
)

logger = logging.getLogger(__name__)

CHUNK = 256 * 1024
MAX_RECORDING_FILE = web.AppKey("max_recording_file", int)
FILE_LOCKS: web.AppKey[defaultdict[tuple[str, str], asyncio.Lock]] = web.AppKey("file_locks")
DEFAULT_MAX_RECORDING_FILE = 16 * 1024**3


def _salvage(content: Any) -> bytes:
    """The body bytes aiohttp received before the connection dropped but no longer hands
    out (its reads raise the connection's error first); without them a resumed upload would
    send up to its buffer's worth again."""
    read = getattr(content, "_read_nowait", None)
    try:
        return bytes(read(-1)) if read is not None else b""
    except Exception:
        return b""


def _recorder(request: web.Request) -> None:
    expected = request.app[RECORDER_TOKEN]
    if expected is None:
        raise Unavailable("recorder hand-off is not configured on this server")
    if not service_token_matches(request.headers.get("Authorization"), expected):
        raise Unauthenticated("a valid recorder service token is required")


def _name(request: web.Request) -> str:
    name = request.query.get("name", "")
    return recordings.check_name(name)


async def announce(request: web.Request) -> web.Response:
    _recorder(request)
    data = recordings.parse_recording(await json_body(request),
                                      request.headers.get("Idempotency-Key"),
                                      request.app[MAX_RECORDING_FILE])
    now = request.app[CLOCK]()
    data_dir = request.app[DATA_DIR]

    def work(s: Any) -> tuple[dict[str, Any], bool]:
        artefact, created = recordings.announce(s, data, now)
        names = [f["file"] for f in artefact.files if not f["verified"]]
        assert artefact.stored_dir is not None
        sizes = recording_store.held(data_dir, artefact.stored_dir, names)
        return {"recording": artefact.manifest_id, "status": artefact.status,
                "need": recordings.need(artefact, sizes)}, created

    answer, created = await in_db(request, work)
    return web.json_response(answer, status=201 if created else 200)


async def put_file(request: web.Request) -> web.Response:
    _recorder(request)
    recording = recordings.check_recording_id(request.match_info["recording"])
    name = _name(request)
    entry = await in_db(request, lambda s: recordings.declared(s, recording, name))
    size, sha256 = int(entry["bytes"]), str(entry["sha256"])
    stored = recordings.stored_dir(recording)
    if entry["verified"]:
        return web.json_response({"file": name, "offset": size, "verified": True})
    header = request.headers.get("Content-Range")
    span = parse_content_range(header) if header is not None else (0, size, size)
    if span is None or span[2] != size:
        raise InvalidRequest(f"Content-Range must be 'bytes first-last/{size}'",
                             code="invalid-range")
    first, end, _ = span
    data_dir = request.app[DATA_DIR]
    async with request.app[FILE_LOCKS][(recording, name)]:
        handle, offset = await asyncio.to_thread(recording_store.open_partial, data_dir,
                                                 stored, name)
        try:
            if first != offset:
                return web.json_response(
                    {"error": f"this file is held up to byte {offset}",
                     "code": OFFSET_MISMATCH_CODE, "offset": offset}, status=409)
            written = offset
            try:
                async for chunk in request.content.iter_chunked(CHUNK):
                    if written + len(chunk) > end:
                        raise TooLarge("more bytes than the Content-Range says")
                    await asyncio.to_thread(handle.write, chunk)
                    written += len(chunk)
            except (ClientPayloadError, HttpProcessingError, ConnectionError) as exc:
                # The bytes received so far stay: the next upload resumes from them.
                rest = _salvage(request.content)[:end - written]
                if rest:
                    await asyncio.to_thread(handle.write, rest)
                    written += len(rest)
                logger.warning("recording %s: upload of %s interrupted at byte %d (%s)",
                               recording, name, written, type(exc).__name__)
                return web.json_response({"error": "the upload was interrupted",
                                          "code": "upload-interrupted", "offset": written},
                                         status=400)
        finally:
            await asyncio.to_thread(handle.close)
        if written < size:
            return web.json_response({"file": name, "offset": written, "verified": False})
        ok = await asyncio.to_thread(recording_store.finish, data_dir, stored, name, size,
                                     sha256)
        if not ok:
            logger.warning("recording %s: %s failed its SHA-256 check; discarded", recording,
                           name)
            return web.json_response(
                {"error": f"{name} does not match its declared size and SHA-256; send it "
                 "again from byte 0", "code": CHECKSUM_MISMATCH_CODE, "offset": 0}, status=422)
        await in_db(request, lambda s: recordings.mark_verified(s, recording, name))
    return web.json_response({"file": name, "offset": size, "verified": True})


async def commit(request: web.Request) -> web.Response:
    _recorder(request)
    recording = recordings.check_recording_id(request.match_info["recording"])
    now = request.app[CLOCK]()
    answer = await in_db(request, lambda s: recordings.recording_json(
        recordings.commit(s, recording, now)))
    if answer["status"] == "unclaimed":
        return web.json_response({"error": "no consultation has this live room",
                                  "code": UNCLAIMED_ROOM_CODE}, status=404)
    return web.json_response(answer)


async def consultation_recordings(request: web.Request) -> web.Response:
    actor = actor_of(request)
    consultation_id = path_id(request)
    now = request.app[CLOCK]()
    found = await in_db(request, lambda s: recordings.for_consultation(
        s, actor, consultation_id, now))
    return web.json_response({"recordings": found})


async def recording_file(request: web.Request) -> web.StreamResponse:
    actor = actor_of(request)
    artefact_id = path_id(request, "recording")
    name = _name(request)
    now = request.app[CLOCK]()
    # One audit row per viewing, not one per range request of the same <video>.
    audited = request.headers.get("Range", "bytes=0-") in ("bytes=0-", "")
    stored, mime = await in_db(request, lambda s: recordings.open_file(
        s, actor, artefact_id, name, now, audited=audited))
    return web.FileResponse(request.app[DATA_DIR] / stored, headers={
        "Content-Type": mime, "Cache-Control": "private, no-store"})


async def unclaimed(request: web.Request) -> web.Response:
    actor = actor_of(request)
    if query_text(request, "status") not in (None, "unclaimed"):
        raise InvalidRequest("status must be 'unclaimed'")
    now = request.app[CLOCK]()
    return web.json_response({"recordings": await in_db(
        request, lambda s: recordings.unclaimed(s, actor, now))})


async def attach(request: web.Request) -> web.Response:
    actor = actor_of(request)
    artefact_id = path_id(request, "recording")
    body = await json_body(request)
    consultation_id = body.get("consultation_id")
    if not isinstance(consultation_id, int) or isinstance(consultation_id, bool) \
            or not 0 < consultation_id < 10**9:
        raise InvalidRequest("consultation_id must be a consultation's id")
    now = request.app[CLOCK]()
    return web.json_response(await in_db(request, lambda s: recordings.attach(
        s, actor, artefact_id, consultation_id, now)))


async def discard(request: web.Request) -> web.Response:
    actor = actor_of(request)
    artefact_id = path_id(request, "recording")
    now = request.app[CLOCK]()
    stored = await in_db(request, lambda s: recordings.discard(s, actor, artefact_id, now))
    await asyncio.to_thread(recording_store.remove, request.app[DATA_DIR], stored)
    return web.Response(status=204)


def add_routes(app: web.Application, max_file: int = DEFAULT_MAX_RECORDING_FILE) -> None:
    app[MAX_RECORDING_FILE] = max_file
    app[FILE_LOCKS] = defaultdict(asyncio.Lock)
    app.router.add_post("/api/v1/recordings", announce)
    app.router.add_get("/api/v1/recordings", unclaimed)
    app.router.add_put("/api/v1/recordings/{recording}/files", put_file)
    app.router.add_post("/api/v1/recordings/{recording}/commit", commit)
    app.router.add_get("/api/v1/consultations/{id}/recordings", consultation_recordings)
    app.router.add_get("/api/v1/recording-files/{id}", recording_file)
    app.router.add_post("/api/v1/recording-files/{id}/attach", attach)
    app.router.add_post("/api/v1/recording-files/{id}/discard", discard)
