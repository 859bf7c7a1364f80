"""The ward and expert pages say when the room's recording stops for a full disk and when
it resumes (the ``recording-state`` event), in Chinese first and in English.

Real headless Chromium against the real server; the event is the recorder service's
(``RECORDING_STATE``), broadcast to the room as the service does (the full-disk flow itself,
on a real tmpfs, is tests/test_recorder_disk_full.py).
"""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from recorder.service import DISK_FULL, RECORDING_STATE
from signaling import MEDIA_SERVER
from tests.conftest import RunningServer
from tests.test_browser import ROOM, Chromium, chromium, server, token, wait_joined

pytestmark = pytest.mark.browser
__all__ = ["chromium", "server"]  # fixtures


async def test_the_pages_show_that_recording_stopped_and_resumed(
        server: RunningServer, chromium: Chromium) -> None:
    ward = await chromium.open(
        "ward", f"{server.base_url}/ward.html#token={token(server, 'ward', 'Ward 3')}&lang=zh-CN")
    expert = await chromium.open(
        "expert", f"{server.base_url}/expert.html#token={token(server, 'expert', 'Dr. Wang')}"
                  "&lang=en")
    await wait_joined(ward)
    await wait_joined(expert)
    await expect(ward.locator("#recording-state")).to_be_hidden()
    room = server.app[MEDIA_SERVER].directory.local(ROOM)
    assert room is not None

    room.broadcast(RECORDING_STATE, {"state": "stopped", "reason": DISK_FULL})
    await expect(ward.locator("#recording-state")).to_have_text("录制已暂停：磁盘空间不足")
    await expect(expert.locator("#recording-state")).to_have_text(
        "Recording paused: the server's disk is full")
    assert await ward.evaluate("window.huizhen.recordingState") == {
        "state": "stopped", "reason": "disk-full", "text": "录制已暂停：磁盘空间不足"}
    await expect(ward.locator("#recording-state")).to_have_attribute("data-state", "stopped")

    room.broadcast(RECORDING_STATE, {"state": "recording"})
    await expect(ward.locator("#recording-state")).to_have_text("录制已恢复")
    await expect(expert.locator("#recording-state")).to_have_text("Recording resumed")
    await expect(expert.locator("#recording-state")).to_have_attribute("data-state", "recording")
    problems = [line for line in chromium.log.lines if "pageerror" in line or "i18n" in line]
    assert problems == [], str(chromium.log)
