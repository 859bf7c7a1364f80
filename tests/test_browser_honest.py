"""Honest live pages in a real headless Chromium: "connected" means frames are arriving.

Real server, real pages (Debian's /usr/bin/chromium, as in tests/test_browser.py). The
ward page publishes Chromium's fake camera; the expert page must notice within 2 s when
the ward stops sending video (its sender's track replaced by none: no frame leaves), show
the frozen-video notice with the time of the last frame and stop saying "connected", and
clear it when frames resume. The camera help (blocked, absent, not HTTPS), the enlarged and
fullscreen video, the tablet layouts and the bed label are checked on screen too.
Set HUIZHEN_SCREENSHOTS=<dir> to keep screenshots (honest-*.png).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import (
    Browser,
    FloatRect,
    Page,
    Playwright,
    async_playwright,
    expect,
)

from huizhen.app import create_app, token_authority
from tests.conftest import RunningServer, free_port, make_settings
from tests.test_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ROOM,
    PageLog,
    screenshot,
    token,
    wait_joined,
)
from tests.test_browser_devices import DeviceServer, device_server
from tests.test_browser_zh import english_words
from tests.test_devices_room import send_with_python_hl7
from tests.test_hl7_fixtures import GE_SAMPLE

pytestmark = pytest.mark.browser
__all__ = ["device_server"]  # a fixture used by name

FREEZE_SHOWN_WITHIN_S = 2.0  # the product's requirement: the notice within 2 s
SHANGHAI = timezone(timedelta(hours=8))
MONITOR = "080019FFFE0B4020"  # OBX-18 of the GE sample's B40
BED_LABEL = "ICU 3 · 12 床"
EXPERT_NAME = "王医生"
WARD_NAME = "三病区护士"
FAKE_UI = "--use-fake-ui-for-media-stream"
FAKE_DEVICE = "--use-fake-device-for-media-stream=fps=30"


class Browsers:
    """Chromium launched with the given flags on first use (a missing browser FAILS)."""

    def __init__(self, playwright: Playwright) -> None:
        self.playwright = playwright
        self.browsers: dict[tuple[str, ...], Browser] = {}
        self.log = PageLog()

    async def open(self, label: str, url: str, *, args: list[str] | None = None,
                   viewport: tuple[int, int] = (1280, 860), touch: bool = False) -> Page:
        flags = tuple(CHROMIUM_ARGS if args is None else args)
        browser = self.browsers.get(flags)
        if browser is None:
            if not CHROMIUM.exists():
                pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
                            "package; they never download a browser", pytrace=False)
            browser = await self.playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=list(flags))
            self.browsers[flags] = browser
        context = await browser.new_context(
            viewport={"width": viewport[0], "height": viewport[1]}, has_touch=touch)
        page = self.log.attach(await context.new_page(), label)
        await page.goto(url)
        return page


@pytest.fixture
async def browsers() -> AsyncIterator[Browsers]:
    async with async_playwright() as playwright:
        instance = Browsers(playwright)
        try:
            yield instance
        finally:
            for browser in instance.browsers.values():
                await browser.close()
        errors = [line for line in instance.log.lines if "pageerror" in line]
        assert not errors, "\n".join(errors)


@pytest.fixture
def server(running_server: RunningServer) -> RunningServer:
    return running_server


async def live_pair(server: RunningServer, browsers: Browsers, lang: str) -> tuple[Page, Page]:
    """(ward publishing its fake camera, expert showing it with frames arriving)."""
    base = server.base_url
    ward = await browsers.open(
        "ward", f"{base}/ward.html#token={token(server, 'ward', WARD_NAME)}&autostart=1"
                f"&lang={lang}")
    await expect(ward.locator("#publication-state")).to_have_attribute(
        "data-server-state", "connected", timeout=20_000)
    expert = await browsers.open(
        "expert", f"{base}/expert.html#token={token(server, 'expert', EXPERT_NAME)}&lang={lang}")
    await wait_joined(expert)
    await expect(expert.locator("figure.tile .badge")).to_have_attribute(
        "data-state", "connected", timeout=20_000)
    return ward, expert


STOP_VIDEO = """async () => {
    const sender = window.huizhen.camera.pc.getSenders().find((s) => s.track?.kind === "video");
    window.__stoppedTrack = sender.track;
    await sender.replaceTrack(null);
}"""
RESUME_VIDEO = """async () => {
    const sender = window.huizhen.camera.pc.getSenders().find((s) => s.track === null);
    await sender.replaceTrack(window.__stoppedTrack);
}"""


async def seconds_until(page: Page, expression: str, started: float, timeout: float) -> float:
    await page.wait_for_function(expression, timeout=timeout * 1000, polling=50)
    return time.monotonic() - started


async def test_frozen_video_is_shown_within_2_s_and_cleared_when_frames_resume(
        server: RunningServer, browsers: Browsers) -> None:
    ward, expert = await live_pair(server, browsers, "zh-CN")
    status = expert.locator("#status")
    tile = expert.locator("figure.tile")
    await expect(status).to_have_attribute("data-media", "flowing", timeout=10_000)
    await expect(status).to_have_text(f"已连接到会诊室 {ROOM}")
    await expect(status).to_have_attribute("data-kind", "ok")
    await expect(tile.locator(".frozen-overlay")).to_be_hidden()
    publish_badge = expert.locator(
        'li.participant[data-role="ward"] .transport[data-direction="publish"]')
    await expect(publish_badge).to_have_attribute("data-state", "connected")

    started = time.monotonic()
    await ward.evaluate(STOP_VIDEO)
    shown = await seconds_until(
        expert, "() => !document.querySelector('figure.tile .frozen-overlay').hidden", started, 5)
    print(f"\nfrozen-video notice shown {shown:.2f} s after the ward stopped sending video")
    assert shown <= FREEZE_SHOWN_WITHIN_S, shown

    # The notice names the time of the last frame (Beijing time), the picture is greyed,
    # and nothing on the page says "connected" for this video any more.
    text = await tile.locator(".frozen-text").inner_text()
    match = re.fullmatch(r"画面已冻结 · 最后画面 (\d\d):(\d\d):(\d\d)", text)
    assert match, text
    now = datetime.now(SHANGHAI)
    last = now.replace(hour=int(match[1]), minute=int(match[2]), second=int(match[3]))
    assert timedelta(0) <= now - last < timedelta(seconds=5), (text, now)
    assert "grayscale(1)" in await tile.locator("video").evaluate(
        "v => getComputedStyle(v).filter")
    await expect(tile.locator(".badge")).to_have_attribute("data-state", "frozen")
    await expect(tile.locator(".badge")).to_have_text("画面冻结")
    await expect(status).to_have_attribute("data-media", "frozen")
    await expect(status).not_to_have_attribute("data-kind", "ok")
    await expect(status).to_have_text(f"会诊室 {ROOM}：{text}")
    assert "已连接" not in await status.inner_text()
    # The server still reports the publication connected; the list shows what arrives.
    await expect(publish_badge).to_have_attribute("data-server-state", "connected")
    await expect(publish_badge).to_have_attribute("data-state", "frozen")
    # The frozen page in Chinese only (the scan of tests/test_browser_zh.py).
    visible = await expert.evaluate("document.body.innerText")
    assert not english_words(visible, (ROOM, EXPERT_NAME, WARD_NAME)), visible
    await screenshot(expert, "honest-frozen.png")

    started = time.monotonic()
    await ward.evaluate(RESUME_VIDEO)
    cleared = await seconds_until(
        expert, "() => document.querySelector('figure.tile .frozen-overlay').hidden", started, 15)
    print(f"frozen-video notice cleared {cleared:.2f} s after the ward sent video again")
    await expect(tile.locator(".badge")).to_have_attribute("data-state", "connected")
    await expect(status).to_have_attribute("data-media", "flowing")
    await expect(status).to_have_attribute("data-kind", "ok")
    await expect(publish_badge).to_have_attribute("data-state", "connected")
    assert await tile.locator("video").evaluate("v => getComputedStyle(v).filter") == "none"


async def test_frozen_video_in_english(server: RunningServer, browsers: Browsers) -> None:
    ward, expert = await live_pair(server, browsers, "en")
    await ward.evaluate(STOP_VIDEO)
    overlay = expert.locator("figure.tile .frozen-text")
    await expect(overlay).to_have_text(re.compile(r"^Video frozen · last frame \d\d:\d\d:\d\d$"),
                                       timeout=5_000)
    await expect(expert.locator("figure.tile .badge")).to_have_text("frozen")
    await expect(expert.locator("#status")).to_have_text(
        re.compile(rf"^Room {ROOM}: video frozen · last frame \d\d:\d\d:\d\d$"))


async def test_a_lost_signalling_link_is_shown(device_server: DeviceServer,
                                              browsers: Browsers) -> None:
    """RoomSession's `link` events (sent by its heartbeat) drive the status line; the
    server's states on the page (transports, the PTZ camera) are marked unknown while the
    link is down. The room has a PTZ camera (tests/test_browser_devices.py's FakeDevices)."""
    _, expert = await live_pair(device_server.server, browsers, "zh-CN")
    status = expert.locator("#status")
    camera = expert.locator("#ptz-camera")
    await expect(camera).to_have_attribute("data-state", "online")
    await expect(status).to_have_attribute("data-link", "up")
    emit = """(link) => window.huizhen.session.client._emit("link", link)"""
    await expert.evaluate(emit, {"signalling": "lost", "media": {}})
    await expect(status).to_have_attribute("data-link", "lost")
    await expect(status).to_have_attribute("data-kind", "error")
    await expect(status).to_have_text(
        "与服务器的连接已中断：画面和状态可能不是最新的。正在尝试重新连接…")
    # The expert's own receiving transport (a server report) is unknown now; the ward's
    # video, still arriving, stays connected.
    mine = expert.locator('li.participant .you').locator("xpath=../..").locator(".transport")
    await expect(mine.first).to_have_attribute("data-state", "unknown")
    await expect(expert.locator("figure.tile .badge")).to_have_attribute("data-state", "connected")
    await expect(camera).to_have_attribute("data-state", "unknown")
    await expect(camera).to_have_text("摄像头 未知")
    await expert.evaluate(emit, {"signalling": "reconnecting", "media": {}})
    await expect(status).to_have_text("正在重新连接服务器…画面和状态可能不是最新的。")
    await expect(status).to_have_attribute("data-kind", "warn")
    await expert.evaluate(emit, {"signalling": "up", "media": {}})
    await expect(status).to_have_text(f"已连接到会诊室 {ROOM}")
    await expect(mine.first).to_have_attribute("data-state", "connected")
    await expect(camera).to_have_attribute("data-state", "online")


DENIED_ARGS = [a for a in CHROMIUM_ARGS if a != FAKE_UI]  # camera prompts are refused
ABSENT_ARGS = [a for a in CHROMIUM_ARGS if a != FAKE_DEVICE]  # no camera at all


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
async def test_a_blocked_camera_is_explained_until_allowed(
        server: RunningServer, browsers: Browsers, lang: str) -> None:
    url = (f"{server.base_url}/ward.html#token={token(server, 'ward', WARD_NAME)}&autostart=1"
           f"&lang={lang}")
    ward = await browsers.open("ward", url, args=DENIED_ARGS)
    help_ = ward.locator("#camera-help")
    await expect(help_).to_be_visible(timeout=15_000)
    await expect(help_).to_have_attribute("data-problem", "denied")
    if lang == "zh-CN":
        await expect(help_.locator(".camera-help-title")).to_have_text(
            "无法使用摄像头：浏览器已禁止本网站使用摄像头或麦克风。")
        await expect(help_.locator("li").first).to_contain_text("网站设置")
        await expect(help_.locator("li").nth(1)).to_have_text("将“摄像头”和“麦克风”都改为“允许”。")
        await expect(help_.locator("button")).to_have_text("重试")
        text = await help_.inner_text()
        assert not english_words(text, ()), text
    else:
        await expect(help_.locator(".camera-help-title")).to_have_text(
            "The camera cannot be used: the browser blocks the camera or microphone "
            "for this site.")
        await expect(help_.locator("li").nth(1)).to_have_text(
            "Set both Camera and Microphone to Allow.")
        await expect(help_.locator("button")).to_have_text("Try again")
    await screenshot(ward, f"honest-denied-{lang}.png")
    # It stays until fixed: a refused retry keeps it; allowing the camera and retrying
    # publishes, and the explanation goes.
    await help_.locator("button").click()
    await asyncio.sleep(1.0)
    await expect(help_).to_be_visible()
    await expect(help_).to_have_attribute("data-problem", "denied")
    # Allowing the camera in the site's settings is noticed without a click.
    await ward.context.grant_permissions(["camera", "microphone"], origin=server.base_url)
    await expect(help_).to_be_hidden(timeout=10_000)
    await expect(ward.locator("#publication-state")).to_have_attribute(
        "data-server-state", "connected", timeout=20_000)


async def test_the_specialists_talk_back_explains_a_blocked_camera(
        server: RunningServer, browsers: Browsers) -> None:
    expert = await browsers.open(
        "expert", f"{server.base_url}/expert.html#token={token(server, 'expert', EXPERT_NAME)}"
                  "&lang=zh-CN", args=DENIED_ARGS)
    await wait_joined(expert)
    await expert.locator("#talk").click()
    help_ = expert.locator("#talk-help")
    await expect(help_).to_have_attribute("data-problem", "denied", timeout=10_000)
    await expect(help_.locator(".camera-help-title")).to_have_text(
        "无法使用摄像头：浏览器已禁止本网站使用摄像头或麦克风。")
    await expect(expert.locator("#talk")).to_have_text("与床旁通话")  # nothing was published
    await expert.context.grant_permissions(["camera", "microphone"], origin=server.base_url)
    await expect(help_).to_be_hidden(timeout=10_000)
    await expect(expert.locator("#talk")).to_have_text("结束通话")


async def test_no_camera_is_explained(server: RunningServer, browsers: Browsers) -> None:
    url = (f"{server.base_url}/ward.html#token={token(server, 'ward', WARD_NAME)}&autostart=1"
           "&lang=zh-CN")
    ward = await browsers.open("ward", url, args=ABSENT_ARGS)
    help_ = ward.locator("#camera-help")
    await expect(help_).to_have_attribute("data-problem", "absent", timeout=15_000)
    await expect(help_.locator(".camera-help-title")).to_have_text("未找到摄像头或麦克风。")
    await expect(help_.locator("li").first).to_contain_text("连接线")
    await expect(help_.locator("button")).to_have_text("重试")


async def test_a_page_not_opened_over_https_says_so(server: RunningServer,
                                                    browsers: Browsers) -> None:
    """A non-localhost http origin (a host name mapped to the loopback server) is not a
    secure context: browsers offer no camera there."""
    port = server.base_url.rsplit(":", 1)[1]
    args = [*CHROMIUM_ARGS, "--host-resolver-rules=MAP ward-pc.hospital.test 127.0.0.1"]
    base = f"http://ward-pc.hospital.test:{port}"
    for lang, title in (
            ("zh-CN", "本页面未通过安全连接（HTTPS）打开，浏览器不允许使用摄像头和麦克风。"),
            ("en", "This page was not opened over a secure connection (HTTPS), so the browser "
                   "does not allow the camera and microphone.")):
        ward = await browsers.open(
            "ward", f"{base}/ward.html#token={token(server, 'ward', WARD_NAME)}&lang={lang}",
            args=args)
        assert await ward.evaluate("window.isSecureContext") is False
        help_ = ward.locator("#camera-help")
        await expect(help_).to_have_attribute("data-problem", "insecure", timeout=10_000)
        await expect(help_.locator(".camera-help-title")).to_have_text(title)
        await expect(help_.locator("li").first).to_contain_text(
            "信息科" if lang == "zh-CN" else "hospital IT department")
        await help_.locator("button").click()  # still not HTTPS: the notice stays
        await expect(help_).to_have_attribute("data-problem", "insecure")
        await ward.locator("#start").click(force=True)
        await expect(help_).to_be_visible()
        await screenshot(ward, f"honest-insecure-{lang}.png")


async def test_the_bedside_video_enlarges_and_goes_fullscreen(
        server: RunningServer, browsers: Browsers) -> None:
    _, expert = await live_pair(server, browsers, "zh-CN")
    tile = expert.locator("figure.tile")
    size = await expert.evaluate("({w: innerWidth, h: innerHeight})")
    await tile.locator("video").click()
    await expect(tile).to_have_class(re.compile(r"\benlarged\b"))
    await expect(tile.locator("button.enlarge")).to_have_text("还原")
    box = await tile.bounding_box()
    assert box == {"x": 0, "y": 0, "width": size["w"], "height": size["h"]}, box
    await expert.keyboard.press("Escape")
    await expect(tile).not_to_have_class(re.compile(r"\benlarged\b"))
    await expect(tile.locator("button.enlarge")).to_have_text("放大")

    await tile.locator("button.fullscreen").click()
    await expert.wait_for_function(
        "() => document.fullscreenElement === document.querySelector('figure.tile .video-box')")
    await expect(tile.locator("button.fullscreen")).to_have_text("退出全屏")
    await expert.evaluate("document.exitFullscreen()")  # what Esc does in the browser
    await expert.wait_for_function("() => document.fullscreenElement === null")
    await expect(tile.locator("button.fullscreen")).to_have_text("全屏")


@dataclass
class BedServer:
    server: RunningServer
    hl7_port: int


@pytest.fixture
async def bed_server(tmp_path: Path) -> AsyncIterator[BedServer]:
    """A real server whose room is a bound bed with a label and an HL7 monitor."""
    hl7_port = free_port()
    settings = make_settings(
        HUIZHEN_STORAGE_DATA_DIR=str(tmp_path),
        HUIZHEN_DEVICES_HL7_LISTEN=f"127.0.0.1:{hl7_port}",
        HUIZHEN_DEVICES_BEDS=json.dumps([{"room": ROOM, "label": BED_LABEL,
                                          "monitor": f"hl7:{MONITOR}"}]))
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.server.port).start()
    try:
        yield BedServer(RunningServer(app, settings, token_authority(settings),
                                      settings.server.base_url), hl7_port)
    finally:
        await runner.cleanup()


def inside(box: FloatRect | None, width: int, height: int) -> bool:
    return box is not None and box["x"] >= 0 and box["y"] >= 0 and \
        box["x"] + box["width"] <= width + 0.5 and box["y"] + box["height"] <= height + 0.5


async def test_tablets_show_video_and_vitals_together_with_the_bed_label(
        bed_server: BedServer, browsers: Browsers) -> None:
    server = bed_server.server
    base = server.base_url
    ward = await browsers.open(
        "ward", f"{base}/ward.html#token={token(server, 'ward', WARD_NAME)}&autostart=1")
    await expect(ward.locator("#publication-state")).to_have_attribute(
        "data-server-state", "connected", timeout=20_000)
    ack = await send_with_python_hl7(bed_server.hl7_port, GE_SAMPLE)
    assert ack.startswith("MSA|AA")
    for width, height in ((1024, 768), (768, 1024)):
        expert = await browsers.open(
            f"tablet {width}x{height}",
            f"{base}/expert.html#token={token(server, 'expert', EXPERT_NAME)}&lang=zh-CN",
            viewport=(width, height), touch=True)
        tile = expert.locator("figure.tile")
        await expect(tile.locator(".badge")).to_have_attribute("data-state", "connected",
                                                               timeout=20_000)
        await expect(expert.locator('#vitals [data-vital="spo2"] .value')).to_have_text("100")
        await expect(tile.locator(".bed-label")).to_have_text(f"床位：{BED_LABEL}")
        assert await expert.evaluate("matchMedia('(pointer: coarse)').matches || "
                                     "navigator.maxTouchPoints > 0")
        assert await expert.evaluate("scrollY") == 0
        video = await tile.locator("video").bounding_box()
        vitals = await expert.locator("#vitals").bounding_box()
        spo2 = await expert.locator('#vitals [data-vital="spo2"]').bounding_box()
        print(f"\n{width}x{height}: video {video}, vitals {vitals}")
        assert inside(video, width, height), video
        assert inside(vitals, width, height), vitals
        assert inside(spo2, width, height), spo2
        assert video is not None and video["width"] >= width * 0.45, video
        await screenshot(expert, f"honest-tablet-{width}x{height}.png")
        await expert.context.close()
        # The bedside page on the same tablet: its camera picture beside (or under) the vitals.
        bedside = await browsers.open(
            f"ward tablet {width}x{height}",
            f"{base}/ward.html#token={token(server, 'ward', WARD_NAME)}&lang=zh-CN",
            viewport=(width, height), touch=True)
        await expect(bedside.locator('#vitals [data-vital="spo2"] .value')).to_have_text("100")
        preview = await bedside.locator("#preview").bounding_box()
        vitals = await bedside.locator("#vitals").bounding_box()
        print(f"ward {width}x{height}: preview {preview}, vitals {vitals}")
        assert inside(preview, width, height), preview
        assert inside(vitals, width, height), vitals
        await screenshot(bedside, f"honest-ward-tablet-{width}x{height}.png")
        await bedside.context.close()


async def test_the_frame_flow_core(server: RunningServer, browsers: Browsers) -> None:
    """web_client/frameflow.js's pure core, run in the page with the times passed in."""
    page = await browsers.open("core", f"{server.base_url}/index.html")
    states = await page.evaluate("""async () => {
        const { FrameFlow } = await import("/frameflow.js");
        const flow = new FrameFlow({ frozenAfterMs: 1200 });
        const seen = [flow.state(0)];
        flow.frame(1000, 1767000000000);
        seen.push(flow.state(1000), flow.state(2200), flow.state(2201));
        flow.frame(2300, 1767000001300);
        seen.push(flow.state(2300), flow.lastFrameWall, flow.frames);
        flow.reset();
        seen.push(flow.state(2400));
        return seen;
    }""")
    assert states == ["waiting", "flowing", "flowing", "frozen", "flowing", 1767000001300, 2,
                      "waiting"]
