"""A real headless Chromium plays a room's stream through WHEP (web_client/whep.html)."""

from __future__ import annotations

import pytest
from aiortc import RTCSessionDescription

from signaling import MEDIA_SERVER
from signaling.whip import SESSIONS
from tests.conftest import RunningServer
from tests.fakes import Member
from tests.peers import make_publisher_offer, wait_for
from tests.test_browser import Chromium, chromium, frames_decoded  # noqa: F401

pytestmark = pytest.mark.browser
ROOM = "bed-12"


async def test_whep_page_decodes_the_rooms_stream(running_server: RunningServer,
                                                  chromium: Chromium) -> None:  # noqa: F811
    room = running_server.app[MEDIA_SERVER].room(ROOM)
    ward = room.join("ward", "ward", Member())
    pub_pc, offer, _tracks = await make_publisher_offer(codec="VP8", audio=True)
    _publication, answer = await room.publish(ward, offer)
    await pub_pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    token = running_server.token("observer", ROOM, name="viewer")
    try:
        page = await chromium.open(
            "whep", f"{running_server.base_url}/whep.html#token={token}&room={ROOM}",
            locale="zh-CN")
        await page.wait_for_function("() => window.huizhen && window.huizhen.state === "
                                     "'playing'", timeout=20000)
        frames = await frames_decoded(page, 60, 30, chromium.log)
        assert frames >= 60
        # Chinese first: the status names the room in zh-CN.
        assert await page.text_content("#status") == f"正在播放会诊室 {ROOM}"
        sessions = running_server.app[SESSIONS]
        assert [s.kind for s in sessions.sessions.values()] == ["whep"]
        await page.click("#stop")
        await wait_for(lambda: not sessions.sessions, 10)
        assert await page.text_content("#status") == "已停止播放"
        assert [p.name for p in room.participants.values()] == ["ward"]
        print(f"Chromium decoded {frames} frames through WHEP")
    finally:
        await pub_pc.close()
        room.leave(ward)
