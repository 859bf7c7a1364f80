"""Network outages: the pages notice, recover by themselves and the video resumes.

A Chromium ward page publishes its fake camera, a Chromium expert page watches it,
both against the real server on loopback. One page's network is cut with an nftables
table (its signalling socket and its peer connections' UDP dropped; the other page is
untouched), for 5 s or 45 s, on the publisher's side or the viewer's. The page must
show it is disconnected within 10 s, and the expert page must decode new frames within
3 s after the table is deleted, without a reload (the product's acceptance numbers).

How a page is singled out on one machine: the server also listens on 127.0.0.2 and the
page to cut is opened there, so its signalling is "TCP to 127.0.0.2:port"; its media
are the UDP ports of its peer connections' local candidates (read from getStats through
``window.__huizhenPeers``). ``cut`` and ``restore`` are the only two functions that
know this: in network namespaces they become "drop the link" and "bring it back".
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from playwright.async_api import Page

from huizhen.app import create_app, token_authority
from tests.conftest import RunningServer, make_settings
from tests.test_browser import Chromium, chromium, frames_decoded, wait_joined

pytestmark = pytest.mark.browser
__all__ = ["chromium"]  # fixture

ROOM = "bed-12"
CUT_HOST = "127.0.0.2"
NFT = "/usr/sbin/nft"
DISCONNECTED_WITHIN = 10.0  # seconds after the cut (requirement)
RESUMED_WITHIN = 3.0  # seconds after the link returns (requirement)


@dataclass(frozen=True)
class Outage:
    """An nftables table dropping one page's traffic with the server."""

    table: str
    port: int
    udp_ports: tuple[int, ...]


def cut(port: int, udp_ports: tuple[int, ...]) -> Outage:
    """Drop the signalling (TCP to/from CUT_HOST:port) and these UDP ports, both ways."""
    outage = Outage(f"huizhen_outage_{os.getpid()}_{secrets.token_hex(3)}", port, udp_ports)
    rules = [f"ip daddr {CUT_HOST} tcp dport {port} drop",
             f"ip saddr {CUT_HOST} tcp sport {port} drop"]
    if udp_ports:
        ports = ", ".join(str(p) for p in udp_ports)
        rules += [f"udp sport {{ {ports} }} drop", f"udp dport {{ {ports} }} drop"]
    script = (f"table inet {outage.table} {{\n chain out {{\n"
              "  type filter hook output priority 0; policy accept;\n"
              + "".join(f"  {rule}\n" for rule in rules) + " }\n}\n")
    subprocess.run([NFT, "-f", "-"], input=script.encode(), check=True)
    return outage


def restore(outage: Outage) -> None:
    """Delete the table (idempotent: a table already gone is fine)."""
    subprocess.run([NFT, "delete", "table", "inet", outage.table], check=False,
                   capture_output=True)


@dataclass
class TwoAddressServer:
    server: RunningServer
    port: int

    def url(self, host: str, page: str, token: str) -> str:
        return f"http://{host}:{self.port}/{page}#token={token}"


@pytest.fixture
async def two_address_server() -> AsyncIterator[TwoAddressServer]:
    """The real server, listening on 127.0.0.1 and on CUT_HOST with the same port."""
    settings = make_settings()
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    port = settings.server.port
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await web.TCPSite(runner, CUT_HOST, port).start()
    try:
        yield TwoAddressServer(RunningServer(app, settings, token_authority(settings),
                                             settings.server.base_url), port)
    finally:
        await runner.cleanup()


LOCAL_UDP_PORTS = """async () => {
    const ports = new Set();
    for (const pc of window.__huizhenPeers ?? []) {
        (await pc.getStats()).forEach((s) => {
            if (s.type === "local-candidate" && s.protocol === "udp") ports.add(s.port);
        });
    }
    return [...ports];
}"""

# Frames decoded since `mark()`, over every peer connection of the page (new ones
# count from zero; a connection closed since is left out).
FRAME_PROBE = """() => {
    const total = async () => {
        const frames = new Map();
        for (const pc of window.__huizhenPeers ?? []) {
            let n = 0;
            (await pc.getStats()).forEach((s) => {
                if (s.type === "inbound-rtp" && s.kind === "video") n += s.framesDecoded ?? 0;
            });
            frames.set(pc, n);
        }
        return frames;
    };
    window.__outage = {
        base: new Map(),
        async mark() { this.base = await total(); },
        async since() {
            let n = 0;
            for (const [pc, f] of await total()) n += Math.max(0, f - (this.base.get(pc) ?? 0));
            return n;
        },
    };
}"""


async def link_lost(page: Page) -> bool:
    state = await page.evaluate("""() => ({
        link: window.huizhen.link.signalling,
        status: document.getElementById("status").dataset.state})""")
    return bool(state["link"] != "up" and state["status"] == "disconnected")


@pytest.mark.parametrize(("side", "seconds"), [
    ("ward", 5), ("expert", 5), ("ward", 45), ("expert", 45)])
async def test_video_resumes_after_an_outage(
        two_address_server: TwoAddressServer, chromium: Chromium, side: str,
        seconds: float) -> None:
    site = two_address_server
    server = site.server
    hosts = {"ward": CUT_HOST if side == "ward" else "127.0.0.1",
             "expert": CUT_HOST if side == "expert" else "127.0.0.1"}
    expert = await chromium.open("expert", site.url(
        hosts["expert"], "expert.html", server.token("expert", ROOM, "Dr. Test")))
    await wait_joined(expert)
    ward = await chromium.open("ward", site.url(
        hosts["ward"], "ward.html", server.token("ward", ROOM, "Ward 3 nurse")) + "&autostart=1")
    await frames_decoded(expert, 30, 40, chromium.log)
    await expert.evaluate(FRAME_PROBE)
    page = ward if side == "ward" else expert
    udp_ports = tuple(await page.evaluate(LOCAL_UDP_PORTS))
    assert udp_ports, str(chromium.log)

    outage = cut(site.port, udp_ports)
    try:
        started = time.monotonic()
        lost_after = None
        frozen = False
        await expert.evaluate("window.__outage.mark()")
        while time.monotonic() - started < seconds:
            if lost_after is None and await link_lost(page):
                lost_after = time.monotonic() - started
            if not frozen and time.monotonic() - started > 2.5:
                # The page gets nothing new while the link is cut (the picture freezes).
                await expert.evaluate("window.__outage.mark()")
                frozen = True
            await asyncio.sleep(0.1)
        assert frozen
        if side == "ward":
            assert await expert.evaluate("window.__outage.since()") <= 1, str(chromium.log)
        await expert.evaluate("window.__outage.mark()")
    finally:
        restore(outage)
    restored = time.monotonic()
    resumed_after = None
    while time.monotonic() - restored < 20:
        if await expert.evaluate("window.__outage.since()") >= 5:
            resumed_after = time.monotonic() - restored
            break
        await asyncio.sleep(0.05)
    print(f"\n{side} cut {seconds:.0f} s: disconnected shown after "
          f"{lost_after if lost_after is None else round(lost_after, 1)} s; video resumed "
          f"{resumed_after if resumed_after is None else round(resumed_after, 2)} s after "
          "the link returned")
    assert lost_after is not None and lost_after <= DISCONNECTED_WITHIN, str(chromium.log)
    assert resumed_after is not None and resumed_after <= RESUMED_WITHIN, str(chromium.log)

    # Recovered in place: joined again, one ward and one stream, no reload.
    await wait_joined(page)
    assert await page.evaluate("window.huizhen.link.signalling") == "up"
    assert await expert.evaluate("Object.keys(window.huizhen.subscriptions).length") == 1
    assert await expert.evaluate("""Object.values(window.huizhen.participants)
        .filter(p => p.role === 'ward').length""") == 1
    media = await expert.evaluate("window.huizhen.link.media")
    assert list(media.values()) == ["connected"], media
