"""The PTZ pad, the vitals panel and the ward's takeover control in a real headless Chromium.

The real server runs with an in-test ``RoomServices`` (``FakeDevices``) installed
before the app starts: it keeps a simplified PTZ lease (ward outranks expert),
records every PTZ command with its arrival time, returns ``{"ptz", "vitals"}`` for
`joined` and pushes `ptz-state` / `vitals` events through ``Room.broadcast``. No
camera or monitor is involved. Chromium is Debian's /usr/bin/chromium, launched as
in tests/test_browser.py; without it these tests fail.
Set HUIZHEN_SCREENSHOTS=<dir> to keep a screenshot of the expert page (devices-expert.png).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import statistics
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Page, async_playwright, expect

from contracts.ptz import PtzRequest
from contracts.roles import PTZ_RANKS
from huizhen.app import create_app, token_authority
from mediaserver import LocalRoomBus, MediaServer
from signaling import MEDIA_SERVER, ROOM_SERVICES, Caller, ServiceError
from tests.conftest import RunningServer, make_settings
from tests.test_browser import Chromium, wait_joined

pytestmark = pytest.mark.browser

ROOM = "bed-12"
RANKS = PTZ_RANKS
REFRESH_S = 0.150  # the pad's refresh period (web_client/ptz.js)
DEADMAN_S = 0.400  # the server stops a move not refreshed for this long


@dataclass
class Recorded:
    at: float  # time.monotonic() when the server handed the command to the services
    participant: str
    name: str
    role: str
    command: PtzRequest

    @property
    def action(self) -> str:
        return self.command.action


class FakeDevices:
    """A ``RoomServices`` for one room: a simplified PTZ lease and a command log."""

    def __init__(self, media: MediaServer, room: str = ROOM) -> None:
        self.media = media
        self.room = room
        self.commands: list[Recorded] = []
        self.state: dict[str, Any] = {"holder": None, "holderName": None, "holderRole": None,
                                      "camera": "online", "moving": False, "motion": None}
        self.vitals: list[dict[str, Any]] = []

    # RoomServices -------------------------------------------------------------

    def room_state(self, room: str) -> dict[str, Any]:
        if room != self.room:
            return {}
        return {"ptz": dict(self.state), "vitals": list(self.vitals)}

    async def ptz(self, caller: Caller, command: PtzRequest) -> None:
        self.commands.append(Recorded(time.monotonic(), caller.participant_id, caller.name,
                                      caller.role, command))
        holder, action = self.state["holder"], command.action
        if action == "stop":  # anyone allowed to steer may stop; the lease stays
            if self.state["camera"] != "online":
                raise ServiceError("camera-offline", "the camera does not answer")
            self.set_state(moving=False, motion=None)
            return
        if action == "release":
            if holder == caller.participant_id:
                self.set_state(holder=None, holderName=None, holderRole=None, moving=False)
            return
        if holder not in (None, caller.participant_id) and (
                RANKS[caller.role] <= RANKS.get(self.state["holderRole"], 0)):
            raise ServiceError("ptz-denied", "another participant is steering the camera")
        if self.state["camera"] != "online" and action != "acquire":
            raise ServiceError("camera-offline", "the camera does not answer")
        moving = action == "move" and any((command.pan, command.tilt, command.zoom))
        self.set_state(holder=caller.participant_id, holderName=caller.name,
                       holderRole=caller.role, moving=moving, motion="move" if moving else None)

    def participant_left(self, room: str, participant_id: str) -> None:
        if room == self.room and self.state["holder"] == participant_id:
            self.set_state(holder=None, holderName=None, holderRole=None, moving=False)

    # test helpers -------------------------------------------------------------

    def set_state(self, **changes: Any) -> None:
        state = {**self.state, **changes}
        if state != self.state:
            self.state = state
            self.push("ptz-state", state)

    def push(self, kind: str, body: dict[str, Any], room: str | None = None) -> None:
        """An application event to every participant of the room, as the device hub sends it."""
        target = self.media.directory.local(room or self.room)
        assert target is not None, f"nobody is in room {room or self.room}"
        target.broadcast(kind, body)

    def actions(self, since: int = 0) -> list[str]:
        return [c.action for c in self.commands[since:]]


@dataclass
class DeviceServer:
    server: RunningServer
    devices: FakeDevices

    def url(self, page: str, role: str, name: str, room: str = ROOM) -> str:
        token = self.server.token(role, room=room, name=name)
        return f"{self.server.base_url}/{page}#token={token}"


@pytest.fixture
async def device_server() -> AsyncIterator[DeviceServer]:
    """The real server with FakeDevices as its RoomServices (set before the app is frozen)."""
    settings = make_settings()
    app = create_app(settings)
    devices = FakeDevices(app[MEDIA_SERVER])
    app[ROOM_SERVICES] = devices
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, settings.server.host, settings.server.port)
    await site.start()
    try:
        server = RunningServer(app, settings, token_authority(settings), settings.server.base_url)
        yield DeviceServer(server, devices)
    finally:
        await runner.cleanup()


@pytest.fixture
async def chromium() -> AsyncIterator[Chromium]:
    async with async_playwright() as playwright:
        instance = Chromium(playwright)
        try:
            yield instance
        finally:
            if instance.browser is not None:
                await instance.browser.close()
        # Uncaught exceptions in the pages' scripts fail the test (teardown error).
        errors = [line for line in instance.log.lines if "pageerror" in line or "error:" in line]
        assert not errors, "\n".join(errors)


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


async def until_stop(devices: FakeDevices, since: int, what: str) -> None:
    await until(lambda: "stop" in devices.actions(since), 2, f"the stop {what}")


async def open_page(chromium: Chromium, ds: DeviceServer, page: str, role: str, name: str,
                    room: str = ROOM, lang: str | None = None) -> Page:
    """``lang``: the page's language (lang= in the fragment); Chromium's (English) if None."""
    url = ds.url(page, role, name, room) + (f"&lang={lang}" if lang else "")
    opened = await chromium.open(f"{role}:{name}", url)
    await wait_joined(opened)
    return opened


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def numeric(vital: str, value: float, unit: str, at: datetime, name: str = "") -> dict[str, Any]:
    return {"vital": vital, "code": "", "codeSystem": "MDC", "name": name or vital.upper(),
            "value": value, "unit": unit, "loinc": None, "status": "R", "observedAt": iso(at)}


def pleth(count: int, rate: float, at: datetime, phase: float = 0.0) -> dict[str, Any]:
    """A plethysmogram-like curve, ``count`` samples at ``rate`` Hz (72 beats/min)."""
    values = []
    for i in range(count):
        beat = ((phase + i / rate) * 1.2) % 1.0
        values.append(round(50 + 40 * math.exp(-((beat - 0.2) / 0.08) ** 2)
                            + 15 * math.exp(-((beat - 0.5) / 0.1) ** 2), 2))
    return {"vital": "pleth", "code": "150452", "codeSystem": "MDC",
            "name": "MDC_PULS_OXIM_PLETH", "values": values, "sampleRate": rate,
            "unit": "{arb'U}", "loinc": None, "status": "R", "observedAt": iso(at)}


async def press_and_hold(page: Page, selector: str, seconds: float) -> tuple[float, float]:
    """Hold the mouse on ``selector``; returns (pressed, released) in time.monotonic()."""
    box = await page.locator(selector).bounding_box()
    assert box is not None, selector
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    pressed = time.monotonic()
    await page.mouse.down()
    await asyncio.sleep(seconds)
    released = time.monotonic()
    await page.mouse.up()
    return pressed, released


def check_hold(commands: list[Recorded], pressed: float, released: float,
               direction: Callable[[PtzRequest], bool], label: str) -> list[float]:
    """One held move: moves refreshed every ~150 ms, then exactly one stop; returns the gaps."""
    actions = [c.action for c in commands]
    assert actions and actions[0] == "move", (label, actions)
    assert actions[-1] == "stop" and actions.count("stop") == 1, (label, actions)
    assert set(actions[:-1]) == {"move"}, (label, actions)
    moves = commands[:-1]
    first, stop = moves[0], commands[-1]
    assert direction(first.command), (label, first.command)
    assert {(m.command.pan, m.command.tilt, m.command.zoom) for m in moves} == {
        (first.command.pan, first.command.tilt, first.command.zoom)}, f"{label}: the same move"
    assert first.at - pressed < 0.3, f"{label}: first move {first.at - pressed:.3f} s after press"
    gaps = [b.at - a.at for a, b in itertools.pairwise(moves)]
    assert gaps and max(gaps) < DEADMAN_S - 0.1, f"{label}: refresh gaps {gaps}"
    assert abs(statistics.median(gaps) - REFRESH_S) <= 0.05, f"{label}: refresh gaps {gaps}"
    assert 0 <= stop.at - released < 0.25, f"{label}: stop {stop.at - released:.3f} s after release"
    return gaps


async def test_holding_an_arrow_moves_refreshes_and_stops_on_release(
        device_server: DeviceServer, chromium: Chromium) -> None:
    ds, devices = device_server, device_server.devices
    page = await open_page(chromium, ds, "expert.html", "expert", "Dr. Li")
    right = '#ptz [data-ptz="right"]'
    await expect(page.locator("#ptz")).to_be_visible()  # joined.ptz was present
    await expect(page.locator(right)).to_be_enabled()
    assert await page.evaluate("window.huizhen.ptz.state.camera") == "online"

    # Press and hold for 1 s: move (pan > 0) at once, refreshed every ~150 ms, stop on release.
    pressed, released = await press_and_hold(page, right, 1.0)
    await until_stop(devices, 0, "after the release")
    await asyncio.sleep(0.3)  # nothing follows the stop
    held = list(devices.commands)
    moves = [c for c in held if c.action == "move"]
    gaps = check_hold(held, pressed, released,
                      lambda m: m.pan > 0 and m.tilt == 0 and m.zoom == 0, "pointer")
    assert len(moves) >= 4, f"only {len(moves)} moves in a 1 s hold"
    assert moves[-1].at > released - 0.25  # refreshed until the end
    print(f"\npointer hold 1.0 s: {len(moves)} moves, pan={moves[0].command.pan}, gaps "
          f"{[round(g * 1000) for g in gaps]} ms, first move "
          f"+{(moves[0].at - pressed) * 1000:.0f} ms after press, "
          f"stop +{(held[-1].at - released) * 1000:.0f} ms after release")
    await expect(page.locator("#ptz-holder")).to_have_text("You have control")

    # Sliding off the button stops at once (pointerleave), although the button is still down.
    mark = len(devices.commands)
    box = await page.locator(right).bounding_box()
    assert box is not None
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    await page.mouse.down()
    await asyncio.sleep(0.35)
    left_at = time.monotonic()
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] - 200)
    await until_stop(devices, mark, "after leaving the button")
    await page.mouse.up()
    await asyncio.sleep(0.3)
    assert devices.actions(mark)[-1] == "stop" and devices.actions(mark).count("stop") == 1
    assert devices.commands[-1].at - left_at < 0.25

    # Keyboard: with the pad focused, holding ArrowUp tilts up with the same refresh rule.
    mark = len(devices.commands)
    await page.locator("#ptz-pad").focus()
    pressed = time.monotonic()
    await page.keyboard.down("ArrowUp")
    await asyncio.sleep(0.6)
    released = time.monotonic()
    await page.keyboard.up("ArrowUp")
    await until_stop(devices, mark, "after the key up")
    await asyncio.sleep(0.3)
    check_hold(devices.commands[mark:], pressed, released,
               lambda m: m.tilt > 0 and m.pan == 0 and m.zoom == 0, "keyboard")

    # The window losing focus, or the page being hidden, stops a hold at once.
    for how, lose in [("blur", "window.dispatchEvent(new Event('blur'))"),
                      ("hidden", "Object.defineProperty(document, 'visibilityState', "
                                 "{value: 'hidden', configurable: true}); "
                                 "document.dispatchEvent(new Event('visibilitychange'))")]:
        mark = len(devices.commands)
        await page.locator('#ptz [data-ptz="zoom-in"]').focus()
        await page.keyboard.down("+")
        await asyncio.sleep(0.3)
        lost = time.monotonic()
        await page.evaluate(lose)
        await until_stop(devices, mark, f"on {how}")
        await page.keyboard.up("+")
        await asyncio.sleep(0.2)
        actions = devices.actions(mark)
        assert actions[-1] == "stop" and actions.count("stop") == 1, (how, actions)
        assert devices.commands[mark].command.zoom > 0, how
        assert devices.commands[-1].at - lost < 0.25, how
        await page.evaluate("delete document.visibilityState")


async def test_the_pad_shows_who_holds_the_camera(
        device_server: DeviceServer, chromium: Chromium) -> None:
    ds, devices = device_server, device_server.devices
    page = await open_page(chromium, ds, "expert.html", "expert", "Dr. Li")
    holder = page.locator("#ptz-holder")
    await expect(holder).to_have_text("Nobody has control")
    await expect(page.locator("#ptz-control")).to_have_text("Take control")

    devices.set_state(holder="p-ward0001", holderName="Ward 3 nurse", holderRole="ward",
                      moving=True)
    await expect(holder).to_have_text("Ward 3 nurse (Ward) has control")
    await expect(page.locator("#ptz-moving")).to_have_attribute("data-moving", "true")
    state = await page.evaluate("window.huizhen.ptz.state")
    assert state == devices.state, state

    # A home runs for seconds: the pad says so until ptz-state reports its end.
    moving = page.locator("#ptz-moving")
    devices.set_state(motion="home")
    await expect(moving).to_have_attribute("data-motion", "home")
    await expect(moving).to_contain_text("Returning home…")
    devices.set_state(moving=False, motion=None)
    await expect(moving).to_have_attribute("data-moving", "false")
    await expect(moving).to_contain_text("still")

    devices.set_state(camera="offline", moving=False)
    await expect(page.locator("#ptz-camera")).to_have_attribute("data-state", "offline")
    await expect(page.locator("#ptz-camera")).to_contain_text("offline")

    # A room without a camera: no pad, until a ptz-state event says there is one.
    other = await open_page(chromium, ds, "expert.html", "expert", "Dr. Wang", room="bed-99")
    assert await other.evaluate("window.huizhen.ptz.state") is None
    await expect(other.locator("#ptz")).to_be_hidden()
    await expect(other.locator("#vitals")).to_be_hidden()
    devices.push("ptz-state", {"holder": None, "holderName": None, "holderRole": None,
                               "camera": "online", "moving": False}, room="bed-99")
    await expect(other.locator("#ptz")).to_be_visible()
    await expect(other.locator("#ptz-holder")).to_have_text("Nobody has control")

    # An observer (no `ptz` grant) never sees the pad.
    observer = await open_page(chromium, ds, "expert.html", "observer", "Student")
    await expect(observer.locator("#ptz")).to_be_hidden()


async def test_vitals_show_numbers_trends_and_the_waveform(
        device_server: DeviceServer, chromium: Chromium) -> None:
    ds, devices = device_server, device_server.devices
    now = datetime.now(UTC)
    devices.vitals = [numeric("rr", 16, "/min", now - timedelta(minutes=2)),
                      numeric("temp", 36.8, "Cel", now)]
    page = await open_page(chromium, ds, "expert.html", "expert", "Dr. Li")
    vitals = page.locator("#vitals")
    await expect(vitals).to_be_visible()

    def tile(key: str) -> Any:
        return page.locator(f'#vitals .vital[data-vital="{key}"]')

    # From joined.vitals: an RR two minutes old is greyed out; the temperature is fresh.
    await expect(tile("rr").locator(".value")).to_have_text("16")
    await expect(tile("rr")).to_have_attribute("data-stale", "true")
    await expect(tile("temp").locator(".value")).to_have_text("36.8")
    await expect(tile("temp").locator(".vital-unit")).to_have_text("°C")
    await expect(tile("temp")).to_have_attribute("data-stale", "false")

    now = datetime.now(UTC)
    devices.push("vitals", {"device": "mon-1", "samples": [
        numeric("spo2", 97, "%", now), numeric("hr", 72, "/min", now),
        numeric("nibp_sys", 121, "mm[Hg]", now), numeric("nibp_dia", 79, "mm[Hg]", now),
        numeric("nibp_mean", 93, "mm[Hg]", now), pleth(100, 100.0, now)]})
    await expect(tile("spo2").locator(".value")).to_have_text("97")
    await expect(tile("spo2").locator(".vital-unit")).to_have_text("%")
    await expect(tile("hr").locator(".value")).to_have_text("72")
    await expect(tile("hr").locator(".vital-unit")).to_have_text("/min")
    await expect(tile("hr")).to_have_attribute("data-stale", "false")
    await expect(tile("nibp").locator(".value")).to_have_text("121/79")
    await expect(tile("nibp").locator(".vital-sub")).to_have_text("(93)")
    await expect(tile("nibp").locator(".vital-unit")).to_have_text("mmHg")
    assert await page.evaluate("window.huizhen.vitals") == {
        "rr": 16, "temp": 36.8, "spo2": 97, "hr": 72, "nibp_sys": 121, "nibp_dia": 79,
        "nibp_mean": 93}

    # The pleth waveform plays back at its sample rate: 100 samples take about a second.
    await expect(page.locator('#vitals .wave[data-wave="pleth"]')).to_be_visible()
    await page.wait_for_function("() => window.huizhen.waveforms.pleth?.played > 0", timeout=2000)
    started = time.monotonic()
    await asyncio.sleep(0.4)
    wave = await page.evaluate("window.huizhen.waveforms.pleth")
    elapsed = time.monotonic() - started
    assert wave["sampleRate"] == 100 and wave["received"] == 100, wave
    assert 10 < wave["played"] < 90, f"{wave} after {elapsed:.2f} s"
    await page.wait_for_function("() => window.huizhen.waveforms.pleth.played === 100",
                                 timeout=3000)
    done = time.monotonic() - started
    assert 0.4 < done < 1.6, f"100 samples at 100 Hz played in {done:.2f} s"
    print(f"\npleth: {wave['played']} samples played {elapsed:.2f} s after playback began; "
          f"all 100 after {done:.2f} s")

    # Late samples (a backlog) join the trends but do not replace the latest values.
    for minutes_ago, (hr, spo2) in zip(range(4, 0, -1), [(80, 95), (77, 96), (75, 96), (74, 97)],
                                       strict=True):
        at = datetime.now(UTC) - timedelta(minutes=minutes_ago)
        devices.push("vitals", {"device": "mon-1", "samples": [
            numeric("hr", hr, "/min", at), numeric("spo2", spo2, "%", at)]})
    await page.wait_for_function("() => window.huizhen.vitalSamples.hr.ageMs < 30000")
    assert await page.evaluate("window.huizhen.vitals.hr") == 72
    await expect(tile("hr").locator(".value")).to_have_text("72")
    directory = os.environ.get("HUIZHEN_SCREENSHOTS")
    if directory:  # a few seconds of a live-looking waveform first
        for i in range(3):
            devices.push("vitals", {"device": "mon-1", "samples": [
                pleth(50, 100.0, datetime.now(UTC), phase=i * 0.5)]})
            await asyncio.sleep(0.5)
        await page.screenshot(path=str(Path(directory) / "devices-expert.png"), full_page=True)


async def test_refusals_are_shown_near_the_pad_and_a_refused_move_is_not_repeated(
        device_server: DeviceServer, chromium: Chromium) -> None:
    ds, devices = device_server, device_server.devices
    devices.state.update(holder="p-ward0001", holderName="Ward 3 nurse", holderRole="ward")
    page = await open_page(chromium, ds, "expert.html", "expert", "Dr. Li")
    error = page.locator("#ptz-error")
    await expect(page.locator("#ptz-holder")).to_have_text("Ward 3 nurse (Ward) has control")
    await expect(error).to_be_hidden()

    await page.locator("#ptz-control").click()  # "Take control": ward staff outrank experts
    await expect(error).to_be_visible()
    await expect(error).to_have_attribute("data-code", "ptz-denied")
    await expect(error).to_have_text("Camera control refused: someone else is steering")
    assert devices.actions() == ["acquire"]
    last = await page.evaluate("window.huizhen.ptz.lastError")
    assert last["code"] == "ptz-denied" and last["action"] == "acquire", last

    # Holding an arrow while refused: one move, no refresh storm, no stop.
    await press_and_hold(page, '#ptz [data-ptz="left"]', 0.6)
    await asyncio.sleep(0.3)
    assert devices.actions() == ["acquire", "move"], devices.actions()

    # The lease is free but the camera does not answer: presets report camera-offline.
    devices.set_state(holder=None, holderName=None, holderRole=None, camera="offline")
    await expect(page.locator("#ptz-camera")).to_have_attribute("data-state", "offline")
    await page.locator('#ptz [data-preset="2"]').click()
    await expect(error).to_have_attribute("data-code", "camera-offline")
    recalled = devices.commands[-1].command
    assert (recalled.action, recalled.preset) == ("preset-recall", 2)

    # Back online: Shift+click stores a preset, Save… then a click too, Home goes home.
    devices.set_state(camera="online")
    await page.locator('#ptz [data-preset="4"]').click(modifiers=["Shift"])
    await expect(error).to_have_text("Saved preset 5")
    await page.locator("#ptz .ptz-save").click()
    await page.locator('#ptz [data-preset="0"]').click()
    await expect(error).to_have_text("Saved preset 1")
    await page.locator('#ptz [data-preset="0"]').click()
    await expect(error).to_have_text("Going to preset 1")
    await page.locator('#ptz [data-ptz="home"]').click()
    await until(lambda: devices.actions()[-1] == "home", 2, "home")
    tail = [(c.action, c.command.preset) for c in devices.commands[-4:]]
    assert tail == [("preset-set", 4), ("preset-set", 0), ("preset-recall", 0), ("home", None)]


async def test_ward_staff_take_the_camera_from_the_expert(
        device_server: DeviceServer, chromium: Chromium) -> None:
    ds, devices = device_server, device_server.devices
    expert = await open_page(chromium, ds, "expert.html", "expert", "Dr. Li")
    await expert.locator("#ptz-control").click()
    await expect(expert.locator("#ptz-holder")).to_have_text("You have control")
    await expect(expert.locator("#ptz-control")).to_have_text("Release")

    ward = await open_page(chromium, ds, "ward.html", "ward", "Ward 3 nurse")
    take = ward.locator("#ptz-control")
    await expect(ward.locator("#ptz-holder")).to_have_text("Dr. Li (Specialist) has control")
    await expect(take).to_have_text("Take camera control")
    await ward.locator("#ptz-stop").click()  # anyone may stop, without taking control
    await until(lambda: devices.actions()[-1:] == ["stop"], 2, "stop")
    await expect(ward.locator("#ptz-holder")).to_have_text("Dr. Li (Specialist) has control")
    await take.click()
    await expect(ward.locator("#ptz-holder")).to_have_text("You have control")
    await expect(take).to_have_text("Release camera control")
    await expect(expert.locator("#ptz-holder")).to_have_text("Ward 3 nurse (Ward) has control")
    await take.click()
    await expect(ward.locator("#ptz-holder")).to_have_text("Nobody has control")
    await expect(expert.locator("#ptz-holder")).to_have_text("Nobody has control")
    assert [(c.action, c.role) for c in devices.commands] == [
        ("acquire", "expert"), ("stop", "ward"), ("acquire", "ward"), ("release", "ward")]
    directory = os.environ.get("HUIZHEN_SCREENSHOTS")
    if directory:
        await ward.screenshot(path=str(Path(directory) / "devices-ward.png"), full_page=True)


# --- monitor alarms and a change of patient (the real DeviceHub routing) ------------------

MONITOR = "080019FFFE0B4020"  # OBX-18 of the GE sample


def bound_hub(ds: DeviceServer, tmp_path: Path) -> Any:
    """A DeviceHub (not started: routing only) bound to the page's room, sending through
    the same media server as FakeDevices."""
    from devices.binding import BedBinding, parse_monitor
    from huizhen.device_hub import DeviceHub

    return DeviceHub(LocalRoomBus(ds.server.app[MEDIA_SERVER].directory),
                     [BedBinding(ROOM, monitor=parse_monitor(f"hl7:{MONITOR}"))],
                     f"sqlite:///{tmp_path / 'devices.sqlite3'}")


def ge_message(hr: str = "", *, patient: str = "HED12") -> Any:
    """The GE sample (+ an HR row ``value|unit|range|flags``), decoded as the listener does."""
    from devices.hl7.oru import decode_oru
    from tests.test_hl7_fixtures import GE_SAMPLE

    text = GE_SAMPLE.replace("HED12^^^PID^MR", f"{patient}^^^PID^MR")
    if hr:
        text += (f"OBX|50|NM|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.1|{hr}|||R|||||||"
                 f"{MONITOR}^B40_GE\r")
    return decode_oru(text.encode())


async def test_an_obx8_hh_value_shows_a_high_priority_alarm_until_normal(
        device_server: DeviceServer, chromium: Chromium, tmp_path: Path) -> None:
    ds = device_server
    hub = bound_hub(ds, tmp_path)
    page = await open_page(chromium, ds, "expert.html", "expert", "Dr. Li", lang="zh-CN")
    english = await open_page(chromium, ds, "expert.html", "expert", "Dr. Wu", lang="en")
    high = ge_message("188|264864^MDC_DIM_BEAT_PER_MIN^MDC|50-120|HH")
    assert [(a.vital, a.priority) for a in high.alarms] == [("hr", "high")]
    hub.route(high.samples, high.alarms)
    alarm = page.locator("#vitals .alarms .alarm")
    await expect(alarm).to_have_count(1)
    await expect(alarm).to_be_visible()
    await expect(alarm).to_have_class("alarm alarm-high")
    # In the page's language: Chinese here, English on the English page.
    await expect(alarm.locator(".alarm-text")).to_have_text("高优先级报警：心率 过高")
    await expect(english.locator("#vitals .alarms .alarm .alarm-text")).to_have_text(
        "High priority alarm: HR high")
    await expect(page.locator('#vitals .vital[data-vital="hr"] .value')).to_have_text("188")
    # A PCD-04 medium alarm beside it (yellow), listed after the high one.
    from devices.hl7.oru import decode_oru
    from tests.test_hl7_fixtures import r40, spo2_alarm_rows

    medium = decode_oru(r40(*spo2_alarm_rows("start", priority="PM~SP"))
                        .replace("0012A1FFFE000001", MONITOR).encode())
    hub.route(medium.samples, medium.alarms)
    await expect(alarm).to_have_count(2)
    await expect(alarm.nth(1)).to_have_class("alarm alarm-medium")
    await expect(alarm.nth(1).locator(".alarm-text")).to_have_text(
        "中优先级报警：SpO2 过低（SpO2 LOW）")
    await expect(english.locator("#vitals .alarms .alarm").nth(1)).to_have_text(
        "Medium priority alarm: SpO2 low (SpO2 LOW)")
    assert await alarm.nth(1).evaluate("n => getComputedStyle(n).backgroundColor") == \
        "rgb(253, 216, 53)"
    directory = os.environ.get("HUIZHEN_SCREENSHOTS")
    if directory:
        await page.screenshot(path=str(Path(directory) / "devices-alarms.png"), full_page=True)
    # A normal HR clears the OBX-8 alarm; the PCD-04 one stays until its "end".
    normal = ge_message("80|264864^MDC_DIM_BEAT_PER_MIN^MDC|50-120|N")
    hub.route(normal.samples, normal.alarms)
    await expect(alarm).to_have_count(1)
    await expect(alarm).to_have_class("alarm alarm-medium")
    end = decode_oru(r40(*spo2_alarm_rows("end", priority="PM~SP"))
                     .replace("0012A1FFFE000001", MONITOR).encode())
    hub.route(end.samples, end.alarms)
    await expect(alarm).to_have_count(0)
    await expect(page.locator("#vitals .alarms")).to_be_hidden()


async def test_a_change_of_patient_shows_the_warning(
        device_server: DeviceServer, chromium: Chromium, tmp_path: Path) -> None:
    ds = device_server
    hub = bound_hub(ds, tmp_path)
    page = await open_page(chromium, ds, "expert.html", "expert", "Dr. Li", lang="zh-CN")
    first = ge_message("72|264864^MDC_DIM_BEAT_PER_MIN^MDC|50-120|")
    hub.route(first.samples)  # the listener's older call: samples only
    await expect(page.locator('#vitals .vital[data-vital="hr"] .value')).to_have_text("72")
    warning = page.locator("#vitals .patient-changed")
    await expect(warning).to_be_hidden()
    other = ge_message("75|264864^MDC_DIM_BEAT_PER_MIN^MDC|50-120|", patient="ZZZ77")
    hub.route(other.samples, other.alarms)
    await expect(warning).to_be_visible()
    await expect(warning.locator(".patient-changed-text")).to_have_text(
        "床旁监护仪的患者已更换，请核对患者身份")
    assert await page.evaluate("window.huizhen.patientChanged.device") == MONITOR
    content = await page.content()
    assert "ZZZ77" not in content and "HED12" not in content  # never the identity
    directory = os.environ.get("HUIZHEN_SCREENSHOTS")
    if directory:
        await page.screenshot(path=str(Path(directory) / "devices-patient-changed.png"))
    await warning.locator("button").click()
    await expect(warning).to_be_hidden()
