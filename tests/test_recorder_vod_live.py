"""A 10-minute recording's teaching video plays in Chromium while it is still being
rendered: the render starts in the background when the room closes (the recorder
service's finish hook), the page plays the HLS segments written so far (MSE), shows the
progress moving in Chinese, and a second viewer asking later joins the same render.

Real parts: an aiohttp server on loopback with the recordings routes, the render in a
niced subprocess (``python -m recorder.vod``), headless Debian Chromium. The times to
first picture are printed (issue 12 asks for 10 s); the assertions are that the video
plays (its clock advances, frames are decoded) and that progress increases.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, Page

from recorder.http import RECORDINGS, VodRenderer, setup_recording_routes, subprocess_runner
from recorder.vod_auto import AutoRenderPolicy, AutoRenders
from recorder.vod_overlay import DEFAULT_LABELS
from recorder.vod_sample import SampleParty, write_sample_recording
from tests.test_browser import PageLog
from tests.test_recorder_vod_browser import browser, free_port, play_muted
from tests.test_recorder_vod_fixtures import bearer_authorize

pytestmark = pytest.mark.browser

__all__ = ["browser"]  # the shared Chromium fixture

WEB_ROOT = Path(__file__).resolve().parent.parent / "web_client"
SECRET = "recordings-ticket-secret-0123456789abcdef"
REC = "rec-20260101-bed-12"
MINUTES = 10


@dataclass
class Server:
    url: str
    directory: Path
    renderer: VodRenderer
    auto: AutoRenders


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    # Ten minutes: the bedside camera with its sound and a specialist's camera (small
    # pictures at 5 fps keep making the sample quick; the render is full size, 1280x720).
    directory = write_sample_recording(
        tmp_path, REC, [SampleParty("p-ward", "ward", tone_hz=440.0),
                        SampleParty("p-expert", "expert", video_offset=500)],
        duration=MINUTES * 60.0, fps=5, width=160, height=120, room="bed-12")
    app = web.Application()
    renderer = VodRenderer(runner=subprocess_runner(DEFAULT_LABELS, nice=10))
    service = setup_recording_routes(app, tmp_path, bearer_authorize, SECRET, renderer=renderer)
    auto = AutoRenders(renderer, service.library, AutoRenderPolicy())
    app.router.add_static("/", WEB_ROOT, show_index=False, follow_symlinks=False)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Server(f"http://127.0.0.1:{port}", directory, renderer, auto)
    finally:
        await auto.close()
        await runner.cleanup()
    assert app[RECORDINGS].renderer is renderer


async def open_and_play(browser: Browser, url: str, log: PageLog, name: str) -> Page:
    context = await browser.new_context(locale="zh-CN", viewport={"width": 1400, "height": 900})
    page = log.attach(await context.new_page(), name)
    await page.goto(f"{url}/recordings.html#token=token-bed-12&recording={REC}")
    return page


async def wait_playing(page: Page, log: PageLog, since: float) -> tuple[float, float]:
    """Starts playback once the page has a picture, waits until the clock advances and
    frames are decoded; returns (seconds from ``since`` to the first picture, seconds
    from ``since`` until one second of video has played)."""
    try:
        await page.wait_for_function(
            "() => ['streaming', 'ready', 'failed', 'error']"
            ".includes(window.huizhen?.replay?.state)", timeout=120_000)
        picture = time.monotonic() - since
        state = await page.evaluate("window.huizhen.replay.state")
        assert state in ("streaming", "ready"), (
            f"{state}: {await page.evaluate('window.huizhen.replay.errors')}\n{log}")
        await play_muted(page)
        await page.wait_for_function(
            "() => window.huizhen.replay.currentTime() > 1.0"
            " && window.huizhen.replay.decodedFrames() > 10", timeout=120_000)
    except Exception as exc:
        raise AssertionError(f"the video never played\n{log}") from exc
    return picture, time.monotonic() - since


async def test_ten_minute_recording_plays_while_it_renders(server: Server,
                                                           browser: Browser) -> None:
    log = PageLog()
    # The room closes: the recorder service's finish hook hands the recording over.
    closed = time.monotonic()
    server.auto.finished(server.directory)
    page = await open_and_play(browser, server.url, log, "at-close")
    picture_after_close, after_close = await wait_playing(page, log, closed)
    state = await page.evaluate("window.huizhen.replay.state")
    assert state == "streaming", f"the 10-minute render finished already? {state}"
    assert await page.evaluate("window.huizhen.replay.streaming")

    # Progress moves: two readings of the page's bar and text, the later one larger.
    readings = """() => {
        const text = window.huizhen.replay.progressText();
        const match = /… (\\d+)%/.exec(text);
        return {fraction: window.huizhen.replay.progress.progress, text,
                percent: match ? Number(match[1]) : -1,
                bar: document.getElementById('render-progress').value};
    }"""
    first = await page.evaluate(readings)
    await page.wait_for_function(f"() => ({readings})().percent > {first['percent']}",
                                 timeout=90_000)
    second = await page.evaluate(readings)
    assert first["text"].startswith("正在生成教学视频… "), first
    assert second["fraction"] > first["fraction"] and second["percent"] > first["percent"]
    assert first["bar"] == first["percent"] and second["bar"] == second["percent"], second
    assert "约剩" in second["text"], second

    # A second viewer asks while the render is still running: it joins the same render.
    asked = time.monotonic()
    other = await open_and_play(browser, server.url, log, "while-rendering")
    picture_after_asking, after_asking = await wait_playing(other, log, asked)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/api/v1/recordings/{REC}",
                               headers={"Authorization": "Bearer token-bed-12"}) as response:
            video = (await response.json())["video"]
        # Hostile requests while rendering: no ticket, a name outside the pattern.
        async with session.get(f"{server.url}/recordings/{REC}/hls/index.m3u8") as response:
            assert response.status == 401
        async with session.get(f"{server.url}/recordings/{REC}/hls/..%2Frender.json") as response:
            assert response.status == 404
    assert video["state"] == "rendering", video
    assert 0 < video["progress"] < 1 and video["segments"] is True, video
    assert server.renderer.queued() == []  # one render, not two

    eta = await page.evaluate("window.huizhen.replay.progress.eta")
    print(f"\n{MINUTES}-minute recording: first picture {picture_after_close:.1f} s and 1 s "
          f"played {after_close:.1f} s after the room closed; first picture "
          f"{picture_after_asking:.1f} s and 1 s played {after_asking:.1f} s after a second "
          f"viewer asked while rendering; progress {first['fraction']:.1%} -> "
          f"{second['fraction']:.1%} ({first['text']!r} -> {second['text']!r}); "
          f"eta {eta} s; render at {video['progress']:.1%} when checked")
    assert not any("pageerror" in line for line in log.lines), log
