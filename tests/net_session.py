"""A consultation across the network lab: the real huizhen server in one host, the ward
page (Chromium's fake camera) in another, the expert page in a third, and the expert's
inbound video statistics read from Chromium's getStats.

    with NetLab() as lab:
        async with consultation(lab.host("server"), lab.host("ward"),
                                lab.host("expert")) as call:
            stats = await viewer_video_stats(call.expert)

The server is ``python -m huizhen serve`` listening on the server host's address, with
its ICE candidates (media ports) on that namespace's interface only. Chromium runs in
each client host through ``Host.chromium_executable()``; plain HTTP on a lab address
is made a secure origin for the camera with ``--unsafely-treat-insecure-origin-as-secure``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, Playwright, async_playwright

from config import Settings, load_settings
from huizhen.app import token_authority
from signaling import TokenAuthority
from tests.conftest import stop_process
from tests.nethost import Host
from tests.test_browser import CHROMIUM_ARGS as BROWSER_ARGS
from tests.test_browser import PageLog

ROOM = "bed-net-1"
PORT = 8080
# The browser tests' flags; lab hosts reach each other on eth0, never over loopback.
CHROMIUM_ARGS = [arg for arg in BROWSER_ARGS if arg != "--allow-loopback-in-peer-connection"]

# The expert's inbound video, summed over its subscriptions (one per publication).
VIDEO_STATS_JS = """async () => {
  const rows = [];
  for (const sub of Object.values(window.huizhen.subscriptions)) {
    if (!sub.pc) continue;
    (await sub.pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") rows.push({
        framesDecoded: s.framesDecoded ?? 0, freezeCount: s.freezeCount ?? 0,
        totalFreezesDuration: s.totalFreezesDuration ?? 0,
        framesPerSecond: s.framesPerSecond ?? 0, frameWidth: s.frameWidth ?? 0,
        frameHeight: s.frameHeight ?? 0, packetsLost: s.packetsLost ?? 0,
        packetsReceived: s.packetsReceived ?? 0, nackCount: s.nackCount ?? 0,
        pliCount: s.pliCount ?? 0, keyFramesDecoded: s.keyFramesDecoded ?? 0,
        bytesReceived: s.bytesReceived ?? 0});
    });
  }
  return rows;
}"""


@dataclass(frozen=True)
class VideoStats:
    """One reading of the viewer's inbound-rtp video statistics (Chromium's names)."""

    frames_decoded: int
    freeze_count: int
    total_freezes_duration: float  # seconds
    frames_per_second: float
    frame_width: int
    frame_height: int
    packets_lost: int
    packets_received: int
    nack_count: int
    pli_count: int
    key_frames_decoded: int
    bytes_received: int

    @classmethod
    def from_js(cls, row: dict[str, Any]) -> VideoStats:
        return cls(int(row["framesDecoded"]), int(row["freezeCount"]),
                   float(row["totalFreezesDuration"]), float(row["framesPerSecond"]),
                   int(row["frameWidth"]), int(row["frameHeight"]), int(row["packetsLost"]),
                   int(row["packetsReceived"]), int(row["nackCount"]), int(row["pliCount"]),
                   int(row["keyFramesDecoded"]), int(row["bytesReceived"]))


async def viewer_video_stats(page: Page) -> VideoStats | None:
    """The page's inbound video statistics (its first video subscription), or None
    before it has one."""
    rows = await page.evaluate(VIDEO_STATS_JS)
    return VideoStats.from_js(rows[0]) if rows else None


@dataclass
class HuizhenServer:
    """``huizhen serve`` running in a host of the lab."""

    host: Host
    settings: Settings
    authority: TokenAuthority
    process: subprocess.Popen[bytes]

    @property
    def base_url(self) -> str:
        return f"http://{self.host.address}:{PORT}"

    def token(self, role: str, name: str, room: str = ROOM) -> str:
        return self.authority.mint(room=room, role=role, name=name, ttl=3600)


@contextlib.contextmanager
def huizhen_server(host: Host, data_dir: Path, **overrides: str) -> Iterator[HuizhenServer]:
    """Start the real server in ``host`` (listening on its address, media on its
    interface); ``overrides``: more ``HUIZHEN_*`` settings."""
    env = {"HUIZHEN_SERVER_HOST": host.address, "HUIZHEN_SERVER_PORT": str(PORT),
           # Off loopback the server refuses demo secrets: a fresh one per run.
           "HUIZHEN_AUTH_TOKEN_SECRET": secrets.token_hex(32),
           "HUIZHEN_MEDIA_ICE_ADDRESSES": json.dumps([host.address]),
           "HUIZHEN_RECORDER_ENABLED": "false",
           "HUIZHEN_STORAGE_DATA_DIR": str(data_dir), **overrides}
    settings = load_settings(environ=env)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("HUIZHEN_")}
    process = host.popen([sys.executable, "-m", "huizhen", "serve"], env={**inherited, **env},
                         stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        if not line.startswith("huizhen listening on"):
            raise RuntimeError(f"the server in {host.name} did not start: {line!r} "
                               f"(exit code {process.poll()})")
        yield HuizhenServer(host, settings, token_authority(settings), process)
    finally:
        stop_process(process)
        if process.stdout is not None:
            process.stdout.close()


async def launch_chromium(playwright: Playwright, host: Host, origin: str) -> Browser:
    """Debian's Chromium inside ``host``'s namespace, treating ``origin`` as secure."""
    return await playwright.chromium.launch(
        executable_path=host.chromium_executable(), headless=True,
        args=[*CHROMIUM_ARGS, f"--unsafely-treat-insecure-origin-as-secure={origin}"])


async def open_page(browser: Browser, url: str, log: PageLog, label: str) -> Page:
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    page = log.attach(await context.new_page(), label)
    await page.goto(url)
    return page


@dataclass
class Consultation:
    """A running call: the server, the ward page publishing, the expert pages viewing
    (``expert`` is the first of them)."""

    server: HuizhenServer
    ward: Page
    experts: list[Page]
    log: PageLog

    @property
    def expert(self) -> Page:
        return self.experts[0]


async def wait_for_video(page: Page, frames: int, timeout: float, log: PageLog) -> VideoStats:
    """Poll until the page decoded ``frames`` video frames; its stats then."""
    deadline = time.monotonic() + timeout
    stats = None
    while time.monotonic() < deadline:
        stats = await viewer_video_stats(page)
        if stats is not None and stats.frames_decoded >= frames:
            return stats
        await asyncio.sleep(0.25)
    raise AssertionError(f"the expert page decoded {stats} after {timeout} s\n{log}")


@contextlib.asynccontextmanager
async def consultation(server_host: Host, ward_host: Host, expert_host: Host | list[Host],
                       data_dir: Path) -> AsyncIterator[Consultation]:
    """Server, expert pages (joined first, one per host in ``expert_host``) and the ward
    page (publishing at once), each in its host; everything stopped afterwards."""
    expert_hosts = expert_host if isinstance(expert_host, list) else [expert_host]
    log = PageLog()
    with huizhen_server(server_host, data_dir) as server:
        async with async_playwright() as playwright:
            browsers: list[Browser] = []
            try:
                experts = []
                for n, host in enumerate(expert_hosts, 1):
                    browsers.append(await launch_chromium(playwright, host, server.base_url))
                    label = "expert" if len(expert_hosts) == 1 else f"expert{n}"
                    page = await open_page(
                        browsers[-1], f"{server.base_url}/expert.html#token="
                        f"{server.token('expert', f'Dr. Net {n}')}", log, label)
                    await page.wait_for_function(
                        "() => window.huizhen && window.huizhen.state === 'joined'",
                        timeout=20_000)
                    experts.append(page)
                browsers.append(await launch_chromium(playwright, ward_host, server.base_url))
                ward = await open_page(
                    browsers[-1], f"{server.base_url}/ward.html#token="
                    f"{server.token('ward', 'Ward net nurse')}&autostart=1", log, "ward")
                yield Consultation(server, ward, experts, log)
            finally:
                for browser in browsers:
                    with contextlib.suppress(Exception):
                        await browser.close()
