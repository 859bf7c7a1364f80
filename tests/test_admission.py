"""A node at capacity refuses the next viewer (`server-busy`) and keeps those watching.

The policy (mediaserver/admission.py) is pure and tested with given clocks; the server
test makes the real server's event loop busy (blocking it in chunks, as a flood of
forwarding would) and joins with real signalling clients; the page test checks what a
Chinese-speaking viewer is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import expect

from mediaserver.admission import LoadAdmission
from signaling import MEDIA_SERVER
from signaling.client import SignalingClient, SignalingError
from tests.conftest import RunningServer, make_settings, serving
from tests.test_browser import Chromium, chromium

__all__ = ["chromium"]  # a fixture used by name below

ROOM = "grand-round-2"


def test_the_share_is_the_loops_cpu_over_the_last_window() -> None:
    gate = LoadAdmission(0.85, window=3.0)
    assert gate.share == 0.0 and gate.admits()  # nothing known yet: admitted
    for step in range(13):  # 6 s at 50 % of a core
        gate.observe(cpu_seconds=0.25 * step, now=0.5 * step)
    assert gate.share == pytest.approx(0.5) and gate.admits()
    for step in range(13, 20):  # then 3.5 s at 100 %
        gate.observe(cpu_seconds=0.25 * 12 + 0.5 * (step - 12), now=0.5 * step)
    assert gate.share == pytest.approx(1.0) and not gate.admits()
    for step in range(20, 27):  # quiet again: after a window, admitted
        gate.observe(cpu_seconds=0.25 * 12 + 0.5 * 7, now=0.5 * step)
    assert gate.share == pytest.approx(0.0) and gate.admits()


def test_once_refusing_viewers_are_taken_again_only_below_the_margin() -> None:
    gate = LoadAdmission(0.85, window=1.0, margin=0.1)
    cpu, now = 0.0, 0.0

    def run_at(share: float) -> bool:
        nonlocal cpu, now
        for _ in range(3):
            now += 0.5
            cpu += 0.5 * share
            gate.observe(cpu, now)
        return gate.admits()

    assert run_at(0.80) and not gate.refusing
    assert not run_at(0.90)  # at the limit: refusing
    assert not run_at(0.80)  # below it, but not below 0.75: still refusing
    assert run_at(0.70) and not gate.refusing  # below the margin: taken again
    assert run_at(0.80)  # and not refused again until the limit


def test_a_clock_going_back_or_standing_still_changes_nothing_and_zero_is_off() -> None:
    gate = LoadAdmission(0.5)
    gate.observe(0.0, 10.0)
    gate.observe(1.0, 11.0)
    gate.observe(5.0, 11.0)  # the same instant again
    gate.observe(9.0, 9.0)  # a clock that went back
    assert gate.share == pytest.approx(1.0)
    assert LoadAdmission(0.0).admits()
    with pytest.raises(ValueError):
        LoadAdmission(-0.1)


def busy_loop(seconds: float, duty: float = 0.9) -> asyncio.Task[None]:
    """Block the event loop ``duty`` of every 100 ms for ``seconds`` (the loop runs
    between the blocks: the server keeps answering, slowly)."""
    async def spin() -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            block = time.thread_time() + 0.1 * duty
            while time.thread_time() < block:
                pass
            await asyncio.sleep(0.1 * (1 - duty))
    return asyncio.get_running_loop().create_task(spin())


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    settings = make_settings(HUIZHEN_MEDIA_ADMIT_CPU="0.6",
                             HUIZHEN_SIGNALING_SOCKETS_PER_ADDRESS="0")
    async with serving(settings) as running:
        yield running


async def join(server: RunningServer, role: str, name: str, subject: str | None = None,
               previous: str | None = None) -> SignalingClient:
    client = SignalingClient(server.ws_url)
    await client.connect()
    token = server.authority.mint(room=ROOM, role=role, name=name, ttl=600, subject=subject)
    client.previous = previous
    try:
        await client.join(token)
    except BaseException:
        await client.close()
        raise
    return client


async def test_a_busy_node_refuses_new_viewers_only_and_takes_them_again_when_calm(
        server: RunningServer) -> None:
    media = server.app[MEDIA_SERVER]
    ward = await join(server, "ward", "bedside")  # opens the room: sampling starts
    watching = await join(server, "observer", "student 1", subject="student-1")
    opened = [ward, watching]
    try:
        await busy_loop(3.5)
        share = media.admission.share
        assert share > 0.6, share
        with pytest.raises(SignalingError) as refused:
            opened.append(await join(server, "observer", "student 2"))
        assert refused.value.code == "server-busy"
        assert "capacity" in str(refused.value)
        # Still busy: a publisher is taken, and so is a viewer coming back in place of
        # its own lost participant (it adds no load).
        opened.append(await join(server, "expert", "Dr. Wang"))
        assert watching.joined is not None
        previous = watching.joined["participant"]["id"]
        opened.append(await join(server, "observer", "student 1", subject="student-1",
                                 previous=previous))
        room = media.directory.local(ROOM)
        assert room is not None
        roles = sorted(p.role for p in room.participants.values() if not p.service)
        # The refused viewer left no trace; the rejoin replaced its old participant.
        assert roles == ["expert", "observer", "ward"], roles
        # Calm again for a window: the next viewer is admitted.
        await asyncio.sleep(3.5)
        calm = media.admission.share
        assert calm < 0.6, calm
        opened.append(await join(server, "observer", "student 2"))
        print(f"loop at {share:.0%} of a core: a viewer refused (server-busy), a publisher "
              f"and a viewer's rejoin taken; at {calm:.0%}: the viewer admitted")
    finally:
        await asyncio.gather(*(c.close() for c in opened), return_exceptions=True)


@contextlib.asynccontextmanager
async def busy_room(server: RunningServer, seconds: float) -> AsyncIterator[None]:
    """The bedside in the room and the server's loop busy for ``seconds``; entered once
    the busy share covers a whole window."""
    ward = await join(server, "ward", "bedside")
    spinning = busy_loop(seconds)
    try:
        await asyncio.sleep(3.2)
        yield
    finally:
        spinning.cancel()
        await ward.close()


@pytest.mark.browser
async def test_the_chinese_page_waits_while_the_server_is_busy_then_joins(
        server: RunningServer, chromium: Chromium) -> None:
    async with busy_room(server, 9.0):
        token = server.authority.mint(room=ROOM, role="observer", name="学员 3", ttl=600)
        page = await chromium.open("zh-busy", f"{server.base_url}/expert.html#token={token}",
                                   locale="zh-CN")
        status = page.locator("#status")
        await expect(status).to_have_attribute("data-state", "busy", timeout=15000)
        await expect(status).to_contain_text("服务器繁忙")
        waiting = await status.inner_text()
        refused_at = time.monotonic()
        # Calm again: the page joins by itself (every ~3 s, jittered), no click.
        await expect(status).to_have_attribute("data-state", "joined", timeout=30000)
        print(f"\nzh-CN page while busy: {waiting}\njoined by itself "
              f"{time.monotonic() - refused_at:.1f} s later: {await status.inner_text()}")



GIVE_UP = """async ([url, token]) => {
  const i18n = await import('/i18n.js');
  await i18n.loadCatalogue();
  const { SignalingClient } = await import('/signaling.js');
  const { renderStatus } = await import('/ui.js');
  const states = [];
  const client = new SignalingClient(token, { url, busyDelayMs: 200, busyForMs: 1500,
                                              onSettled: () => {} });
  client.on('state', ({ state }) => { if (states.at(-1) !== state) states.push(state); });
  const started = Date.now();
  client.start();
  while (client.state !== 'failed' && client.state !== 'joined'
         && Date.now() - started < 10000) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const node = document.createElement('p');
  renderStatus(node, { state: client.state, client, room: 'r', errors: [] });
  client.close();
  return { states, code: client.fatal?.code, text: node.textContent,
           seconds: (Date.now() - started) / 1000 };
}"""


@pytest.mark.browser
async def test_a_page_refused_for_load_for_too_long_stops_and_says_why(
        server: RunningServer, chromium: Chromium) -> None:
    """The page's client, its wait (120 s on the pages) shortened to 1.5 s."""
    async with busy_room(server, 12.0):
        page = await chromium.open("busy-units", f"{server.base_url}/whep.html",
                                   locale="zh-CN")
        token = server.authority.mint(room=ROOM, role="observer", name="学员 4", ttl=600)
        got = await page.evaluate(GIVE_UP, [server.ws_url, token])
    assert got["code"] == "server-busy", got
    assert got["states"][-2:] == ["busy", "failed"], got
    assert "服务器繁忙" in got["text"] and got["text"].startswith("已停止"), got
    print(f"gave up after {got['seconds']:.1f} s of server-busy: {got['text']}")
