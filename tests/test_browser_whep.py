"""A real headless Chromium plays a room's stream through WHEP (web_client/whep.html)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from aiohttp import web
from aiortc import RTCSessionDescription
from playwright.async_api import Page

from huizhen.app import create_app, token_authority
from signaling import MEDIA_SERVER
from signaling.turn import mint_turn_credentials
from signaling.whip import SESSIONS, link_headers
from tests.conftest import RunningServer, free_port, make_settings
from tests.fakes import Member
from tests.peers import make_publisher_offer, wait_for
from tests.test_browser import Chromium, chromium, frames_decoded  # noqa: F401

pytestmark = pytest.mark.browser
ROOM = "bed-12"
TURN_SECRET = "turn-secret-0123456789abcdef"


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


async def parse_links(page: Page, header: str | None) -> Any:
    return await page.evaluate(
        "async (header) => (await import('/link_header.js')).iceServersFromLinks(header)", header)


async def test_the_whep_page_reads_ice_servers_from_link_headers(
        running_server: RunningServer, chromium: Chromium) -> None:  # noqa: F811
    """The page's parser (web_client/link_header.js) reads what the server writes
    (signaling.whip.link_headers), as fetch() hands it over: several headers joined by
    ", ", credentials with quotes, backslashes, commas and semicolons."""
    page = await chromium.open("links", f"{running_server.base_url}/whep.html", locale="zh-CN")
    credential = 'p"w\\,x;y'
    written = link_headers([{"urls": ["stun:stun.example.net:3478"]},
                            {"urls": ["turn:turn.example.net:3478?transport=udp",
                                      "turns:turn.example.net:443?transport=tcp"],
                             "username": "1700000000:p-0a1b2c", "credential": credential}])
    assert await parse_links(page, ", ".join(written)) == [
        {"urls": ["stun:stun.example.net:3478"]},
        {"urls": ["turn:turn.example.net:3478?transport=udp"],
         "username": "1700000000:p-0a1b2c", "credential": credential},
        {"urls": ["turns:turn.example.net:443?transport=tcp"],
         "username": "1700000000:p-0a1b2c", "credential": credential},
    ]
    # RFC 8288 spellings: any case for names, rel lists, unquoted values, spaces.
    assert await parse_links(
        page, '<STUN:a.example>;REL="ice-server" , <turn:b.example> ; rel="x ice-server";'
              ' username=u; credential=c ; credential-type=password') == [
        {"urls": ["STUN:a.example"]},
        {"urls": ["turn:b.example"], "username": "u", "credential": "c"}]
    # Not ICE servers, or malformed: skipped, the rest still read; never an exception.
    assert await parse_links(
        page, '<https://example.org/>; rel="ice-server", <stun:c.example>; rel="preload", '
              '<turn:d.example; rel="ice-server", <turn:e.example>; rel="ice-server"; '
              'username="u", <stun:f.example> garbage, <stun:g.example>; rel=ice-server, '
              '<turn:h.example>; rel="ice-server"; username="unterminated') == [
        {"urls": ["turn:e.example"]}, {"urls": ["stun:g.example"]}]
    for nothing in (None, "", ",,, ;", "<", '"'):
        assert await parse_links(page, nothing) == []


async def test_the_whep_page_uses_the_announced_ice_servers(
        chromium: Chromium) -> None:  # noqa: F811
    """With TURN configured, the WHEP answer's Link headers carry credentials minted for
    the session; the page hands them to its peer connection and plays as before."""
    # A TURN port nobody listens on: the page still connects over host candidates.
    turn_urls = [f"turn:127.0.0.1:{free_port()}?transport=udp"]
    settings = make_settings(HUIZHEN_ICE_TURN_URLS=json.dumps(turn_urls),
                             HUIZHEN_ICE_TURN_SECRET=TURN_SECRET)
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    await web.TCPSite(runner, settings.server.host, settings.server.port).start()
    app = runner.app
    pub_pc = None
    try:
        room = app[MEDIA_SERVER].room(ROOM)
        ward = room.join("ward", "ward", Member())
        pub_pc, offer, _tracks = await make_publisher_offer(codec="VP8", audio=False)
        _publication, answer = await room.publish(ward, offer)
        await pub_pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        token = token_authority(settings).mint(room=ROOM, role="observer", name="viewer",
                                               ttl=600)
        page = await chromium.open(
            "whep-turn", f"{settings.server.base_url}/whep.html#token={token}&room={ROOM}",
            locale="zh-CN")
        await page.wait_for_function("() => window.huizhen && window.huizhen.state === "
                                     "'playing'", timeout=20000)
        assert await frames_decoded(page, 30, 30, chromium.log) >= 30
        servers = await page.evaluate("window.huizhen.iceServers")
        configured = await page.evaluate(
            "window.huizhen.peerConnections[0].getConfiguration().iceServers")
        assert len(servers) == 1 and servers == configured
        assert servers[0]["urls"] == turn_urls
        username, credential = servers[0]["username"], servers[0]["credential"]
        expiry, participant = username.split(":")
        assert int(expiry) > time.time() and participant.startswith("u-")
        assert (username, credential) == mint_turn_credentials(
            TURN_SECRET.encode(), participant, 0, int(expiry))
        room.leave(ward)
    finally:
        if pub_pc is not None:
            await pub_pc.close()
        await runner.cleanup()
