"""A real headless Chromium against the real server: the web client end to end.

The ward page publishes Chromium's fake camera and microphone, the expert page
subscribes through the SFU and decodes it. Debian's /usr/bin/chromium is driven
by Playwright (never a downloaded browser); without it these tests fail.
Set HUIZHEN_SCREENSHOTS=<dir> to keep screenshots of the pages.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, Playwright, async_playwright, expect

from signaling import MEDIA_SERVER
from signaling.tokens import TokenAuthority
from tests.conftest import RunningServer

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream=fps=30",
    "--use-fake-ui-for-media-stream",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
    # On a machine whose only interface is lo, Chromium offers no candidate otherwise.
    "--allow-loopback-in-peer-connection",
]
ROOM = "bed-12"


@dataclass
class PageLog:
    """Console output and page errors of every page, shown when an assertion fails."""

    lines: list[str] = field(default_factory=list)

    def attach(self, page: Page, label: str) -> Page:
        page.on("console", lambda m: self.lines.append(f"[{label}] {m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.lines.append(f"[{label}] pageerror: {e}"))
        return page

    def __str__(self) -> str:
        return "\n".join(self.lines[-40:]) or "(no console output)"


@pytest.fixture
def server(running_server: RunningServer) -> RunningServer:
    """The real server (tests/conftest.py) on a free loopback port."""
    return running_server


def token(server: RunningServer, role: str, name: str) -> str:
    return server.token(role, room=ROOM, name=name)


class Chromium:
    """Debian's Chromium, launched on the first page a test opens.

    Launching inside the test (not in a fixture) makes a missing browser a test
    FAILURE with a clear message, never a skip or a setup error.
    """

    def __init__(self, playwright: Playwright) -> None:
        self.playwright = playwright
        self.browser: Browser | None = None
        self.log = PageLog()

    async def open(self, label: str, url: str, locale: str | None = None,
                   init_script: Path | None = None) -> Page:
        """A new page (in a context of its own) at ``url``; ``locale``: the browser's
        language (navigator.languages), Chromium's default when None; ``init_script``: a
        script run in the page before its own."""
        if self.browser is None:
            if not CHROMIUM.exists():
                pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
                            "package (./scripts/ensure-system-packages installs it); they never "
                            "download a browser", pytrace=False)
            self.browser = await self.playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        context = await self.browser.new_context(viewport={"width": 1280, "height": 860},
                                                  **({"locale": locale} if locale else {}))
        if init_script is not None:
            await context.add_init_script(path=str(init_script))
        page = self.log.attach(await context.new_page(), label)
        await page.goto(url)
        return page


@pytest.fixture
async def chromium() -> AsyncIterator[Chromium]:
    async with async_playwright() as playwright:
        instance = Chromium(playwright)
        try:
            yield instance
        finally:
            if instance.browser is not None:
                await instance.browser.close()


async def wait_joined(page: Page, timeout: float = 10.0) -> None:
    await page.wait_for_function("() => window.huizhen && window.huizhen.state === 'joined'",
                                 timeout=timeout * 1000)


async def frames_decoded(page: Page, at_least: int, timeout: float, log: PageLog) -> int:
    """Poll window.huizhen.framesDecoded() until it reaches ``at_least``; return the last value."""
    deadline = time.monotonic() + timeout
    frames = 0
    while time.monotonic() < deadline:
        frames = int(await page.evaluate("window.huizhen.framesDecoded()"))
        if frames >= at_least:
            return frames
        await asyncio.sleep(0.25)
    state = await page.evaluate("""() => ({
        state: window.huizhen.state,
        subscriptions: Object.values(window.huizhen.subscriptions).map(
            s => ({stream: s.streamId, id: s.id, pc: s.pcState})),
        errors: window.huizhen.errors})""")
    raise AssertionError(f"framesDecoded stayed at {frames} < {at_least} for {timeout} s; "
                         f"page state {state}\n{log}")


async def screenshot(page: Page, name: str) -> None:
    directory = os.environ.get("HUIZHEN_SCREENSHOTS")
    if directory:
        await page.screenshot(path=str(Path(directory) / name), full_page=True)


async def test_ward_camera_plays_on_the_expert_page(
        server: RunningServer, chromium: Chromium) -> None:
    base = server.base_url
    expert_token = token(server, "expert", "Dr. Test")
    expert = await chromium.open("expert", f"{base}/expert.html#token={expert_token}")
    # The expert is in first, so it sees every connection-state event of the ward.
    await wait_joined(expert)
    started = time.monotonic()
    ward_token = token(server, "ward", "Ward 3 nurse")
    ward = await chromium.open("ward", f"{base}/ward.html#token={ward_token}&autostart=1")

    frames = await frames_decoded(expert, 60, 40, chromium.log)
    elapsed = time.monotonic() - started
    print(f"\nexpert page decoded {frames} frames {elapsed:.1f} s after the ward page opened")
    assert frames >= 60

    # The expert's model lists the ward with its publication connected (server's view).
    people = await expert.evaluate("""Object.values(window.huizhen.participants).map(
        p => ({name: p.name, role: p.role, self: p.self,
               transports: Object.values(p.transports)}))""")
    wards = [p for p in people if p["role"] == "ward"]
    assert [p["name"] for p in wards] == ["Ward 3 nurse"], people
    assert any(t["direction"] == "publish" and t["state"] == "connected"
               for t in wards[0]["transports"]), people
    assert any(p["self"] and p["name"] == "Dr. Test" and p["role"] == "expert" for p in people)

    # ... and so does the page itself.
    row = expert.locator('li.participant[data-role="ward"]')
    await expect(row.locator(".name")).to_have_text("Ward 3 nurse")
    await expect(row.locator('.transport[data-direction="publish"] .badge')).to_have_text(
        "connected")
    tile = expert.locator("figure.tile")
    await expect(tile).to_have_count(1)
    await expect(tile.locator(".name")).to_have_text("Ward 3 nurse")
    await expect(tile.locator(".badge")).to_have_text("connected")
    playing = await tile.locator("video").evaluate(
        "v => ({width: v.videoWidth, paused: v.paused, time: v.currentTime})")
    assert playing["width"] > 0 and not playing["paused"] and playing["time"] > 0, playing
    await expect(expert.locator("#status")).to_have_attribute("data-state", "joined")

    # The ward page sees its own publication connected, in the browser and on the server.
    await expect(ward.locator("#publication-state")).to_have_attribute("data-state", "connected")
    await expect(ward.locator("#publication-state")).to_have_attribute(
        "data-server-state", "connected")
    await screenshot(expert, "expert.png")
    await screenshot(ward, "ward.png")


@pytest.mark.parametrize("kind", ["expired", "foreign", "garbage"])
async def test_a_bad_token_shows_unauthorized(server: RunningServer, chromium: Chromium,
                                             kind: str) -> None:
    if kind == "expired":
        bad = server.authority.mint(room=ROOM, role="expert", name="Dr. Late", ttl=60,
                                      now=time.time() - 3600)
    elif kind == "foreign":
        other = TokenAuthority("another-service-secret-0123456789", "huizhen", "huizhen-media")
        bad = other.mint(room=ROOM, role="expert", name="Dr. Elsewhere", ttl=600)
    else:
        bad = "not-a-token"
    page = await chromium.open("expert", f"{server.base_url}/expert.html#token={bad}")
    status = page.locator("#status")
    # The code stays machine-readable; the text is the catalogue's (English: Chromium's
    # default language here).
    await expect(status).to_have_attribute("data-code", "unauthorized", timeout=10_000)
    await expect(status).to_have_attribute("data-state", "failed")
    await expect(status).to_have_text(
        "Not admitted: The link is not valid or has expired. Ask for a new link.")
    assert await page.evaluate("window.huizhen.state") == "failed", str(chromium.log)
    # A refused token is final: the page does not keep retrying.
    await asyncio.sleep(1.5)
    assert await page.evaluate("window.huizhen.state") == "failed"
    assert await page.locator("figure.tile").count() == 0


async def test_late_expert_sees_the_bedside_and_talks_back(
        server: RunningServer, chromium: Chromium) -> None:
    base = server.base_url
    ward_token = token(server, "ward", "Ward 3 nurse")
    ward = await chromium.open("ward", f"{base}/ward.html#token={ward_token}&autostart=1")
    await expect(ward.locator("#publication-state")).to_have_attribute(
        "data-state", "connected", timeout=15_000)

    # Joining after the publication: the stream comes from `joined.streams`.
    expert_token = token(server, "expert", "Dr. Late")
    expert = await chromium.open("expert", f"{base}/expert.html#token={expert_token}")
    await wait_joined(expert)
    assert await frames_decoded(expert, 30, 30, chromium.log) >= 30
    # The publication connected before the expert joined; its state still shows.
    row = expert.locator('li.participant[data-role="ward"]')
    await expect(row.locator('.transport[data-direction="publish"] .badge')).to_have_text(
        "connected")

    # "Talk to bedside": the ward page subscribes to the expert and decodes it.
    await expert.locator("#talk").click()
    await expect(expert.locator("#talk")).to_have_text("Stop talking")
    assert await frames_decoded(ward, 30, 30, chromium.log) >= 30
    await expect(ward.locator("figure.tile .name")).to_have_text("Dr. Late")
    await expect(expert.locator('li.participant[data-role="expert"] .you')).to_have_count(1)

    # Stopping the talk-back removes the tile on the ward page.
    await expert.locator("#talk").click()
    await expect(ward.locator("figure.tile")).to_have_count(0, timeout=10_000)


async def test_a_dropped_socket_rejoins_and_republishes(
        server: RunningServer, chromium: Chromium) -> None:
    base = server.base_url
    expert_token = token(server, "expert", "Dr. Test")
    expert = await chromium.open("expert", f"{base}/expert.html#token={expert_token}")
    await wait_joined(expert)
    ward_token = token(server, "ward", "Ward 3 nurse")
    ward = await chromium.open("ward", f"{base}/ward.html#token={ward_token}&autostart=1")
    await frames_decoded(expert, 15, 30, chromium.log)
    first_ward = await expert.evaluate(
        "Object.values(window.huizhen.participants).find(p => p.role === 'ward').id")

    # The ward's signalling socket drops (as on a network blip): it shows it, then rejoins.
    await ward.evaluate("window.huizhen.session.client.ws.close()")
    await expect(ward.locator("#status")).to_contain_text("Disconnected")
    await wait_joined(ward, 15)
    # The expert sees a new ward participant, with a new stream, and decodes it again.
    await expert.wait_for_function(
        f"""() => Object.values(window.huizhen.participants).some(
            p => p.role === 'ward' && p.id !== '{first_ward}')""", timeout=15_000)
    assert await frames_decoded(expert, 30, 30, chromium.log) >= 30
    await expect(expert.locator('li.participant[data-role="ward"]')).to_have_count(1)


@pytest.mark.parametrize("codec", ["H264", "VP8"])
async def test_chromium_codecs_are_forwarded_as_sent(
        server: RunningServer, chromium: Chromium, codec: str) -> None:
    """Chromium's own encoder output (OpenH264 or libvpx) reaches the expert untouched."""
    base = server.base_url
    ward_token = token(server, "ward", "Ward 3 nurse")
    ward = await chromium.open(
        "ward", f"{base}/ward.html#token={ward_token}&autostart=1&codec={codec}")
    await expect(ward.locator("#publication-state")).to_have_attribute(
        "data-state", "connected", timeout=15_000)
    expert_token = token(server, "expert", "Dr. C")
    expert = await chromium.open("expert", f"{base}/expert.html#token={expert_token}")
    await wait_joined(expert)
    assert await frames_decoded(expert, 60, 40, chromium.log) >= 60
    room = server.app[MEDIA_SERVER].directory.local(ROOM)
    assert room is not None
    producers = [p for participant in room.participants.values()
                 for publication in participant.publications.values()
                 for p in publication.producers]
    assert sorted(p.codec_name for p in producers) == sorted([codec, "opus"])
    video = next(p for p in producers if p.kind == "video")
    assert video.keyframes_seen >= 1 and all(d.stats().started for d in video.downstreams)
    # The expert's browser decodes the same codec the ward's browser encoded.
    decoded_codec = await expert.evaluate("""async () => {
        for (const pc of window.huizhen.peerConnections) {
            const stats = await pc.getStats();
            for (const s of stats.values()) {
                if (s.type === "inbound-rtp" && s.kind === "video" && s.codecId) {
                    return stats.get(s.codecId).mimeType;
                }
            }
        }
        return null;
    }""")
    assert decoded_codec == f"video/{codec}"
