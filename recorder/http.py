"""HTTP access to recordings: listing, manifests, vitals, rendering and the teaching video.

API (JSON; ``Authorization: Bearer <token>``; the injected ``authorize(request, room)``
decides whether the token grants the recording's room)::

    GET  /api/v1/recordings                  the recordings the token may see, newest first
    GET  /api/v1/recordings/{id}             one recording: summary, tracks, video state
    GET  /api/v1/recordings/{id}/vitals      vitals as a time series on the video's clock
    POST /api/v1/recordings/{id}/render      render the teaching video now (202)
    POST /api/v1/recordings/{id}/playback    a playback ticket as a cookie (and a render)

The video block (``video`` in a recording, and the render/playback answers) has
``state``: "queued" (with ``position``, 1 = next), "rendering" (with ``progress`` 0..1,
``eta`` seconds or null, ``segments``: the HLS playlist lists segments, so a page can
play while the render goes on), "ready", "failed", "none" or "unfinished". Renders
share one queue (``VodRenderer``): rooms that close join its back, a page asking moves
its recording to the front.

Media (cookie ``hz_vod``, never a token in the URL: URLs end up in access logs)::

    GET  /recordings/{id}/teaching.mp4       fragmented MP4, HTTP Range (206)
    GET  /recordings/{id}/hls/index.m3u8     HLS playlist, its init.mp4 and segments
                                             (while rendering: the EVENT playlist so far)

A ``<video>`` element cannot send an Authorization header, so the page first POSTs
``playback`` with its Bearer token; the answer sets an HttpOnly, SameSite=Strict
cookie whose Path is ``/recordings/{id}/``, holding a ticket that names the recording
and expires after ``ticket_ttl`` seconds: a JWT signed with a key derived from
``ticket_secret`` (``recorder.playback_tickets``). Media requests are served only with a
valid ticket for that id; the page renews it while it plays.

Errors: 401 (with ``WWW-Authenticate``) for a missing credential and for one that is
not valid (an expired or forged token or ticket: ``error="invalid_token"``), on every
route, the list included; 403 for a valid one that does not open this recording. A
request for several byte ranges gets the whole file (200).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import hdrs, web

from recorder.library import RecordingLibrary, RecordingSummary
from recorder.playback_tickets import TICKET_TTL, PlaybackTickets
from recorder.vod import (
    HLS_DIR,
    HLS_PLAYLIST,
    MP4,
    RENDER_JSON,
    VITALS_JSON,
    VOD_DIR,
    vitals_document,
)
from recorder.vod_input import Recording
from recorder.vod_progress import PROGRESS_JSON, RenderProgress, read_progress

logger = logging.getLogger(__name__)

Authorize = Callable[[web.Request, str], bool | Awaitable[bool]]
"""``authorize(request, room)``: does the request's token grant access to ``room``?
It raises ``CredentialsRejected`` when the token itself is not valid (expired, forged,
garbage): that is a 401, where a valid token for another room is a 403 (or, in the
list, a recording left out)."""


class CredentialsRejected(Exception):
    """The request's bearer token cannot be verified: answered 401, never an empty list
    (a page would say "0 recordings" where it should say "ask for a new link")."""
RenderRunner = Callable[[Path], Awaitable[None]]
"""Renders one recording directory; raises on failure."""

COOKIE = "hz_vod"
MEDIA_TYPES = {".mp4": "video/mp4", ".m4s": "video/iso.segment", ".ts": "video/mp2t",
               ".m3u8": "application/vnd.apple.mpegurl"}
_HLS_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}\.(m3u8|m4s|mp4|ts)$")
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer"}


async def render_in_subprocess(directory: Path, labels: Mapping[str, str] | None = None,
                               nice: int = 10) -> None:
    """``python -m recorder.vod DIR`` at a lower CPU priority (``nice``): rendering never
    competes with the media server's event loop for the GIL, and the kernel gives live
    rooms the CPU first. ``labels``: the overlay's words
    (recorder.vod_overlay.DEFAULT_LABELS when None)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    extra = ["--labels", json.dumps(dict(labels), ensure_ascii=False)] if labels else []
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "recorder.vod", str(directory), "--nice", str(nice), *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    try:
        stdout, stderr = await process.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        tail = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"render exited with {process.returncode}: {tail[0]}")
    logger.info("vod %s: rendered %s", directory.name, stdout.decode(errors="replace").strip())


@dataclass(frozen=True)
class SubprocessRunner:
    """Renders out of process (``render_in_subprocess``) with the overlay's words in
    ``labels``: the composition root passes them from the message catalogue, in the
    video's language."""

    labels: Mapping[str, str]
    nice: int = 10

    async def __call__(self, directory: Path) -> None:
        await render_in_subprocess(directory, self.labels, self.nice)


def subprocess_runner(labels: Mapping[str, str], nice: int = 10) -> SubprocessRunner:
    return SubprocessRunner(dict(labels), nice)


@dataclass
class VodRenderer:
    """One queue of teaching-video renders, ``concurrency`` at a time, never the same
    recording twice at once. Renders started when a room closes (``background``) join
    the back of the queue; a page asking (``ensure``) joins a render already running,
    or moves its recording to the front."""

    runner: RenderRunner = render_in_subprocess
    concurrency: int = 1
    on_ready: Callable[[Path], None] | None = None
    """Told each recording directory whose teaching video is now ready (the app hands
    the new files off to the records service)."""
    _running: dict[Path, asyncio.Task[None]] = field(default_factory=dict)
    _queued: list[Recording] = field(default_factory=list)
    _finished: dict[Path, asyncio.Event] = field(default_factory=dict)
    _failed: set[Path] = field(default_factory=set)
    _closed: bool = False

    def state(self, recording: Recording) -> str:
        """"ready", "rendering", "queued", "failed", "none" (not rendered) or
        "unfinished"."""
        directory = recording.directory
        if directory in self._running:
            return "rendering"
        if any(r.directory == directory for r in self._queued):
            return "queued"
        if (directory / VOD_DIR / RENDER_JSON).is_file():
            return "ready"
        if directory in self._failed:
            return "failed"
        return "none" if recording.finished else "unfinished"

    def progress(self, recording: Recording) -> RenderProgress | None:
        """How far a running render has come (its ``vod/progress.json``)."""
        if recording.directory not in self._running:
            return None
        return read_progress(recording.directory / VOD_DIR / PROGRESS_JSON)

    def ensure(self, recording: Recording, retry: bool = False) -> str:
        """Asked for by a page: render now, before the background queue, unless it is
        ready, running, unfinished (or failed and not ``retry``); returns the state."""
        state = self.state(recording)
        if state == "queued":
            self._queued = [r for r in self._queued if r.directory != recording.directory]
            self._queued.insert(0, recording)
        elif state == "none" or (state == "failed" and retry):
            self._enqueue(recording, front=True)
        else:
            return state
        self._pump()
        return self.state(recording)

    def background(self, recording: Recording) -> str:
        """Queue a render behind the others (a room closed); returns the state."""
        state = self.state(recording)
        if state == "none":
            self._enqueue(recording, front=False)
            self._pump()
        return self.state(recording)

    def queued(self) -> list[str]:
        """Ids waiting for a slot, next first."""
        return [r.id for r in self._queued]

    async def wait(self, recording: Recording) -> None:
        event = self._finished.get(recording.directory)
        if event is not None:
            await event.wait()

    def _enqueue(self, recording: Recording, front: bool) -> None:
        if self._closed:
            return
        self._failed.discard(recording.directory)
        self._finished[recording.directory] = asyncio.Event()
        self._queued.insert(0 if front else len(self._queued), recording)

    def _pump(self) -> None:
        while self._queued and len(self._running) < max(1, self.concurrency):
            recording = self._queued.pop(0)
            task = asyncio.get_running_loop().create_task(
                self._render(recording), name=f"vod-render-{recording.id}")
            self._running[recording.directory] = task

    async def _render(self, recording: Recording) -> None:
        started = time.monotonic()
        try:
            await self.runner(recording.directory)
        except Exception as exc:
            self._failed.add(recording.directory)
            logger.warning("vod %s: render failed: %s", recording.id, exc)
        else:
            logger.info("vod %s: ready after %.1f s", recording.id, time.monotonic() - started)
            if self.on_ready is not None:
                try:
                    self.on_ready(recording.directory)
                except Exception:
                    logger.exception("vod %s: ready hook failed", recording.id)
        finally:
            self._running.pop(recording.directory, None)
            event = self._finished.pop(recording.directory, None)
            if event is not None:
                event.set()
            if not self._closed:
                self._pump()

    async def close(self) -> None:
        self._closed = True
        for recording in self._queued:
            event = self._finished.pop(recording.directory, None)
            if event is not None:
                event.set()
        self._queued.clear()
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class RecordingService:
    library: RecordingLibrary
    authorize: Authorize
    tickets: PlaybackTickets
    renderer: VodRenderer
    secure_cookies: bool = False
    """Always mark the cookie Secure (behind a TLS-terminating proxy); it is also Secure
    whenever the request itself came over TLS."""
    clock: Callable[[], float] = time.time


RECORDINGS = web.AppKey("recordings", RecordingService)


def setup_recording_routes(app: web.Application, recordings_dir: Path, authorize: Authorize,
                           ticket_secret: str | bytes, *, ticket_ttl: float = TICKET_TTL,
                           renderer: VodRenderer | None = None,
                           secure_cookies: bool = False) -> RecordingService:
    """Add the recordings API and media routes to ``app``; returns the service."""
    service = RecordingService(RecordingLibrary(recordings_dir), authorize,
                               PlaybackTickets(ticket_secret, ticket_ttl),
                               renderer or VodRenderer(), secure_cookies)
    app[RECORDINGS] = service

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        yield
        await service.renderer.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/api/v1/recordings", list_recordings)
    app.router.add_get("/api/v1/recordings/{id}", get_recording)
    app.router.add_get("/api/v1/recordings/{id}/vitals", get_vitals)
    app.router.add_post("/api/v1/recordings/{id}/render", start_render)
    app.router.add_post("/api/v1/recordings/{id}/playback", start_playback)
    app.router.add_get("/recordings/{id}/teaching.mp4", get_mp4)
    app.router.add_get("/recordings/{id}/hls/{name}", get_hls)
    return service


# ----------------------------------------------------------------------------- API


async def _allowed(request: web.Request, room: str) -> bool:
    try:
        verdict = request.app[RECORDINGS].authorize(request, room)
        if inspect.isawaitable(verdict):
            verdict = await verdict
    except CredentialsRejected:
        raise _rejected() from None
    return bool(verdict)


def _unauthorized(message: str = "a bearer token is required",
                  invalid: bool = False) -> web.HTTPUnauthorized:
    challenge = 'Bearer realm="recordings"' + (', error="invalid_token"' if invalid else "")
    return web.HTTPUnauthorized(text=json.dumps({"error": message}),
                                content_type="application/json",
                                headers={"WWW-Authenticate": challenge, **NO_STORE})


def _rejected() -> web.HTTPUnauthorized:
    return _unauthorized("the token is expired or not valid: ask for a new link",
                         invalid=True)


def _require_credentials(request: web.Request) -> None:
    if not request.headers.get("Authorization", "").startswith("Bearer "):
        raise _unauthorized()


async def _authorized_recording(request: web.Request) -> Recording:
    """The recording of the URL, if the request's token grants its room (else 401/403/404)."""
    _require_credentials(request)
    service = request.app[RECORDINGS]
    recording = await asyncio.to_thread(service.library.get, request.match_info["id"])
    if recording is None:
        raise _error(web.HTTPNotFound, "no such recording")
    if not await _allowed(request, recording.room):
        raise _error(web.HTTPForbidden, "this token does not grant access to the recording")
    return recording


def _error(kind: type[web.HTTPException], message: str) -> web.HTTPException:
    return kind(text=json.dumps({"error": message}), content_type="application/json",
                headers=NO_STORE)


def _json(body: object, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, headers=NO_STORE)


def _urls(recording_id: str) -> dict[str, str]:
    base = f"/recordings/{recording_id}/"
    return {"media": base + MP4, "hls": f"{base}{HLS_DIR}/index.m3u8",
            "vitals": f"/api/v1/recordings/{recording_id}/vitals"}


def _video(renderer: VodRenderer, recording: Recording) -> dict[str, Any]:
    """The video block: state, URLs, and while rendering ``progress`` (0..1), ``eta``
    (seconds, null until known) and ``segments`` (whether the HLS playlist already
    lists segments: the page can start playing); while queued, ``position`` (1: next)."""
    state = renderer.state(recording)
    video: dict[str, Any] = {"state": state, **_urls(recording.id)}
    if state == "rendering":
        progress = renderer.progress(recording)
        video["progress"] = progress.fraction if progress is not None else 0.0
        video["eta"] = None if progress is None or progress.eta is None else round(progress.eta)
        video["segments"] = _playlist_has_segments(
            recording.directory / VOD_DIR / HLS_DIR / HLS_PLAYLIST)
    elif state == "queued":
        queued = renderer.queued()
        video["position"] = queued.index(recording.id) + 1 if recording.id in queued else 1
    elif state == "ready":
        video["progress"] = 1.0
    return video


def _playlist_has_segments(playlist: Path) -> bool:
    try:
        with playlist.open("rb") as file:
            return b"#EXTINF" in file.read(4096)
    except OSError:
        return False


async def list_recordings(request: web.Request) -> web.Response:
    _require_credentials(request)
    service = request.app[RECORDINGS]
    summaries = await asyncio.to_thread(service.library.summaries)
    visible: list[RecordingSummary] = []
    allowed_rooms: dict[str, bool] = {}
    for summary in summaries:
        if not summary.room:
            continue  # still being written: no manifest, no room to authorise against
        if summary.room not in allowed_rooms:
            allowed_rooms[summary.room] = await _allowed(request, summary.room)
        if allowed_rooms[summary.room]:
            visible.append(summary)
    return _json({"recordings": [s.to_json() for s in visible]})


async def get_recording(request: web.Request) -> web.Response:
    recording = await _authorized_recording(request)
    service = request.app[RECORDINGS]
    summary = await asyncio.to_thread(service.library.summary, recording.id)
    body: dict[str, Any] = summary.to_json() if summary else {"id": recording.id}
    body["tracks"] = [{"id": t.id, "kind": t.kind, "codec": t.codec, "duration": t.duration,
                       "startMs": t.start_ms, "participant": t.participant, "role": t.role}
                      for t in recording.tracks]
    body["video"] = _video(service.renderer, recording)
    return _json(body)


async def get_vitals(request: web.Request) -> web.StreamResponse:
    recording = await _authorized_recording(request)
    rendered = recording.directory / VOD_DIR / VITALS_JSON
    if rendered.is_file():
        return web.FileResponse(rendered, headers={**NO_STORE,
                                                   "Content-Type": "application/json"})
    # Not rendered yet: the same document, computed now (no media is decoded).
    document = await asyncio.to_thread(vitals_document, recording)
    return _json(document)


async def start_render(request: web.Request) -> web.Response:
    recording = await _authorized_recording(request)
    if not recording.finished:
        raise _error(web.HTTPConflict, "the recording is not finished")
    renderer = request.app[RECORDINGS].renderer
    renderer.ensure(recording, retry=True)
    video = _video(renderer, recording)
    return _json(video, status=200 if video["state"] == "ready" else 202)


async def start_playback(request: web.Request) -> web.Response:
    recording = await _authorized_recording(request)
    service = request.app[RECORDINGS]
    service.renderer.ensure(recording)
    now = service.clock()
    ticket = service.tickets.issue(recording.id, now)
    response = _json({**_video(service.renderer, recording),
                      "ticketExpiresIn": service.tickets.ttl})
    response.set_cookie(COOKIE, ticket, path=f"/recordings/{recording.id}/",
                        max_age=int(service.tickets.ttl), httponly=True, samesite="Strict",
                        secure=service.secure_cookies or request.secure)
    logger.info("recording %s: playback ticket issued", recording.id)
    return response


# ----------------------------------------------------------------------------- media


async def get_mp4(request: web.Request) -> web.StreamResponse:
    return await _media(request, MP4)


async def get_hls(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if not _HLS_NAME.match(name):
        raise _error(web.HTTPNotFound, "no such file")
    return await _media(request, f"{HLS_DIR}/{name}")


async def _media(request: web.Request, relative: str) -> web.StreamResponse:
    service = request.app[RECORDINGS]
    recording_id = request.match_info["id"]
    opens = service.tickets.recording_of(request.cookies.get(COOKIE), service.clock())
    if opens is None:
        # Missing, expired or forged: a new one comes from
        # POST /api/v1/recordings/{id}/playback with the bearer token.
        raise _unauthorized("no valid playback ticket: ask for playback again",
                            invalid=COOKIE in request.cookies)
    if opens != recording_id:
        raise _error(web.HTTPForbidden, "the playback ticket is for another recording")
    directory = service.library.path(recording_id)
    if directory is None:
        raise _error(web.HTTPNotFound, "no such recording")
    path = directory / VOD_DIR / relative
    if not path.is_file():
        if not (directory / VOD_DIR / RENDER_JSON).is_file():
            recording = await asyncio.to_thread(service.library.get, recording_id)
            if recording is not None and recording.finished:
                service.renderer.ensure(recording)  # lazily, for a ticket from before a purge
                raise web.HTTPServiceUnavailable(headers={"Retry-After": "5", **NO_STORE})
        raise _error(web.HTTPNotFound, "no such file")
    content_type = MEDIA_TYPES.get(path.suffix, "application/octet-stream")
    # FileResponse answers Range / If-Range with 206 + Content-Range (or 416).
    response = web.FileResponse(path, headers={"Content-Type": content_type,
                                               "Cache-Control": "private, no-store",
                                               "X-Content-Type-Options": "nosniff"})
    if "," in request.headers.get(hdrs.RANGE, ""):
        # Several ranges: aiohttp would answer 416. RFC 9110 lets a server ignore Range
        # and send the whole file (200), which every player handles.
        whole = request.clone(headers={
            name: value for name, value in request.headers.items()
            if name.lower() not in ("range", "if-range")})
        await response.prepare(whole)
    return response


__all__ = ["COOKIE", "RECORDINGS", "Authorize", "CredentialsRejected", "PlaybackTickets",
           "RecordingService",
           "SubprocessRunner", "VodRenderer", "render_in_subprocess", "setup_recording_routes",
           "subprocess_runner"]
