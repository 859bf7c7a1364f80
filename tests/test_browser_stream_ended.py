"""When the server ends the bedside camera's stream, the page publishes it again by itself.

Real headless Chromium (fake camera) against the real server; the server closes the
ward's publication under it, as when the server-side connection dies.
"""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from mediaserver.datagrams import PortCounters
from signaling import MEDIA_SERVER
from tests.conftest import RunningServer
from tests.test_browser import ROOM, Chromium, chromium, server, token, wait_joined

pytestmark = pytest.mark.browser
__all__ = ["chromium", "server"]  # fixtures


async def test_the_ward_page_republishes_a_stream_ended_by_the_server(
        server: RunningServer, chromium: Chromium) -> None:
    ward = await chromium.open(
        "ward", f"{server.base_url}/ward.html#token={token(server, 'ward', 'Ward 3')}&autostart=1"
                "&lang=zh-CN")
    await wait_joined(ward)
    state = ward.locator("#publication-state")
    await expect(state).to_have_attribute("data-server-state", "connected", timeout=20_000)
    notice = ward.locator("#stream-ended")
    await expect(notice).to_be_hidden()
    first = await ward.evaluate("window.huizhen.camera.streamId")

    room = server.app[MEDIA_SERVER].directory.local(ROOM)
    assert room is not None
    await room.find_publication(first).pc.close()  # the server-side connection ends

    # The page publishes again by itself, on a fresh connection; no notice, no click.
    await ward.wait_for_function(
        f"() => (window.huizhen.camera.streamId ?? '{first}') !== '{first}'", timeout=20_000)
    await expect(state).to_have_attribute("data-server-state", "connected", timeout=20_000)
    await expect(notice).to_be_hidden()
    second = await ward.evaluate("window.huizhen.camera.streamId")
    assert second and second != first
    assert [s.id for s in room.streams()] == [second], str(chromium.log)
    assert await ward.evaluate("window.huizhen.link.media") == {second: "connected"}
    # A real browser's ICE/DTLS/SRTP traffic trips none of the media-port guards.
    assert room.find_publication(second).port_counters == PortCounters()
