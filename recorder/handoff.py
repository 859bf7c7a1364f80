"""Hand-off of finished recordings to the consultation records service, over HTTP.

For each recording, one JSON body is built once (the manifest plus where each
artefact lies on this node) and stored as ``handoff-request.json``; it is POSTed to
the configured URL with ``Idempotency-Key: <recording id>``, the same bytes every
time. A hand-off ends in a state (``outcome``): ``delivered`` (2xx); ``unclaimed``
(the service says no consultation owns the room: the recording is kept for an admin
to attach or discard); ``rejected`` (401/403, or another 4xx: the same bytes would be
refused again; logged once as an error). Only transient failures (network, timeouts,
5xx, 408, 425, 429) are retried, with exponential backoff. The state (``handoff.json``:
pending, delivered, unclaimed or rejected, attempts, the last answer) is kept beside
the recording; a restarted service resumes what is pending or rejected (an operator
may have fixed the token or the URL), never an unclaimed one. The artefacts themselves are not
uploaded: the body carries their local paths, sizes and SHA-256 digests.

The tracks' and the timeline's sizes and digests are the manifest's, computed once when the
recording ended; only ``manifest.json`` (which no manifest can describe) is hashed here.
What the hand-off checks of those files is cheap: their size on disk. A file whose size is
no longer the manifest's (rewritten or truncated after the recording ended) is reported: a
warning, its entry describes the bytes now on disk (hashed again), and its name is listed
in ``artefacts.changed`` beside the manifest, which keeps what was recorded. A change that
keeps the size is left to whoever verifies the digests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from contracts.handoff import UNCLAIMED_ROOM_CODE
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
    """One file handed off, and what the manifest says of it (None: the manifest itself)."""

    file: str
    mime_type: str
    recorded: tuple[int, str] | None  # (bytes, sha256) from the manifest

    def entry(self, root: Path) -> dict[str, Any]:
        """Its entry in the body: the manifest's size and digest while the size on disk is
        still the manifest's, else (and for manifest.json) those of the bytes on disk."""
        path = root / self.file
        if self.recorded is not None and path.stat().st_size == self.recorded[0]:
            size, digest = self.recorded
        else:
            size, digest = file_digest(path)
        return {"file": self.file, "path": str(path), "mime_type": self.mime_type,
                "bytes": size, "sha256": digest}


def artefacts_of(manifest: Manifest) -> list[Artefact]:
    return [Artefact(MANIFEST_FILE, "application/json", None),
            *(Artefact(t.file, t.mime_type, (t.bytes, t.sha256)) for t in manifest.tracks),
            Artefact(manifest.timeline.file, "application/vnd.msgpack",
                     (manifest.timeline.bytes, manifest.timeline.sha256))]


def handoff_body(directory: Path, manifest: Manifest) -> bytes:
    """The request body: the manifest and the local location of every artefact."""
    root = directory.resolve()
    entries, changed = [], []
    for artefact in artefacts_of(manifest):
        entry = artefact.entry(root)
        entries.append(entry)
        if artefact.recorded is not None and entry["bytes"] != artefact.recorded[0]:
            changed.append(artefact.file)
            logger.warning("[%s] %s is %d bytes on disk, the manifest says %d: changed after "
                           "the recording ended", manifest.id, artefact.file, entry["bytes"],
                           artefact.recorded[0])
    artefacts: dict[str, Any] = {"transfer": "local-path", "host": socket.gethostname(),
                                 "directory": str(root), "files": entries}
    if changed:
        artefacts["changed"] = changed
    document = {"recording": manifest.id, "manifest": manifest.to_json(),
                "artefacts": artefacts}
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


class HandoffQueue:
    """Delivers recordings to ``url``; an empty URL means recordings stay local."""

    def __init__(self, url: str, retry: RetryPolicy | None = None, token: str = "") -> None:
        self.url = url
        self.token = token  # the records service's service token (Bearer), when it wants one
        self.retry = retry or RetryPolicy()
        self.ended: Counter[str] = Counter()  # hand-offs ended, by outcome
        self._session: aiohttp.ClientSession | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
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
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.retry.timeout))

    async def submit(self, directory: Path) -> bool:
        """Queue a finished recording (idempotent); False when hand-off is disabled."""
        if not self.enabled:
            return False
        key = await asyncio.to_thread(self._prepare, directory)
        if key is not None and key not in self._tasks and not self._closed:
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

    def _prepare(self, directory: Path) -> str | None:
        """Write the request body and the pending state once; the key, or None if done."""
        state_path = directory / HANDOFF_STATE_FILE
        request_path = directory / HANDOFF_REQUEST_FILE
        state = read_json(state_path) if state_path.is_file() else None
        if state is not None and state.get("status") in ("delivered", "unclaimed"):
            return None
        if state is None or not request_path.is_file():
            manifest = load_manifest(directory)
            request_path.write_bytes(handoff_body(directory, manifest))
            state = {"status": "pending", "idempotency_key": manifest.id, "attempts": 0,
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
        body = await asyncio.to_thread((directory / HANDOFF_REQUEST_FILE).read_bytes)
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        delays = self.retry.delays()
        attempts = int((await asyncio.to_thread(
            read_json, directory / HANDOFF_STATE_FILE)).get("attempts", 0))
        while True:
            attempts += 1
            status, error, code = await self._post(body, headers)
            ended = outcome(status, code)
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

    async def _post(self, body: bytes, headers: dict[str, str]
                    ) -> tuple[int | None, str | None, str | None]:
        """(HTTP status, transport error, the answer's error ``code`` if it gave one)."""
        if self._session is None:
            return None, "no HTTP session", None
        try:
            async with self._session.post(self.url, data=body, headers=headers) as response:
                answer = await response.content.read(64 * 1024)
                return response.status, None, _error_code(answer)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return None, type(exc).__name__, None


def _error_code(answer: bytes) -> str | None:
    """The ``code`` of a JSON error answer (``{"error": ..., "code": ...}``), if any."""
    try:
        document = json.loads(answer)
    except ValueError:
        return None
    code = document.get("code") if isinstance(document, dict) else None
    return code[:64] if isinstance(code, str) else None
