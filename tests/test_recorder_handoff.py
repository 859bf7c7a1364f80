"""Hand-off to the records service: retried until a 2xx, idempotent, resumed after a restart."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from mediaserver import MediaConfig, MediaServer
from recorder.handoff import HANDOFF_REQUEST_FILE, HANDOFF_STATE_FILE, HandoffQueue, RetryPolicy
from recorder.manifest import Manifest, read_json
from recorder.service import RecorderService
from recorder.session_recorder import SessionRecorder
from tests.conftest import free_port
from tests.fakes import Member
from tests.peers import wait_for

FAST = RetryPolicy(initial=0.05, maximum=0.2, timeout=5)


class RecordsService:
    """A stand-in for the consultation records service: fails the first ``failures`` POSTs."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests: list[tuple[str | None, bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.headers.get("Idempotency-Key"), await request.read()))
        if len(self.requests) <= self.failures:
            return web.Response(status=500)
        return web.json_response({"accepted": True}, status=201)


@pytest.fixture
async def records() -> AsyncIterator[tuple[RecordsService, str]]:
    service = RecordsService(failures=2)
    app = web.Application()
    app.router.add_post("/recordings", service.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield service, f"http://127.0.0.1:{port}/recordings"
    await runner.cleanup()


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
    artefacts = body["artefacts"]
    assert artefacts["transfer"] == "local-path"
    files = {a["file"]: a for a in artefacts["files"]}
    assert set(files) == {"manifest.json", "timeline.msgpack"}
    assert Path(files["timeline.msgpack"]["path"]).read_bytes()
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
    recorder_service = RecorderService(server, tmp_path, url, retry=FAST)
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
