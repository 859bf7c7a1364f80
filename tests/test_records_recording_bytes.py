"""Recordings' bytes travel from the recorder to the records service (``contracts.handoff``):
real records service (SQLite and PostgreSQL) on its own data directory, the real recorder
hand-off over loopback through a TCP relay that can flip a byte or cut the connection, and
the workspace's consultation page in headless Chromium playing the received teaching video."""

from __future__ import annotations

import asyncio
import re
import shutil
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import sqlalchemy as sa
from playwright.async_api import expect

from consult_api.app import create_app
from consult_api.models import Artefact, ArtefactLink, AuditLog, Consultation
from contracts.handoff import UNCLAIMED_ROOM_CODE
from huizhen.app import WEB_ROOT
from recorder.handoff import HANDOFF_STATE_FILE, HandoffQueue, RetryPolicy
from recorder.manifest import Manifest, read_json
from tests.test_browser_workspace import Browser, Workspace, chromium, sign_in, zh
from tests.test_consult_api import MEDIA_TOKENS, REQUEST, SECRET, World
from tests.test_recorder_handoff import finished_recording

__all__ = ["chromium"]  # the browser fixture, used by name

TOKEN = "recorder-service-token-0123456789abcdef"
FAST = RetryPolicy(initial=0.05, maximum=0.2, timeout=10)
TEACHING = "vod/teaching.mp4"


class Relay:
    """A TCP relay in front of the records service that counts the bytes the recorder sends,
    and can flip one byte of the teaching video's first upload or cut the connection once
    after ``cut_at`` bytes."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.seen = bytearray()  # every byte sent towards the service
        self.flip = False
        self.flipped = 0
        self.cut_at: int | None = None
        self.cuts = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()

    def _flip_position(self) -> int | None:
        marker = self.seen.find(b"teaching.mp4 HTTP/1.1")
        end = self.seen.find(b"\r\n\r\n", marker) if marker >= 0 else -1
        return end + 4 + 5000 if end >= 0 else None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)

        async def upstream() -> None:
            try:
                while data := bytearray(await reader.read(65536)):
                    start = len(self.seen)
                    self.seen += data
                    at = self._flip_position() if self.flip and not self.flipped else None
                    if at is not None and start <= at < len(self.seen):
                        data[at - start] ^= 0xFF
                        self.flipped += 1
                    if self.cut_at is not None and len(self.seen) >= self.cut_at:
                        up_writer.write(bytes(data[:self.cut_at - start]))
                        await up_writer.drain()
                        await asyncio.sleep(0.5)  # what was forwarded arrives, then the cut
                        self.cut_at = None
                        self.cuts += 1
                        return
                    up_writer.write(bytes(data))
                    await up_writer.drain()
            finally:
                up_writer.close()
                writer.close()

        async def downstream() -> None:
            try:
                while data := await up_reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            finally:
                writer.close()

        await asyncio.gather(upstream(), downstream(), return_exceptions=True)


def teaching_video(path: Path, seconds: float = 3.0) -> None:
    """A real H.264 MP4 of noisy frames (about 1-2 MB: noise does not compress)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        stream.time_base = Fraction(1, 10)
        for i in range(int(seconds * 10)):
            pixels = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
            pixels[:, : 32 + i * 8] = (200, 40, 40)  # a red bar that grows
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


async def recording(directory: Path, *, video: bool = True) -> tuple[Path, Manifest]:
    path, manifest = await finished_recording(directory)  # room "bed-3"
    if video:
        teaching_video(path / TEACHING)
        (path / "vod" / "render.json").write_text('{"speed": 1.0}')
    return path, manifest


async def records_service(world: World, aiohttp_client: Any, data_dir: Path) -> Any:
    client = await aiohttp_client(create_app(
        world.url, SECRET, room_tokens=MEDIA_TOKENS, web_root=WEB_ROOT, data_dir=data_dir,
        recorder_token=TOKEN, media_url="http://127.0.0.1:9"))
    world.client = client
    return client


async def hand_off(url: str, path: Path, manifest: Manifest, token: str = TOKEN
                   ) -> HandoffQueue:
    queue = HandoffQueue(url, FAST, token=token)
    assert await queue.submit(path)
    await asyncio.wait_for(queue.wait(manifest.id), 60)
    await queue.close()
    return queue


async def new_consultation(world: World) -> int:
    response = await world.client.post("/api/v1/consultations", json=REQUEST,
                                       headers=world.auth("doctor"))
    assert response.status == 201, await response.text()
    return int((await response.json())["id"])


def file_sizes(path: Path) -> int:
    return sum(p.stat().st_size for p in [path / "manifest.json", path / "timeline.msgpack",
                                          path / TEACHING, path / "vod" / "render.json"])



async def signed_in_page(workspace: Workspace, browser: Any, playwright: Any,
                         person: tuple[str, str, str], route: str) -> Any:
    """A Chromium page of the workspace, signed in as a new ``person`` (username,
    display name, role), at ``route``."""
    username = await workspace.person(*person)
    page = await browser.open(playwright, workspace.base)
    await sign_in(page, username)
    await expect(page.get_by_test_id("user-name")).to_have_text(person[1])
    await page.goto(f"{workspace.base}{route}")
    return page

@pytest.mark.browser
async def test_the_bytes_reach_another_data_directory_and_the_page_plays_the_video(
        world: World, aiohttp_client: Any, tmp_path: Path,
        chromium: tuple[Any, Browser]) -> None:
    client = await records_service(world, aiohttp_client, tmp_path / "records")
    relay = Relay(client.port)
    url = f"http://127.0.0.1:{await relay.start()}/api/v1/recordings"
    consultation = await new_consultation(world)
    path, manifest = await recording(tmp_path / "recorder")
    # The consultation is held at bed 3 around the recording: the bed room's recording
    # becomes part of its record for that window.
    begin = datetime.fromtimestamp(manifest.start_ms / 1000, UTC)
    response = await client.post(
        f"/api/v1/consultations/{consultation}/schedule", headers=world.auth("coordinator"),
        json={"start": (begin - timedelta(minutes=30)).isoformat(),
              "end": (begin + timedelta(minutes=30)).isoformat(),
              "expert_id": world.people["expert"].user_id, "bed_room": manifest.room})
    assert response.status == 200, await response.text()
    assert world.query(lambda s: s.get(Consultation, consultation).bed_room) == "bed-3"
    original = (path / TEACHING).read_bytes()
    assert len(original) > 200_000

    relay.flip = True  # one byte of the teaching video is corrupted on the wire, once
    queue = await hand_off(url, path, manifest)
    await relay.close()
    assert queue.ended == {"delivered": 1} and relay.flipped == 1
    # The corrupted file was refused and sent again, whole: the wire carried it twice.
    assert queue.bytes_sent == file_sizes(path) + len(original)
    assert read_json(path / HANDOFF_STATE_FILE)["status"] == "delivered"
    received = tmp_path / "records" / "received-recordings" / manifest.id
    assert (received / TEACHING).read_bytes() == original
    assert (received / "manifest.json").read_bytes() == (path / "manifest.json").read_bytes()
    assert not (received / ".partial" / TEACHING).exists()
    shutil.rmtree(path)  # the recorder's copy is gone: the page plays the service's own

    link, artefact = world.query(lambda s: (s.scalars(sa.select(ArtefactLink)).one(),
                                            s.scalars(sa.select(Artefact)).one()))
    assert (link.consultation_id, artefact.status, artefact.verified) == (
        consultation, "attached", True)
    assert link.window_start is not None and link.window_end is not None
    assert all(f["verified"] for f in artefact.files)

    playwright, browser = chromium
    workspace = Workspace(world=world, client=client, base=str(client.make_url("/")))
    page = await signed_in_page(workspace, browser, playwright, ("wang.doctor", "王医生", "doctor"),
                                f"#/consultations/{consultation}")
    await expect(page.get_by_test_id("recording-item")).to_have_count(1)
    facts = page.get_by_test_id("recording-facts")
    await expect(facts).to_contain_text(zh("ws.rec.verified"))
    video = page.get_by_test_id("teaching-video")
    src = await video.get_attribute("src")
    assert src is not None and "token" not in src
    # Played muted (autoplay rules); started again should the page have re-rendered it.
    await page.wait_for_function(
        "() => { const v = document.querySelector('[data-testid=teaching-video]');"
        " if (!v) return false; v.muted = true; if (v.paused && !v.ended) v.play().catch(() => {});"
        " return v.readyState >= 2 && v.currentTime > 0.5 && v.videoWidth === 320; }",
        timeout=30_000)
    # A frame decoded in the page: the red bar on the left of the picture.
    red = await video.evaluate(
        "v => { const c = document.createElement('canvas'); c.width = 320; c.height = 240;"
        " const g = c.getContext('2d'); g.drawImage(v, 0, 0);"
        " const p = g.getImageData(8, 120, 1, 1).data; return [p[0], p[1], p[2]]; }")
    assert red[0] > 150 and red[1] < 100 and red[2] < 100, red
    assert not [line for line in browser.log.lines if "pageerror" in line], str(browser.log)


@pytest.mark.browser
async def test_the_admin_attaches_an_unclaimed_recording_on_the_chinese_page(
        world: World, aiohttp_client: Any, tmp_path: Path,
        chromium: tuple[Any, Browser]) -> None:
    client = await records_service(world, aiohttp_client, tmp_path / "records")
    consultation = await new_consultation(world)
    path, manifest = await recording(tmp_path / "recorder", video=False)
    queue = await hand_off(str(client.make_url("/api/v1/recordings")), path, manifest)
    assert queue.ended == {"unclaimed": 1}

    playwright, browser = chromium
    workspace = Workspace(world=world, client=client, base=str(client.make_url("/")))
    page = await signed_in_page(workspace, browser, playwright, ("zhao.admin", "赵管理员", "admin"),
                                "#/admin/recordings")
    item = page.get_by_test_id("unclaimed-item")
    await expect(item).to_have_count(1)
    await expect(item).to_contain_text("bed-3")
    await expect(page.locator("h1")).to_contain_text(zh("ws.rec.unclaimed-title"))
    await item.get_by_test_id("attach-consultation").fill(str(consultation))
    await item.get_by_test_id("attach-recording").click()
    await expect(page.get_by_test_id("unclaimed-item")).to_have_count(0)

    await page.goto(f"{workspace.base}#/consultations/{consultation}")
    await expect(page.get_by_test_id("recording-item")).to_have_count(1)
    await expect(page.get_by_test_id("teaching-missing")).to_have_text("教学视频尚未生成")
    links = world.query(lambda s: [(link.consultation_id, link.attached_by is not None)
                                   for link in s.scalars(sa.select(ArtefactLink))])
    assert links == [(consultation, True)]
    assert not [line for line in browser.log.lines if "pageerror" in line], str(browser.log)


async def test_an_interrupted_upload_resumes_from_the_offset(
        world: World, aiohttp_client: Any, tmp_path: Path) -> None:
    client = await records_service(world, aiohttp_client, tmp_path / "records")
    relay = Relay(client.port)
    url = f"http://127.0.0.1:{await relay.start()}/api/v1/recordings"
    await new_consultation(world)
    path, manifest = await recording(tmp_path / "recorder")
    size = (path / TEACHING).stat().st_size
    relay.cut_at = size // 2  # somewhere in the teaching video's upload
    queue = await hand_off(url, path, manifest)
    await relay.close()
    assert relay.cuts == 1
    # unclaimed: bed-3 belongs to no consultation; its files are kept, whole and verified.
    assert queue.ended == {"unclaimed": 1}
    received = tmp_path / "records" / "received-recordings" / manifest.id
    assert (received / TEACHING).read_bytes() == (path / TEACHING).read_bytes()
    starts = [int(m) for m in re.findall(
        rb"PUT /api/v1/recordings/[^ ]*teaching\.mp4 HTTP/1\.1\r\n(?:[^\r]*\r\n)*?"
        rb"Content-Range: bytes (\d+)-", bytes(relay.seen))]
    assert len(starts) == 2 and starts[0] == 0 and 0 < starts[1] < size, starts
    # The bytes on the wire: every file once, plus what was in flight when the connection
    # was cut (sent again from the service's offset), plus headers; never the whole video
    # twice. ``cut`` bounds the video bytes sent before the cut.
    cut = size // 2
    extra = len(relay.seen) - file_sizes(path)
    print(f"video {size} B, cut after {cut} B on the wire, resumed at {starts[1]}, "
          f"wire total {len(relay.seen)} B = files {file_sizes(path)} + {extra}")
    # (``seen`` also holds the rest of the relay's last 64 KiB read, never forwarded.)
    assert 0 < extra <= cut - starts[1] + 64 * 1024 + 16 * 1024


async def test_a_bed_room_no_consultation_owns_is_unclaimed_for_the_admin(
        world: World, aiohttp_client: Any, tmp_path: Path) -> None:
    client = await records_service(world, aiohttp_client, tmp_path / "records")
    url = str(client.make_url("/api/v1/recordings"))
    consultation = await new_consultation(world)
    path, manifest = await recording(tmp_path / "recorder", video=False)
    queue = await hand_off(url, path, manifest)
    state = read_json(path / HANDOFF_STATE_FILE)
    assert queue.ended == {"unclaimed": 1}
    assert (state["status"], state["last_status"], state["last_error"]) == (
        "unclaimed", 404, UNCLAIMED_ROOM_CODE)

    response = await client.get("/api/v1/recordings?status=unclaimed",
                                headers=world.auth("admin"))
    listed = (await response.json())["recordings"]
    assert [(r["recording"], r["room"], r["verified"], r["teaching_video"]) for r in listed] == [
        (manifest.id, "bed-3", True, False)]
    response = await client.get("/api/v1/recordings", headers=world.auth("doctor"))
    assert response.status == 403
    response = await client.get(f"/api/v1/consultations/{consultation}/recordings",
                                headers=world.auth("doctor"))
    assert (await response.json())["recordings"] == []

    # The admin attaches it; the consultation lists it, the teaching video not yet made.
    response = await client.post(f"/api/v1/recording-files/{listed[0]['id']}/attach",
                                 json={"consultation_id": consultation},
                                 headers=world.auth("admin"))
    assert response.status == 200, await response.text()
    response = await client.get(f"/api/v1/consultations/{consultation}/recordings",
                                headers=world.auth("doctor"))
    found = (await response.json())["recordings"]
    assert [(r["recording"], r["teaching_video"]) for r in found] == [(manifest.id, False)]
    timeline = (path / "timeline.msgpack").read_bytes()
    response = await client.get(f"/api/v1/recording-files/{found[0]['id']}",
                                params={"name": "timeline.msgpack"}, headers=world.auth("doctor"))
    assert (response.status, await response.read()) == (200, timeline)
    response = await client.get(f"/api/v1/recording-files/{found[0]['id']}",
                                params={"name": "timeline.msgpack"},
                                headers={**world.auth("doctor"), "Range": "bytes=0-3"})
    assert response.status == 206
    assert await response.read() == timeline[:4]
    response = await client.get(f"/api/v1/recording-files/{found[0]['id']}",
                                params={"name": "timeline.msgpack"}, headers=world.auth("expert"))
    assert response.status == 403  # no expert assigned: not this expert's consultation
    actions = world.query(lambda s: list(s.scalars(sa.select(AuditLog.action).where(
        AuditLog.action.like("recording.%")))))
    assert {"recording.list-unclaimed", "recording.attach", "recording.list",
            "recording.open"} <= set(actions)

    # The teaching video rendered later is handed off too: only it travels.
    teaching_video(path / TEACHING, seconds=1.0)
    again = queue  # the same queue, its first hand-off of this recording ended
    await again.start()
    again.ended.clear()
    again.bytes_sent = 0
    assert await again.submit(path, refresh=True)
    await asyncio.wait_for(again.wait(manifest.id), 60)
    await again.close()
    assert again.ended == {"delivered": 1}
    assert again.bytes_sent == (path / TEACHING).stat().st_size
    response = await client.get(f"/api/v1/consultations/{consultation}/recordings",
                                headers=world.auth("doctor"))
    assert (await response.json())["recordings"][0]["teaching_video"] is True


async def test_a_wrong_token_ends_rejected_and_hostile_names_are_refused(
        world: World, aiohttp_client: Any, tmp_path: Path) -> None:
    client = await records_service(world, aiohttp_client, tmp_path / "records")
    url = str(client.make_url("/api/v1/recordings"))
    path, manifest = await recording(tmp_path / "recorder", video=False)
    queue = await hand_off(url, path, manifest, token="wrong-token")
    assert queue.ended == {"rejected": 1}
    assert read_json(path / HANDOFF_STATE_FILE)["last_status"] == 401
    assert world.query(lambda s: s.scalars(sa.select(Artefact)).all()) == []

    bearer = {"Authorization": f"Bearer {TOKEN}"}
    body = (path / "handoff-request.json").read_bytes()
    response = await client.post("/api/v1/recordings", data=body, headers=bearer)
    assert response.status == 201
    for name in ("../x", "/etc/passwd", "a\x00b", "vod/../../x", ".partial/x", "a\\b", ""):
        response = await client.put(f"/api/v1/recordings/{manifest.id}/files",
                                    params={"name": name}, data=b"x", headers=bearer)
        assert response.status == 400, name
        assert (await response.json())["code"] == "invalid-file-name"
    hostile = body.replace(b'"file":"timeline.msgpack"', b'"file":"../../timeline.msgpack"')
    response = await client.post("/api/v1/recordings", data=hostile, headers=bearer)
    assert response.status == 400
    assert (await response.json())["code"] == "invalid-file-name"
    response = await client.put("/api/v1/recordings/..%2F..%2Fetc/files",
                                params={"name": "x"}, data=b"x", headers=bearer)
    assert response.status in (400, 404)
    # Nothing was written anywhere: not in the data directory, not beside it.
    assert [p for p in tmp_path.rglob("*") if p.is_file() and "recorder" not in p.parts
            and p.suffix not in (".sqlite3", ".sqlite3-wal", ".sqlite3-shm")] == []
