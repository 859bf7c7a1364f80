"""End to end in Chromium: the expert page's PTZ pad moves the simulated VISCA camera, and the
HL7 monitor's numbers appear on the page. Real server, real simulators, real browser."""

from __future__ import annotations

import asyncio
import time

import hl7
import hl7.mllp
import pytest
from playwright.async_api import expect

from tests.test_browser_devices import Chromium, chromium, press_and_hold  # noqa: F401
from tests.test_devices_room import ROOM, Bedside, bedside  # noqa: F401
from tests.test_hl7_fixtures import GE_SAMPLE

pytestmark = pytest.mark.browser


async def test_pressing_the_pad_moves_the_simulated_camera(bedside: Bedside,  # noqa: F811
                                                           chromium: Chromium) -> None:  # noqa: F811
    token = bedside.token("expert", "Dr. Pad")
    page = await chromium.open("expert", f"{bedside.base_url}/expert.html#token={token}")
    right = '#ptz [data-ptz="right"]'
    await expect(page.locator(right)).to_be_enabled(timeout=15_000)
    await expect(page.locator("#ptz")).to_contain_text("online")
    start = bedside.pan()

    pressed, released = await press_and_hold(page, right, 1.0)
    moved = bedside.pan()
    print(f"\nthe simulated camera panned from {start} to {moved} during a 1 s press")
    assert moved > start + 10
    # Released: the camera stops (the pad sent stop), and stays still.
    await asyncio.sleep(0.3)
    settled = bedside.pan()
    await asyncio.sleep(0.5)
    assert bedside.pan() == settled
    assert bedside.camera.pan.velocity == 0
    await expect(page.locator("#ptz-holder")).to_have_text("You have control")
    assert released - pressed >= 1.0

    # Zoom in by holding "+": the camera's zoom position grows.
    zoom_before = bedside.camera.zoom_position(bedside.simulator.now())
    await press_and_hold(page, '#ptz [data-ptz="zoom-in"]', 0.6)
    await asyncio.sleep(0.2)
    assert bedside.camera.zoom_position(bedside.simulator.now()) > zoom_before


async def test_hl7_vitals_appear_on_the_expert_page(bedside: Bedside,  # noqa: F811
                                                    chromium: Chromium) -> None:  # noqa: F811
    token = bedside.token("expert", "Dr. Vitals")
    page = await chromium.open("expert", f"{bedside.base_url}/expert.html#token={token}")
    await expect(page.locator("#status")).to_have_attribute("data-state", "joined",
                                                            timeout=15_000)
    reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", bedside.hl7_port,
                                                        encoding="utf-8")
    sent = time.monotonic()
    writer.writemessage(hl7.parse(GE_SAMPLE))
    await writer.drain()
    ack = await asyncio.wait_for(reader.readmessage(), 5)
    writer.close()
    assert "MSA|AA|" in str(ack)
    spo2 = page.locator('[data-vital="spo2"] .vital-value')
    await expect(spo2).to_contain_text("100", timeout=5_000)
    shown = time.monotonic() - sent
    await expect(page.locator('[data-vital="rr"] .vital-value')).to_contain_text("18")
    await expect(page.locator('[data-vital="temp"] .vital-value')).to_contain_text("37.1")
    print(f"\nHL7 message to numbers on the expert page: {shown * 1000:.0f} ms")
    assert await page.evaluate("window.huizhen.vitals.spo2") == 100
