"""Chromium plays a teaching video on recordings.html, seeks to 50 %, and the page's
vitals panel follows the playback time.

A real aiohttp server on loopback serves the web client and the recordings routes;
the render is triggered by the page's playback request and runs in a subprocess.
Debian's /usr/bin/chromium is required: without it the test FAILS (never skips).
"""

from __future__ import annotations

import base64
import itertools
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright

from recorder.http import setup_recording_routes
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, PageLog
from tests.test_recorder_vod_fixtures import (
    DURATION,
    bearer_authorize,
    bedside_index,
    hr_at,
    make_recording,
    read_code,
)

pytestmark = pytest.mark.browser

WEB_ROOT = Path(__file__).resolve().parent.parent / "web_client"
SECRET = "recordings-ticket-secret-0123456789abcdef"
REC = "rec-20260101-bed-12"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def base_url(tmp_path: Path) -> AsyncIterator[str]:
    make_recording(tmp_path, REC, pleth_chunks=2)  # two pleth chunks in every vitals event
    app = web.Application()
    setup_recording_routes(app, tmp_path, bearer_authorize, SECRET)
    app.router.add_static("/", WEB_ROOT, show_index=False, follow_symlinks=False)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless: without it the test FAILS (never skips)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: this test needs Debian's chromium package "
                    "(./scripts/ensure-system-packages installs it)", pytrace=False)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                    headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def main_picture(page: Page) -> np.ndarray:
    """The frame on screen, drawn to a canvas at the video's own size, as BGR."""
    data_url = await page.evaluate("""() => {
        const video = document.getElementById("video");
        const canvas = document.createElement("canvas");
        canvas.width = video.videoWidth;
        canvas.height = video.videoHeight;
        canvas.getContext("2d").drawImage(video, 0, 0);
        return canvas.toDataURL("image/png");
    }""")
    png = base64.b64decode(data_url.split(",", 1)[1])
    picture = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert picture is not None
    return picture


async def play_muted(page: Page) -> None:
    """Start the replay page's video, muted (no autoplay policy gets in the way)."""
    await page.evaluate("""async () => {
        const video = document.getElementById("video");
        video.muted = true;
        await video.play();
    }""")


async def test_chromium_plays_seeks_and_follows_the_vitals(base_url: str,
                                                           browser: Browser) -> None:
    log = PageLog()
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = log.attach(await context.new_page(), "recordings")
    await page.goto(f"{base_url}/recordings.html#token=token-bed-12&recording={REC}")
    try:
        await page.wait_for_function(
            "() => ['ready', 'failed', 'error'].includes(window.huizhen?.replay?.state)",
            timeout=90_000)
    except Exception as exc:
        raise AssertionError(f"the page never got ready\n{log}") from exc
    state = await page.evaluate("window.huizhen.replay.state")
    errors = await page.evaluate("window.huizhen.replay.errors")
    assert state == "ready", f"{state}: {errors}\n{log}"
    assert await page.locator('[data-recording-id]').count() == 1

    duration = await page.evaluate("window.huizhen.replay.duration()")
    assert abs(duration - DURATION) <= 0.05 * DURATION, duration
    # Play for a moment (muted, so no autoplay policy gets in the way).
    await play_muted(page)
    await page.wait_for_function(
        "() => window.huizhen.replay.currentTime() > 0.5", timeout=20_000)
    played = await page.evaluate("window.huizhen.replay.currentTime()")
    await page.evaluate("document.getElementById('video').pause()")

    half = duration / 2
    await page.evaluate("t => window.huizhen.replay.seek(t)", half)
    now = await page.evaluate("window.huizhen.replay.currentTime()")
    assert abs(now - half) < 0.05, (now, half)

    picture = await main_picture(page)
    assert picture.shape[:2] == (720, 1280)
    main = {"x": 0, "y": 0, "w": 960, "h": 720}
    code = read_code(picture, main)
    expected = bedside_index(now)
    print(f"\nplayed to {played:.2f} s; seeked to {now:.3f} s of {duration:.2f} s: "
          f"bedside frame {code} on screen, {expected} expected")
    assert abs(code - expected) <= 2, (code, expected)

    shown = await page.evaluate("window.huizhen.replay.shownVitals()")
    assert shown["hr"] == f"{hr_at(now):.0f}", (shown, now)
    assert await page.evaluate("window.huizhen.replay.shownAt()") == pytest.approx(now)
    text = await page.locator('[data-vital="hr"] .value').text_content()
    assert text == f"{hr_at(now):.0f}"

    # A later seek moves the panel with it.
    await page.evaluate("t => window.huizhen.replay.seek(t)", 6.9)
    shown = await page.evaluate("window.huizhen.replay.shownVitals()")
    assert shown["hr"] == f"{hr_at(6.9):.0f}" != f"{hr_at(now):.0f}"
    if os.environ.get("HUIZHEN_SCREENSHOTS"):
        await page.screenshot(path=str(Path(os.environ["HUIZHEN_SCREENSHOTS"])
                                       / "recordings.png"), full_page=True)
    vitals_at = await page.evaluate("window.huizhen.replay.vitalsAt(1.0)")
    assert vitals_at["hr"] == hr_at(1.0)
    assert not log.lines or all("pageerror" not in line for line in log.lines), log


async def test_the_replay_page_draws_the_pleth_forward_only(base_url: str,
                                                           browser: Browser) -> None:
    """Every vitals event carries its second of pleth as two chunks: the zh-CN replay page
    draws them one after the other, x strictly increasing, never a loop back."""
    log = PageLog()
    context = await browser.new_context(locale="zh-CN", viewport={"width": 1400, "height": 900})
    page = log.attach(await context.new_page(), "recordings")
    await page.goto(f"{base_url}/recordings.html#token=token-bed-12&recording={REC}")
    await page.wait_for_function(
        "() => ['ready', 'failed', 'error'].includes(window.huizhen?.replay?.state)",
        timeout=90_000)
    assert await page.evaluate("window.huizhen.replay.state") == "ready", log
    assert await page.evaluate("document.documentElement.lang") == "zh-CN"
    assert await page.locator('[data-wave="pleth"]').is_visible()
    for at in (1.2, 3.0, 4.6, 7.5):
        await page.evaluate("t => window.huizhen.replay.seek(t)", at)
        drawn = await page.evaluate("window.huizhen.replay.drawnWave()")
        xs = [x for x, _, _ in drawn]
        steps = [b - a for a, b in itertools.pairwise(xs)]
        print(f"at {at} s: {len(drawn)} pleth points drawn, x {xs[0]:.1f}..{xs[-1]:.1f}, "
              f"smallest step {min(steps):.3f} px, runs {len({r for _, _, r in drawn})}")
        # 100 samples a second, the last 4 s (less near the start) drawn left to right.
        assert len(drawn) >= min(at, 4.0) * 100 - 60, (at, len(drawn))
        assert min(steps) > 0, (at, min(steps))
        assert {r for _, _, r in drawn} == {0}  # the chunks meet: no gap, one line
    assert not log.lines or all("pageerror" not in line for line in log.lines), log


async def test_an_expired_link_asks_for_a_new_one_in_chinese(base_url: str,
                                                             browser: Browser) -> None:
    """A token the server cannot verify (expired, mistyped) is a 401: the page says, in
    Chinese, to ask for a new link, and never "0 recordings"."""
    log = PageLog()
    context = await browser.new_context(locale="zh-CN")
    page = log.attach(await context.new_page(), "recordings")
    await page.goto(f"{base_url}/recordings.html#token=expired-token")
    await page.wait_for_function(
        "() => document.getElementById('status').dataset.kind === 'error'", timeout=20_000)
    text = await page.locator("#status").inner_text()
    assert text == "未登录：此链接没有有效的访问令牌，请索取新的链接。", f"{text}\n{log}"
    assert "共 0 段录像" not in await page.locator("body").inner_text()
    assert await page.locator("[data-recording-id]").count() == 0
