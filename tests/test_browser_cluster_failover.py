"""A page moved to the room's node comes back through the node it was opened at when that
node dies (PROTOCOL.md, "Several nodes"): real nodes on the real Redis, one of them a child
process killed with SIGKILL, and Debian's Chromium.

The fragment carries where the page was first opened (`entry`); when its node stops
answering the page goes back there naming the node it left (`failed`), refuses the entry's
redirects to that node until the room is placed anew, and drops `failed` and `hops` once
joined."""

from __future__ import annotations

import asyncio
import contextlib
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Frame, Page, expect
from redis.asyncio import Redis

from contracts.catalogue import Catalogue
from huizhen.cluster import CLUSTER
from tests.redis_fixtures import SHARED_REDIS
from tests.test_browser import Chromium, chromium, wait_joined
from tests.test_cluster_nodes import (
    ROOM,
    close_all,
    cluster,
    cluster_variables,
    joined_at,
    joined_client,
    killable_node,
    local_rooms,
    publish_pattern,
    rejoin_through,
    wait_until_gone,
)

pytestmark = pytest.mark.browser
__all__ = ["chromium"]  # fixtures used by name below

CATALOGUE = Catalogue.load()


def fragment(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).fragment)


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Navigations:
    """Every navigation of a page's main frame, with when it happened (monotonic)."""

    def __init__(self, page: Page) -> None:
        self.seen: list[tuple[float, str]] = []
        page.on("framenavigated", self._navigated)
        self.page = page

    def _navigated(self, frame: Frame) -> None:
        if frame == self.page.main_frame:
            self.seen.append((time.monotonic(), frame.url))

    def since(self, moment: float) -> list[str]:
        return [url for at, url in self.seen if at >= moment]


async def page_value(page: Page, script: str) -> object:
    """``script`` evaluated in the page, or None while the page is between documents."""
    with contextlib.suppress(PlaywrightError):
        return await page.evaluate(script)
    return None


async def opened_and_moved(chromium: Chromium, name: str, entry: str, node: str,
                           token: str) -> tuple[Page, Navigations]:
    """Page ``name`` (zh-CN) opened at ``entry``, joined after its move to ``node``."""
    page = await chromium.open(name, f"{entry}/{name}.html#token={token}", locale="zh-CN")
    navigations = Navigations(page)
    await wait_joined(page, timeout=20)
    assert origin(page.url) == node
    assert fragment(page.url)["entry"] == [entry]
    return page, navigations


async def test_a_page_whose_node_is_killed_comes_back_through_its_entry_node_and_plays(
        chromium: Chromium, redis_prefix: tuple[Redis, str]) -> None:
    _, prefix = redis_prefix
    variables = cluster_variables(SHARED_REDIS, prefix)
    async with cluster(SHARED_REDIS, prefix, 1) as (b,), killable_node(variables) as (a, child):
        ward = await joined_at(a, b.token("ward"))  # the join at a places the room on a
        pc, _ = await publish_pattern(ward)
        things: list = [pc]
        try:
            token = b.token("expert", name="李医生")
            page, navigations = await opened_and_moved(chromium, "expert", b.base_url, a,
                                                       token)
            assert "hops" not in fragment(page.url)  # dropped once joined
            await wait_frames(page, 30, 30, chromium)

            child.kill()  # SIGKILL: no goodbye to Redis, its sockets drop
            killed = time.monotonic()
            # The bedside comes back through b (the Python client's way) and publishes again.
            await rejoin_through(ward, b.ws_url, b.token("ward"))
            pc_again, _ = await publish_pattern(ward)
            things.append(pc_again)
            rejoined = time.monotonic() - killed
            # The page comes back through b by itself and decodes the new stream.
            statuses: list[str] = []
            deadline = killed + 30
            while True:
                frames = 0
                if origin(page.url) == b.base_url:
                    frames = int(await page_value(page, "window.huizhen?.framesDecoded?.() ?? 0")
                                 or 0)
                    status = await page_value(page, "document.getElementById('status')"
                                                    "?.textContent ?? ''")
                    if status and (not statuses or statuses[-1] != status):
                        statuses.append(str(status))
                if frames >= 10:
                    break
                assert time.monotonic() < deadline, (
                    f"the page did not decode again through b: {page.url}, "
                    f"navigations {navigations.since(killed)}\n{chromium.log}")
                await asyncio.sleep(0.05)
            elapsed = time.monotonic() - killed
            await page.wait_for_function(
                "() => !/[#&](failed|hops)=/.test(location.hash)", timeout=5000)
            after = navigations.since(killed)
            moved = [url for url in after if urlsplit(url).fragment.find("failed=") >= 0]
            assert origin(page.url) == b.base_url
            assert "failed" not in fragment(page.url) and "hops" not in fragment(page.url)
            assert fragment(page.url)["token"] == [token]
            assert fragment(page.url)["entry"] == [b.base_url]
            # It never went to the dead node, nor to the browser's error page.
            assert all(origin(url) == b.base_url for url in after), after
            assert len(moved) == 1 and fragment(moved[0])["failed"] == [a], after
            assert local_rooms(b) == (ROOM,)
            assert await page.evaluate("window.huizhen.state") == "joined"
            print(f"node a killed: the bedside published again through b {rejoined:.2f} s "
                  f"later; the expert page came back through b by itself and decoded "
                  f"{frames} frames {elapsed:.2f} s after the kill; navigations after the "
                  f"kill: {len(after)}, all on b; status lines seen on b: {statuses}")
        finally:
            await close_all(*things, ward)


async def test_the_ward_page_comes_back_through_its_entry_and_starts_its_camera_again(
        chromium: Chromium, redis_prefix: tuple[Redis, str]) -> None:
    """The ward page's camera was started by hand (no `autostart` in its link): on the page
    it is moved to when its node dies, the camera starts again by itself."""
    _, prefix = redis_prefix
    variables = cluster_variables(SHARED_REDIS, prefix)
    async with cluster(SHARED_REDIS, prefix, 1) as (b,), killable_node(variables) as (a, child):
        observer = await joined_at(a, b.token("observer"))  # the room is placed on a
        try:
            page, navigations = await opened_and_moved(
                chromium, "ward", b.base_url, a, b.token("ward", name="3床护士"))
            assert "autostart" not in fragment(page.url)
            await page.evaluate("window.huizhen.startCamera()")
            publication = page.locator("#publication-state")
            await expect(publication).to_have_attribute("data-server-state", "connected",
                                                        timeout=20000)
            child.kill()
            killed = time.monotonic()
            deadline = killed + 30
            while not (origin(page.url) == b.base_url and await page_value(
                    page, "document.getElementById('publication-state')"
                          "?.dataset.serverState") == "connected"):
                assert time.monotonic() < deadline, f"{page.url}\n{chromium.log}"
                await asyncio.sleep(0.05)
            elapsed = time.monotonic() - killed
            assert fragment(page.url)["autostart"] == ["1"]
            assert "failed" not in fragment(page.url) and local_rooms(b) == (ROOM,)
            assert all(origin(url) == b.base_url for url in navigations.since(killed))
            print(f"node a killed: the ward page came back through b and published its "
                  f"camera again (server: connected) {elapsed:.2f} s later")
        finally:
            await close_all(observer)


async def wait_frames(page: Page, at_least: int, timeout: float, chromium: Chromium) -> int:
    deadline = time.monotonic() + timeout
    while True:
        frames = int(await page.evaluate("window.huizhen.framesDecoded()"))
        if frames >= at_least:
            return frames
        assert time.monotonic() < deadline, f"{frames} frames decoded\n{chromium.log}"
        await asyncio.sleep(0.1)


async def test_at_its_entry_a_page_does_not_follow_a_redirect_to_the_node_it_left(
        chromium: Chromium, redis_prefix: tuple[Redis, str]) -> None:
    """The entry still redirects to the failed node (its record has not expired): the page
    stays and says the consultation is being taken over, then joins once it is placed."""
    _, prefix = redis_prefix
    async with cluster(SHARED_REDIS, prefix, 2) as (a, b):
        ward = await joined_client(a, "ward")  # the room lives on a
        try:
            token = b.token("expert", name="李医生")
            address = (f"{b.base_url}/expert.html#token={token}&entry={b.base_url}"
                       f"&failed={a.base_url}&hops=2")
            page = await chromium.open("expert", address, locale="zh-CN")
            navigations = Navigations(page)
            status = page.locator("#status")
            relocating = CATALOGUE.text("live.status.relocating", "zh-CN")
            await page.wait_for_function(
                "() => window.huizhen?.state === 'relocating'", timeout=10000)
            assert await status.text_content() == relocating
            assert await status.get_attribute("data-state") == "relocating"
            await asyncio.sleep(1.5)  # it joins again every 0.5 s, and stays
            assert page.url == address and navigations.seen == []
            assert local_rooms(b) == ()
            # a stops heartbeating: once its record expires b places the room on itself.
            stopped = time.monotonic()
            await a.app[CLUSTER].registry.stop(deregister=False)
            await wait_until_gone(b, a.app[CLUSTER].node_id)
            await wait_joined(page, timeout=10)
            joined = time.monotonic() - stopped
            await page.wait_for_function("() => !location.hash.includes('failed=')",
                                         timeout=5000)
            assert origin(page.url) == b.base_url and local_rooms(b) == (ROOM,)
            assert fragment(page.url) == {"token": [token], "entry": [b.base_url]}
            assert all(origin(url) == b.base_url for _, url in navigations.seen)
            print(f"the page stayed at its entry while it redirected to the failed node; "
                  f"joined there {joined:.2f} s after that node stopped heartbeating "
                  f"(node_ttl 1 s); status while waiting: {relocating}")
        finally:
            await close_all(ward)


UNITS = """async () => {
  const s = await import('/signaling.js');
  const at = (origin, hash) => ({ origin, pathname: '/expert.html', search: '?x=1', hash });
  const B = 'http://b.example:8080', A = 'https://a.example';
  return {
    origins: ['javascript:alert(1)', 'data:text/html,hi', 'https://a.example/path',
              'https://u:p@a.example', 'ftp://a.example', '', 'a.example', A, B,
              'http://[::1]:9000'].map(s.httpOrigin),
    failoverBad: s.failoverPage(at(A, '#token=t&entry=javascript:alert(1)')),
    failoverPath: s.failoverPage(at(A, '#token=t&entry=' + encodeURIComponent(B + '/x'))),
    failoverSelf: s.failoverPage(at(A, '#token=t&entry=' + A)),
    failoverNone: s.failoverPage(at(A, '#token=t')),
    failover: s.failoverPage(at(A, '#token=t&entry=' + B + '&hops=1'), { autostart: '1' }),
    redirectFirst: s.redirectedPage(A + '/ignored', at(B, '#token=t')),
    redirectKeeps: s.redirectedPage(A, at(B, '#token=t&entry=http://c.example&failed=' + A)),
    redirectBadEntry: s.redirectedPage(A, at(B, '#token=t&entry=javascript:x')),
    settled: s.settledPage(at(A, '#token=t&entry=' + B + '&hops=2&failed=' + B)),
    settledNothing: s.settledPage(at(A, '#token=t&entry=' + B)),
  };
}"""


async def test_the_fragments_entry_and_failed_are_checked(
        chromium: Chromium, redis_prefix: tuple[Redis, str]) -> None:
    _, prefix = redis_prefix
    async with cluster(SHARED_REDIS, prefix, 1) as (b,):
        page = await chromium.open("units", f"{b.base_url}/whep.html")
        got = await page.evaluate(UNITS)
    a, other = "https://a.example", "http://b.example:8080"
    assert got["origins"] == [None] * 7 + [a, other, "http://[::1]:9000"]
    # An entry that is not an http(s) origin (or is this node) is no place to go back to.
    assert got["failoverBad"] is None and got["failoverPath"] is None
    assert got["failoverSelf"] is None and got["failoverNone"] is None
    assert got["failover"] == (f"{other}/expert.html?x=1#token=t&entry="
                               f"{quoted(other)}&failed={quoted(a)}&autostart=1")
    assert got["redirectFirst"] == f"{a}/expert.html?x=1#token=t&hops=1&entry={quoted(other)}"
    assert got["redirectKeeps"] == (f"{a}/expert.html?x=1#token=t&entry="
                                    f"{quoted('http://c.example')}&hops=1")
    assert got["redirectBadEntry"] == (f"{a}/expert.html?x=1#token=t&entry={quoted(other)}"
                                       "&hops=1")
    assert got["settled"] == f"/expert.html?x=1#token=t&entry={quoted(other)}"
    assert got["settledNothing"] is None


def quoted(value: str) -> str:
    return value.replace(":", "%3A").replace("/", "%2F")


GIVE_UP = """async ([url, token, failed, locale]) => {
  const i18n = await import('/i18n.js');
  await i18n.loadCatalogue();
  const { SignalingClient } = await import('/signaling.js');
  const { renderStatus } = await import('/ui.js');
  const here = { origin: location.origin, pathname: '/expert.html', search: '',
                 hash: '#token=t&entry=' + location.origin + '&failed=' + failed };
  const moves = [];
  const states = [];
  const client = new SignalingClient(token, { url, location: here, relocateDelayMs: 200,
    relocateForMs: 2000, onRedirect: (target) => moves.push(target), onSettled: () => {} });
  client.on('state', ({ state }) => { if (states.at(-1) !== state) states.push(state); });
  const started = Date.now();
  client.start();
  while (client.state !== 'failed' && Date.now() - started < 10000) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const node = document.createElement('p');
  renderStatus(node, { state: client.state, client, room: 'bed-1', errors: [] });
  return { states, moves, code: client.fatal?.code, text: node.textContent,
           kind: node.dataset.kind, seconds: (Date.now() - started) / 1000 };
}"""


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
async def test_a_page_redirected_to_the_node_it_left_for_too_long_shows_a_clear_failure(
        chromium: Chromium, redis_prefix: tuple[Redis, str], locale: str) -> None:
    """The same client, its give-up time (60 s on the pages) shortened to 2 s."""
    _, prefix = redis_prefix
    async with cluster(SHARED_REDIS, prefix, 2) as (a, b):
        ward = await joined_client(a, "ward")  # the room lives on a, which stays alive
        try:
            page = await chromium.open("units", f"{b.base_url}/whep.html", locale=locale)
            got = await page.evaluate(GIVE_UP, [b.ws_url, b.token("expert"), a.base_url,
                                                locale])
            assert local_rooms(b) == ()
        finally:
            await close_all(ward)
    reason = CATALOGUE.text("live.error.node-lost", locale)
    assert got["moves"] == [] and got["code"] == "node-lost"
    assert got["states"] == ["connecting", "joining", "relocating", "failed"], got
    assert got["text"] == CATALOGUE.text("live.status.stopped", locale).replace(
        "{reason}", reason)
    assert got["kind"] == "error"
    print(f"{locale}: gave up after {got['seconds']:.1f} s of redirects to the node it left: "
          f"{got['text']}")
