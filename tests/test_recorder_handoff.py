"""Hand-off to the records service: retried until a 2xx, idempotent, resumed after a restart."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from contracts.handoff import UNCLAIMED_ROOM_CODE, parse_content_range
from mediaserver import MediaConfig, MediaServer
from recorder import manifest as manifest_module
from recorder.handoff import (
    HANDOFF_REQUEST_FILE,
    HANDOFF_STATE_FILE,
    HandoffQueue,
    RetryPolicy,
    handoff_body,
    outcome,
)
from recorder.manifest import Manifest, read_json
from recorder.service import RecorderService
from recorder.session_recorder import SessionRecorder
from tests.conftest import free_port
from tests.fakes import Member
from tests.peers import wait_for
from tests.recorder_child import publish

FAST = RetryPolicy(initial=0.05, maximum=0.2, timeout=5)


class RecordsService:
    """A stand-in for the consultation records service speaking the upload protocol
    (``contracts.handoff``): fails the first ``failures`` announcements."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests: list[tuple[str | None, bytes]] = []  # the announcements
        # Set by a test: the (status, JSON body) every announcement gets instead.
        self.answer: tuple[int, dict[str, str]] | None = None
        self.declared: dict[str, dict[str, object]] = {}
        self.held: dict[str, bytearray] = {}
        self.verified: set[str] = set()
        self.commits = 0

    async def announce(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((request.headers.get("Idempotency-Key"), body))
        if self.answer is not None:
            return web.json_response(self.answer[1], status=self.answer[0])
        if len(self.requests) <= self.failures:
            return web.Response(status=500)
        self.declared = {f["file"]: f for f in json.loads(body)["files"]}
        need = [{"file": name, "offset": len(self.held.get(name, b""))}
                for name in self.declared if name not in self.verified]
        return web.json_response({"need": need}, status=201)

    async def put(self, request: web.Request) -> web.Response:
        name = request.query["name"]
        first, _, size = parse_content_range(request.headers["Content-Range"]) or (0, 0, 0)
        held = self.held.setdefault(name, bytearray())
        assert first == len(held)
        held += await request.read()
        entry = self.declared[name]
        if len(held) == size:
            if hashlib.sha256(held).hexdigest() != entry["sha256"]:
                del self.held[name]
                return web.json_response({"code": "checksum-mismatch"}, status=422)
            self.verified.add(name)
        return web.json_response({"file": name, "offset": len(held),
                                  "verified": name in self.verified})

    async def commit(self, request: web.Request) -> web.Response:
        self.commits += 1
        return web.json_response({"status": "attached"})


@contextlib.asynccontextmanager
async def serving_records(service: RecordsService) -> AsyncIterator[str]:
    """``service`` on a loopback port; yields its hand-off URL."""
    app = web.Application()
    app.router.add_post("/recordings", service.announce)
    app.router.add_put("/recordings/{id}/files", service.put)
    app.router.add_post("/recordings/{id}/commit", service.commit)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/recordings"
    finally:
        await runner.cleanup()


@pytest.fixture
async def records() -> AsyncIterator[tuple[RecordsService, str]]:
    service = RecordsService(failures=2)
    async with serving_records(service) as url:
        yield service, url


async def finished_recording(directory: Path) -> tuple[Path, Manifest]:
    """A short, finished recording (a room with one participant and no media)."""
    server = MediaServer(MediaConfig())
    room = server.room("bed-3")
    recorder = SessionRecorder(room, directory)
    recorder.start()
    room.join("Nurse Li", "ward", Member())
    manifest = await recorder.stop()
    await server.close()
    return recorder.path, manifest


async def test_retries_until_accepted_with_the_same_key_and_body(tmp_path, records):
    service, url = records
    path, manifest = await finished_recording(tmp_path)
    queue = HandoffQueue(url, FAST)
    assert await queue.submit(path)
    await asyncio.wait_for(queue.wait(manifest.id), 10)
    await queue.close()
    assert len(service.requests) == 3  # 500, 500, then 201
    assert {key for key, _ in service.requests} == {manifest.id}
    assert len({body for _, body in service.requests}) == 1
    body = json.loads(service.requests[0][1])
    assert body["recording"] == manifest.id and body["manifest"] == manifest.to_json()
    files = {a["file"]: a for a in body["files"]}
    assert set(files) == {"manifest.json", "timeline.msgpack"}
    assert "path" not in files["timeline.msgpack"]  # bytes travel, not paths
    # The service received the very bytes, verified.
    assert service.verified == set(files) and service.commits == 1
    assert bytes(service.held["timeline.msgpack"]) == (path / "timeline.msgpack").read_bytes()
    state = read_json(path / HANDOFF_STATE_FILE)
    assert state["status"] == "delivered" and state["attempts"] == 3
    # Submitting a delivered recording again sends nothing.
    queue = HandoffQueue(url, FAST)
    await queue.submit(path)
    assert queue.pending == []
    await queue.close()


async def test_a_pending_hand_off_resumes_after_a_restart(tmp_path, records):
    service, url = records
    service.failures = 1000  # the records service is down
    path, manifest = await finished_recording(tmp_path)
    queue = HandoffQueue(url, FAST)
    await queue.submit(path)
    await wait_for(lambda: len(service.requests) >= 2, 10)
    await queue.close()  # the server shuts down with the hand-off pending
    state = read_json(path / HANDOFF_STATE_FILE)
    assert state["status"] == "pending" and state["attempts"] >= 1
    body = (path / HANDOFF_REQUEST_FILE).read_bytes()

    service.failures = 0  # back up; a new server process resumes
    service.requests.clear()
    restarted = HandoffQueue(url, FAST)
    assert await restarted.resume(tmp_path) == 1
    await asyncio.wait_for(restarted.wait(manifest.id), 10)
    await restarted.close()
    assert service.requests == [(manifest.id, body)]
    assert read_json(path / HANDOFF_STATE_FILE)["status"] == "delivered"


async def test_no_url_means_no_hand_off(tmp_path):
    path, _ = await finished_recording(tmp_path)
    queue = HandoffQueue("")
    assert not await queue.submit(path) and await queue.resume(tmp_path) == 0
    assert not (path / HANDOFF_STATE_FILE).exists()
    await queue.close()


async def test_the_service_records_every_room_and_hands_it_off(tmp_path, records):
    service, url = records
    service.failures = 0
    server = MediaServer(MediaConfig())
    recorder_service = RecorderService(server.directory, tmp_path, url, retry=FAST)
    await recorder_service.start()
    rooms = [server.room(name) for name in ("icu-1", "icu-2")]
    assert all(recorder_service.recorder_for(room.name) for room in rooms)
    for room in rooms:
        ward = room.join("Nurse", "ward", Member())
        room.leave(ward)  # only the recorder left: the room closes itself
    await wait_for(lambda: len(service.requests) == 2, 10)
    await recorder_service.stop()
    await server.close()
    keys = {key for key, _ in service.requests}
    manifests = {json.loads(body)["manifest"]["room"] for _, body in service.requests}
    assert manifests == {"icu-1", "icu-2"} and len(keys) == 2
    assert recorder_service.recorders == {}


def count_digests(monkeypatch: pytest.MonkeyPatch) -> Counter[Path]:
    """Count the SHA-256 passes over each file, wherever the recorder computes one."""
    counted: Counter[Path] = Counter()
    original = manifest_module.file_digest

    def counting(path: Path) -> tuple[int, str]:
        counted[Path(path).resolve()] += 1
        return original(path)

    for name, module in list(sys.modules.items()):
        if name.split(".")[0] == "recorder" and getattr(module, "file_digest", None) is original:
            monkeypatch.setattr(module, "file_digest", counting)
    return counted


async def test_each_file_is_hashed_once_from_recording_to_hand_off(tmp_path, records,
                                                                   monkeypatch):
    service, url = records
    service.failures = 0
    hashed = count_digests(monkeypatch)
    server = MediaServer(MediaConfig(ice_addresses=("127.0.0.1",)))
    room = server.room("bed-9")
    recorder = SessionRecorder(room, tmp_path)
    recorder.start()
    _, pc, publication, _ = await publish(room)
    await wait_for(lambda: all(p.packets_received > 20 for p in publication.producers), 30)
    manifest = await recorder.stop()
    await pc.close()
    await server.close()
    queue = HandoffQueue(url, FAST)
    assert await queue.submit(recorder.path)
    await asyncio.wait_for(queue.wait(manifest.id), 10)
    await queue.close()

    root = recorder.path.resolve()
    tracks = {t.file for t in manifest.tracks}
    assert len(tracks) == 2  # VP8 and Opus
    assert {p.relative_to(root).as_posix(): n for p, n in hashed.items()} == {
        **dict.fromkeys(tracks, 1), "timeline.msgpack": 1, "manifest.json": 1}
    body = json.loads(service.requests[0][1])
    files = {f["file"]: f for f in body["files"]}
    for track in manifest.tracks:
        assert (files[track.file]["bytes"], files[track.file]["sha256"]) == (
            track.bytes, track.sha256)
        assert track.sha256 == hashlib.sha256((root / track.file).read_bytes()).hexdigest()
    assert files["manifest.json"]["sha256"] == hashlib.sha256(
        (root / "manifest.json").read_bytes()).hexdigest()
    assert "changed" not in body
    for track in manifest.tracks:  # and the tracks' bytes arrived, each read once to hash
        assert bytes(service.held[track.file]) == (root / track.file).read_bytes()


async def test_a_file_changed_after_the_manifest_is_reported(tmp_path, caplog):
    path, manifest = await finished_recording(tmp_path)
    timeline = path / manifest.timeline.file
    with open(timeline, "ab") as file:
        file.write(b"\x00" * 7)  # rewritten after the recording ended
    with caplog.at_level(logging.WARNING, logger="recorder.handoff"):
        body = json.loads(handoff_body(path, manifest))
    assert body["changed"] == ["timeline.msgpack"]
    entry = next(f for f in body["files"] if f["file"] == "timeline.msgpack")
    now_on_disk = timeline.read_bytes()
    assert entry["bytes"] == manifest.timeline.bytes + 7 == len(now_on_disk)
    assert entry["sha256"] == hashlib.sha256(now_on_disk).hexdigest()
    # The manifest in the body keeps what was recorded.
    assert body["manifest"]["timeline"]["sha256"] == manifest.timeline.sha256
    assert [r.getMessage() for r in caplog.records] == [
        f"[{manifest.id}] timeline.msgpack is {len(now_on_disk)} bytes on disk, the manifest "
        f"says {manifest.timeline.bytes}: changed after the recording ended"]


@pytest.mark.parametrize(("status", "code", "expected"), [
    (201, None, "delivered"), (200, None, "delivered"),
    (404, UNCLAIMED_ROOM_CODE, "unclaimed"),
    (401, "unauthenticated", "rejected"), (403, None, "rejected"),
    (400, "invalid-request", "rejected"), (413, None, "rejected"),
    (404, "not-found", "rejected"),  # a wrong URL: an operator's to fix, not a retry
    (None, None, "retry"), (500, None, "retry"), (503, "unavailable", "retry"),
    (408, None, "retry"), (429, None, "retry"), (302, None, "retry"),
])
def test_what_each_answer_means(status: int | None, code: str | None, expected: str) -> None:
    assert outcome(status, code) == expected


async def test_a_room_no_consultation_owns_ends_unclaimed_not_retried(tmp_path, records):
    service, url = records
    service.answer = (404, {"error": "no consultation has this live room",
                            "code": UNCLAIMED_ROOM_CODE})
    path, manifest = await finished_recording(tmp_path)
    queue = HandoffQueue(url, FAST)
    await queue.submit(path)
    await asyncio.wait_for(queue.wait(manifest.id), 10)
    await asyncio.sleep(0.5)  # a retry would come within 0.05-0.2 s
    await queue.close()
    assert len(service.requests) == 1 and queue.ended == {"unclaimed": 1}
    state = read_json(path / HANDOFF_STATE_FILE)
    assert (state["status"], state["attempts"], state["last_status"]) == ("unclaimed", 1, 404)
    assert (path / "manifest.json").is_file()  # kept for an admin
    # Not resumed at the next start, nor sent again when submitted.
    restarted = HandoffQueue(url, FAST)
    assert await restarted.resume(tmp_path) == 0
    await restarted.submit(path)
    assert restarted.pending == [] and len(service.requests) == 1
    await restarted.close()


async def test_a_wrong_token_ends_rejected_once_and_a_restart_tries_again(tmp_path, records,
                                                                         caplog):
    service, url = records
    service.answer = (401, {"error": "a valid recorder service token is required",
                            "code": "unauthenticated"})
    path, manifest = await finished_recording(tmp_path)
    queue = HandoffQueue(url, FAST, token="wrong")
    with caplog.at_level(logging.INFO, logger="recorder.handoff"):
        await queue.submit(path)
        await asyncio.wait_for(queue.wait(manifest.id), 10)
        await asyncio.sleep(0.5)
    await queue.close()
    assert len(service.requests) == 1 and queue.ended == {"rejected": 1}
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "HTTP 401, unauthenticated" in errors[0].getMessage()
    assert "handoff_token" in errors[0].getMessage()
    assert read_json(path / HANDOFF_STATE_FILE)["status"] == "rejected"

    # The operator fixes the token and restarts: the same bytes go again, and land.
    service.answer = None
    service.failures = 0
    restarted = HandoffQueue(url, FAST, token="right")
    assert await restarted.resume(tmp_path) == 1
    await asyncio.wait_for(restarted.wait(manifest.id), 10)
    await restarted.close()
    assert service.requests[0][1] == service.requests[1][1]
    state = read_json(path / HANDOFF_STATE_FILE)
    assert (state["status"], state["attempts"]) == ("delivered", 2)


async def test_a_teaching_video_rendered_during_the_hand_off_is_sent_too(tmp_path, records):
    service, url = records
    service.failures = 3  # the records service is down for a while
    path, manifest = await finished_recording(tmp_path)
    queue = HandoffQueue(url, FAST)
    await queue.submit(path)
    await wait_for(lambda: len(service.requests) >= 1, 10)
    (path / "vod").mkdir()
    (path / "vod" / "render.json").write_text('{"speed": 1.2}')
    await queue.submit(path, refresh=True)  # rendered meanwhile: announced again
    await asyncio.wait_for(queue.wait(manifest.id), 10)
    await queue.close()
    assert queue.ended == {"delivered": 1}
    assert service.verified == {"manifest.json", "timeline.msgpack", "vod/render.json"}
    assert bytes(service.held["vod/render.json"]) == b'{"speed": 1.2}'
    body = json.loads(service.requests[-1][1])
    assert {f["file"] for f in body["files"]} == service.verified
