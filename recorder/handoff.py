"""Hand-off of finished recordings to the consultation records service, over HTTP: the
recording's bytes, not its paths (protocol: ``contracts.handoff``), so the two services may
run on different machines with different data directories.

For each recording, one announcement is built once (the manifest, and each file's name,
mime type, size and SHA-256: ``manifest.json``, the tracks, the timeline, and the teaching
video's ``vod/`` files present at that time) and stored as ``handoff-request.json``. It is
POSTed to the configured URL with ``Idempotency-Key: <recording id>``; the service answers
which files it still needs and from which offset, each is PUT from there (streamed from
disk in chunks, never read whole), then the recording is committed. A hand-off ends in a
state (``outcome`` of the answers): ``delivered``; ``unclaimed`` (the service keeps the
files but no consultation owns the room: for an admin to attach or discard); ``rejected``
(401/403, or another 4xx: the same request would be refused again, or a file failed its
SHA-256 check twice; logged once as an error). Only transient failures (network, timeouts,
5xx, 408, 425, 429) are retried, with exponential backoff; a retry starts over with the
announcement, so an interrupted upload resumes at the offset the service holds. The state
(``handoff.json``: pending, delivered, unclaimed or rejected, attempts, the last answer) is
kept beside the recording; a restarted service resumes what is pending or rejected (an
operator may have fixed the token or the URL), never an unclaimed one.

The tracks' and the timeline's sizes and digests are the manifest's, computed once when the
recording ended; only ``manifest.json`` (which no manifest can describe) and the ``vod/``
files are hashed here. What the hand-off checks of the tracks is cheap: their size on disk.
A file whose size is no longer the manifest's (rewritten or truncated after the recording
ended) is reported: a warning, its entry describes the bytes now on disk (hashed again),
and its name is listed in ``changed`` beside the manifest, which keeps what was recorded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from contracts.handoff import (
    CHECKSUM_MISMATCH_CODE,
    FILES_MISSING_CODE,
    OFFSET_MISMATCH_CODE,
    UNCLAIMED_ROOM_CODE,
    content_range,
    valid_file_name,
)
from recorder.manifest import (
    MANIFEST_FILE,
    Manifest,
    file_digest,
    iso_utc,
    load_manifest,
    read_json,
    write_json_atomic,
)

logger = logging.getLogger(__name__)

HANDOFF_STATE_FILE = "handoff.json"
HANDOFF_REQUEST_FILE = "handoff-request.json"
RETRIED_STATUSES = frozenset({408, 425, 429})
RESUMED_STATES = frozenset({"pending", "rejected"})


def outcome(status: int | None, code: str | None = None) -> str:
    """What an answer to a hand-off means: ``delivered``, ``unclaimed``, ``rejected``
    or ``retry``. ``status`` None: no answer (network error, timeout)."""
    if status is None or status >= 500 or status in RETRIED_STATUSES:
        return "retry"
    if status == 409 and code in (OFFSET_MISMATCH_CODE, FILES_MISSING_CODE):
        return "retry"  # the service's view moved on (another upload, a lost answer)
    if 200 <= status < 300:
        return "delivered"
    if status == 404 and code == UNCLAIMED_ROOM_CODE:
        return "unclaimed"
    if 400 <= status < 500:
        return "rejected"
    return "retry"  # 1xx, 3xx: not an answer this client expects


@dataclass(frozen=True)
class RetryPolicy:
    initial: float = 1.0  # seconds before the first retry
    maximum: float = 60.0  # longest wait between attempts
    factor: float = 2.0
    timeout: float = 30.0  # per request

    def delays(self) -> Iterator[float]:
        delay = self.initial
        while True:
            yield delay
            delay = min(delay * self.factor, self.maximum)


@dataclass(frozen=True)
class Artefact:
    """One file handed off, and what the manifest says of it (None: hashed here)."""

    file: str
    mime_type: str
    recorded: tuple[int, str] | None  # (bytes, sha256) from the manifest

    def entry(self, root: Path) -> dict[str, Any]:
        """Its entry in the announcement: the manifest's size and digest while the size on
        disk is still the manifest's, else (and for the other files) those of the bytes on
        disk."""
        path = root / self.file
        if self.recorded is not None and path.stat().st_size == self.recorded[0]:
            size, digest = self.recorded
        else:
            size, digest = file_digest(path)
        return {"file": self.file, "mime_type": self.mime_type, "bytes": size,
                "sha256": digest}


# The teaching video's files (``recorder.vod``), handed off when present; its HLS copy is
# not: the records service plays the MP4.
VOD_FILES = (("vod/teaching.mp4", "video/mp4"), ("vod/vitals.json", "application/json"),
             ("vod/render.json", "application/json"))


def artefacts_of(manifest: Manifest, directory: Path | None = None) -> list[Artefact]:
    found = [Artefact(MANIFEST_FILE, "application/json", None),
             *(Artefact(t.file, t.mime_type, (t.bytes, t.sha256)) for t in manifest.tracks),
             Artefact(manifest.timeline.file, "application/vnd.msgpack",
                      (manifest.timeline.bytes, manifest.timeline.sha256))]
    if directory is not None:
        found += [Artefact(name, mime, None) for name, mime in VOD_FILES
                  if (directory / name).is_file()]
    return found


def handoff_body(directory: Path, manifest: Manifest) -> bytes:
    """The announcement: the manifest and every file's name, type, size and digest."""
    root = directory.resolve()
    entries, changed = [], []
    for artefact in artefacts_of(manifest, root):
        entry = artefact.entry(root)
        entries.append(entry)
        if artefact.recorded is not None and entry["bytes"] != artefact.recorded[0]:
            changed.append(artefact.file)
            logger.warning("[%s] %s is %d bytes on disk, the manifest says %d: changed after "
                           "the recording ended", manifest.id, artefact.file, entry["bytes"],
                           artefact.recorded[0])
    document: dict[str, Any] = {"recording": manifest.id, "manifest": manifest.to_json(),
                                "files": entries}
    if changed:
        document["changed"] = changed
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class Answer:
    """What one exchange with the records service came to."""

    status: int | None  # HTTP status; None: no answer (network error, timeout)
    error: str | None = None  # transport error
    code: str | None = None  # the answer's error code
    document: Any = None  # the answer's JSON


async def read_chunks(path: Path, offset: int, chunk: int = 256 * 1024
                      ) -> AsyncIterator[bytes]:
    """The file's bytes from ``offset``, one chunk in memory at a time."""
    handle = await asyncio.to_thread(open, path, "rb")
    try:
        await asyncio.to_thread(handle.seek, offset)
        while data := await asyncio.to_thread(handle.read, chunk):
            yield data
    finally:
        await asyncio.to_thread(handle.close)


class HandoffQueue:
    """Delivers recordings to ``url``; an empty URL means recordings stay local."""

    def __init__(self, url: str, retry: RetryPolicy | None = None, token: str = "") -> None:
        self.url = url
        self.token = token  # the records service's service token (Bearer), when it wants one
        self.retry = retry or RetryPolicy()
        self.ended: Counter[str] = Counter()  # hand-offs ended, by outcome
        self.bytes_sent = 0  # file bytes PUT to the records service
        self._session: aiohttp.ClientSession | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._refreshed: set[str] = set()  # refreshed while their hand-off was running
        self._closed = False

    @property
    def delivered(self) -> int:
        return self.ended["delivered"]

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    @property
    def pending(self) -> list[str]:
        return [key for key, task in self._tasks.items() if not task.done()]

    async def start(self) -> None:
        self._closed = False
        if self.enabled and self._session is None:
            # No total limit: a long file takes as long as it takes; a stalled one does not.
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=self.retry.timeout, sock_read=self.retry.timeout))

    async def submit(self, directory: Path, *, refresh: bool = False) -> bool:
        """Queue a finished recording (idempotent); False when hand-off is disabled.
        ``refresh``: announce its files again even if it was delivered or unclaimed (e.g.
        its teaching video was rendered since): the service asks only for what it lacks."""
        if not self.enabled:
            return False
        key = await asyncio.to_thread(self._prepare, directory, refresh)
        running = key in self._tasks and not self._tasks[key].done()
        if key is not None and running and refresh:
            self._refreshed.add(key)
        if key is not None and not running and not self._closed:
            if self._session is None:
                await self.start()
            self._tasks[key] = asyncio.create_task(self._deliver(directory, key))
        return True

    async def resume(self, recordings_dir: Path) -> int:
        """Queue every finished recording whose hand-off is pending, was rejected (the
        token or URL may have been fixed since) or never started."""
        if not self.enabled:
            return 0
        directories = await asyncio.to_thread(self._undelivered, recordings_dir)
        for directory in directories:
            await self.submit(directory)
        return len(directories)

    async def wait(self, recording_id: str) -> None:
        """Wait until a queued recording's hand-off has ended (for tests and shutdown)."""
        task = self._tasks.get(recording_id)
        if task is not None:
            await asyncio.shield(task)

    async def close(self) -> None:
        """Stop retrying (pending hand-offs stay persisted) and close the HTTP session."""
        self._closed = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ----------------------------------------------------------------- file steps (threads)

    @staticmethod
    def _undelivered(recordings_dir: Path) -> list[Path]:
        if not recordings_dir.is_dir():
            return []
        found = []
        for directory in sorted(recordings_dir.iterdir()):
            if not (directory / MANIFEST_FILE).is_file():
                continue
            state_path = directory / HANDOFF_STATE_FILE
            try:
                status = read_json(state_path).get("status") if state_path.is_file() else None
            except Exception:
                status = None
            if status is None or status in RESUMED_STATES:
                found.append(directory)
        return found

    def _prepare(self, directory: Path, refresh: bool = False) -> str | None:
        """Write the announcement and the pending state once (again with ``refresh``); the
        key, or None if done."""
        state_path = directory / HANDOFF_STATE_FILE
        request_path = directory / HANDOFF_REQUEST_FILE
        state = read_json(state_path) if state_path.is_file() else None
        if not refresh and state is not None and state.get("status") in ("delivered",
                                                                          "unclaimed"):
            return None
        if refresh or state is None or not request_path.is_file():
            manifest = load_manifest(directory)
            request_path.write_bytes(handoff_body(directory, manifest))
            state = {"status": "pending", "idempotency_key": manifest.id,
                     "attempts": state.get("attempts", 0) if state else 0,
                     "request": HANDOFF_REQUEST_FILE}
        state["url"] = self.url
        state["status"] = "pending"  # a rejected one is tried again (new token, new URL)
        write_json_atomic(state_path, state)
        return str(state["idempotency_key"])

    @staticmethod
    def _update(directory: Path, **changes: Any) -> None:
        state_path = directory / HANDOFF_STATE_FILE
        write_json_atomic(state_path, {**read_json(state_path), **changes})

    # ----------------------------------------------------------------- delivery

    async def _deliver(self, directory: Path, key: str) -> None:
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        delays = self.retry.delays()
        attempts = int((await asyncio.to_thread(
            read_json, directory / HANDOFF_STATE_FILE)).get("attempts", 0))
        while True:
            attempts += 1
            # Read each round: a refresh while this runs (a teaching video rendered since)
            # rewrites the announcement, and the next round sends it.
            self._refreshed.discard(key)
            body = await asyncio.to_thread((directory / HANDOFF_REQUEST_FILE).read_bytes)
            answer = await self._exchange(directory, key, body, headers)
            status, error, code = answer.status, answer.error, answer.code
            ended = outcome(status, code)
            if ended in ("delivered", "unclaimed") and key in self._refreshed:
                continue  # refreshed meanwhile: announce the new files too
            if ended != "retry":
                await asyncio.to_thread(self._update, directory, status=ended,
                                        attempts=attempts, last_status=status,
                                        last_error=error or code,
                                        ended_at=iso_utc(round(time.time() * 1000)))
                self.ended[ended] += 1
                if ended == "delivered":
                    logger.info("[%s] handed off after %d attempt(s)", key, attempts)
                elif ended == "unclaimed":
                    logger.warning("[%s] not handed off: no consultation owns its room; kept "
                                   "for an admin to attach or discard", key)
                else:
                    logger.error("[%s] hand-off rejected by the records service (HTTP %s%s): "
                                 "check recorder.handoff_url and recorder.handoff_token; "
                                 "it is tried again at the next start", key, status,
                                 f", {code}" if code else "")
                return
            delay = next(delays)
            logger.warning("[%s] hand-off attempt %d failed (%s); retrying in %.1f s",
                           key, attempts, error or status, delay)
            await asyncio.to_thread(self._update, directory, attempts=attempts,
                                    last_status=status, last_error=error)
            await asyncio.sleep(delay)

    async def _exchange(self, directory: Path, key: str, body: bytes,
                        headers: dict[str, str]) -> Answer:
        """One round: announce, upload what the service lacks, commit. The first answer
        that is not a success ends it."""
        answer = await self._request("POST", self.url, headers, data=body)
        if answer.status is None or not 200 <= answer.status < 300:
            return answer
        declared = {f["file"]: int(f["bytes"]) for f in json.loads(body)["files"]}
        need = answer.document.get("need") if isinstance(answer.document, dict) else None
        if not isinstance(need, list):
            return Answer(answer.status, "the announcement's answer has no 'need' list")
        base = f"{self.url.rstrip('/')}/{quote(key, safe='')}"
        resent: set[str] = set()
        for item in need:
            name = item.get("file") if isinstance(item, dict) else None
            offset = item.get("offset") if isinstance(item, dict) else None
            if not isinstance(name, str) or name not in declared or not valid_file_name(name) \
                    or not isinstance(offset, int) or not 0 <= offset <= declared[name]:
                return Answer(answer.status, f"the service asked for an unknown file: {name!r}")
            while True:
                put = await self._put(f"{base}/files", directory / name, name, offset,
                                      declared[name], headers)
                if put.code == CHECKSUM_MISMATCH_CODE and name not in resent:
                    logger.warning("[%s] %s failed the records service's SHA-256 check; "
                                   "sending it again", key, name)
                    resent.add(name)
                    offset = 0
                    continue
                break
            if put.status is None or not 200 <= put.status < 300:
                return put
            if not (isinstance(put.document, dict) and put.document.get("verified")):
                return Answer(None, f"{name}: the service holds only part of it")
        return await self._request("POST", f"{base}/commit", headers)

    async def _put(self, url: str, path: Path, name: str, offset: int, size: int,
                   headers: dict[str, str]) -> Answer:
        put_headers = {**headers, "Content-Type": "application/octet-stream",
                       "Content-Range": content_range(offset, size),
                       "Content-Length": str(size - offset)}
        put_headers.pop("Idempotency-Key", None)
        counted = self._counted(read_chunks(path, offset))
        return await self._request("PUT", url, put_headers, params={"name": name},
                                   data=counted)

    async def _counted(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self.bytes_sent += len(chunk)
            yield chunk

    async def _request(self, method: str, url: str, headers: dict[str, str], *,
                       data: Any = None, params: dict[str, str] | None = None) -> Answer:
        if self._session is None:
            return Answer(None, "no HTTP session")
        try:
            async with self._session.request(method, url, data=data, headers=headers,
                                             params=params) as response:
                raw = await response.content.read(64 * 1024)
                document = _json(raw)
                code = document.get("code") if isinstance(document, dict) else None
                return Answer(response.status, None,
                              code[:64] if isinstance(code, str) else None, document)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Answer(None, type(exc).__name__)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
