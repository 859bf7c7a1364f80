"""The live pages in Chinese: no English words on the zh-CN pages; English on lang=en.

Real server with a bed (simulated VISCA camera, HL7 listener), real headless Chromium
(Debian's /usr/bin/chromium). The expert page is scanned in a live state: the ward page
publishes its (fake) camera, the PTZ pad is shown, the monitor's vitals and an alarm
are on screen. The recordings page is scanned with a recording listed and opened.
The scan tokenises the visible text (``document.body.innerText``, the title, and every
title/placeholder/aria-label/alt attribute) on ``[A-Za-z]{2,}`` and compares the words
with an allowlist of units, codes, key names and proper names; it prints what it found.
Set HUIZHEN_SCREENSHOTS=<dir> to keep screenshots (zh-expert.png, zh-ward.png, ...).
"""

from __future__ import annotations

import re
from collections import Counter

import pytest
from playwright.async_api import Page, expect

from tests.test_browser import Chromium, chromium, screenshot, wait_joined
from tests.test_devices_room import ROOM, Bedside, bedside, send_with_python_hl7
from tests.test_hl7_fixtures import GE_SAMPLE
from tests.test_recorder_vod_browser import REC, base_url

pytestmark = pytest.mark.browser
__all__ = ["base_url", "bedside", "chromium"]  # fixtures used by name below

WORD = re.compile(r"[A-Za-z]{2,}")
ALLOWED = {
    # units and codes a Chinese clinician reads as they are
    "SpO", "mmHg", "min", "CO", "GMT", "UTC",
    # keyboard keys, named as printed on the keys
    "Esc", "Home", "Shift",
    # proper names: the language switch offers "English", the product is huizhen
    "English", "huizhen",
}
VISIBLE_TEXT = """() => {
    const parts = [document.title, document.body.innerText];
    for (const node of document.querySelectorAll("[title], [placeholder], [aria-label], [alt]")) {
        for (const name of ["title", "placeholder", "aria-label", "alt"]) {
            const value = node.getAttribute(name);
            if (value) parts.push(value);
        }
    }
    return parts.join("\\n");
}"""
# People and rooms are data, not interface text: the tests name the people in Chinese;
# the rooms are the fixtures' ids.
EXPERT_NAME = "王医生"
WARD_NAME = "三病区护士"


def english_words(text: str, data: tuple[str, ...]) -> Counter[str]:
    """The words of ``text`` made of Latin letters that the allowlist does not cover."""
    for value in data:
        text = text.replace(value, " ")
    return Counter(w for w in WORD.findall(text) if w not in ALLOWED)


async def scan(page: Page, label: str, data: tuple[str, ...]) -> str:
    text = str(await page.evaluate(VISIBLE_TEXT))
    found = english_words(text, data)
    allowed = sorted({w for w in WORD.findall(text) if w in ALLOWED})
    print(f"\n[{label}] {len(text)} characters scanned; allowlisted words present: {allowed}; "
          f"English words outside the allowlist: {dict(found) or 'none'}")
    assert not found, f"{label} shows English: {dict(found)}\n---\n{text}"
    return text


async def live_pages(bedside: Bedside, chromium: Chromium, lang: str) -> tuple[Page, Page]:
    """(expert, ward) in a live state: the ward publishing, the pad, vitals and an alarm."""
    base = bedside.base_url
    ward = await chromium.open(
        "ward", f"{base}/ward.html#token={bedside.token('ward', WARD_NAME)}&autostart=1"
                f"&lang={lang}")
    await expect(ward.locator("#publication-state")).to_have_attribute(
        "data-server-state", "connected", timeout=20_000)
    expert = await chromium.open(
        "expert", f"{base}/expert.html#token={bedside.token('expert', EXPERT_NAME)}"
                  f"&lang={lang}")
    await wait_joined(expert)
    await expect(expert.locator("figure.tile")).to_have_count(1, timeout=15_000)
    await expect(expert.locator("figure.tile .badge")).to_have_attribute(
        "data-state", "connected", timeout=20_000)
    await expect(expert.locator("#ptz")).to_be_visible(timeout=15_000)
    await expect(expert.locator('#ptz [data-ptz="right"]')).to_be_enabled()
    await expect(expert.locator("#ptz-camera")).to_have_attribute("data-state", "online")
    # The monitor: SpO2 80 % flagged LL (a high priority alarm) with the GE sample's vitals.
    flagged = GE_SAMPLE.replace("|100|262688^MDC_DIM_PERCENT^MDC||",
                                "|80|262688^MDC_DIM_PERCENT^MDC|90-100|LL")
    assert (await send_with_python_hl7(bedside.hl7_port, flagged)).startswith("MSA|AA")
    await expect(expert.locator('#vitals [data-vital="spo2"] .value')).to_have_text(
        "80", timeout=5_000)
    await expect(expert.locator("#vitals .alarm")).to_have_count(1, timeout=5_000)
    # Take control: the holder line and the camera's state are shown in words too.
    await expert.locator("#ptz-control").click()
    await expect(expert.locator("#ptz-holder")).to_have_attribute("data-mine", "true")
    await expert.locator('#ptz [data-ptz="home"]').click()
    await expect(expert.locator("#ptz-error")).to_be_visible()
    await expect(ward.locator("#ptz")).to_be_visible()
    await expect(ward.locator("figure.tile")).to_have_count(0)
    return expert, ward


async def test_the_zh_cn_live_pages_show_no_english(bedside: Bedside,
                                                    chromium: Chromium) -> None:
    expert, ward = await live_pages(bedside, chromium, "zh-CN")
    assert await expert.evaluate("document.documentElement.lang") == "zh-CN"
    text = await scan(expert, "expert zh-CN", (ROOM, EXPERT_NAME, WARD_NAME))
    # What a Chinese specialist reads, from the catalogue (and proof that it is not empty).
    for words in ("专家会诊", "已连接到会诊室", "摄像头控制", "您正在控制摄像头", "生命体征",
                  "心率", "SpO₂", "无创血压", "高优先级报警：SpO2 过低", "预置位", "复位",
                  "变焦", "参会人员", "会诊专家", "已连接"):
        assert words in text, words
    await expect(expert.locator("#status")).to_have_attribute("data-state", "joined")
    await screenshot(expert, "zh-expert.png")

    text = await scan(ward, "ward zh-CN", (ROOM, EXPERT_NAME, WARD_NAME))
    for words in ("床旁", "本床旁摄像头", "关闭摄像头", "浏览器", "服务器", "摄像头控制",
                  "接管摄像头控制", "停止摄像头", "生命体征"):
        assert words in text, words
    await screenshot(ward, "zh-ward.png")


async def test_the_en_live_pages_show_english(bedside: Bedside, chromium: Chromium) -> None:
    expert, _ = await live_pages(bedside, chromium, "en")
    assert await expert.evaluate("document.documentElement.lang") == "en"
    text = str(await expert.evaluate(VISIBLE_TEXT))
    for words in ("Specialist consultation", f"Connected to room {ROOM}", "Camera control",
                  "You have control", "Vital signs", "HR", "NIBP",
                  "High priority alarm: SpO2 low", "Presets", "Zoom", "Participants"):
        assert words in text, words
    assert "专家会诊" not in text and "生命体征" not in text
    assert await expert.title() == "huizhen · Specialist"
    await screenshot(expert, "en-expert.png")


async def test_the_zh_cn_recordings_page_shows_no_english(base_url: str,
                                                          chromium: Chromium) -> None:
    page = await chromium.open(
        "recordings", f"{base_url}/recordings.html#token=token-bed-12&recording={REC}"
                      "&lang=zh-CN")
    await page.wait_for_function("window.huizhen?.replay?.state === 'ready'", timeout=90_000)
    await expect(page.locator("[data-recording-id]")).to_have_count(1)
    await expect(page.locator("#vitals")).to_be_visible()
    text = await scan(page, "recordings zh-CN", ("bed-12",))
    for words in ("教学录像", "录像列表", "参会 2 人", "已完成", "生命体征", "心率", "体温",
                  "无创血压", "正在播放", "时长 0:08"):
        assert words in text, words
    # Times in Asia/Shanghai with the zone (the fixture starts at 2026-01-01 00:00 UTC, its
    # first track a moment before).
    assert re.search(r"2026-01-01 0[78]:\d\d GMT\+8", text), text
    await screenshot(page, "zh-recordings.png")


async def test_the_language_switch_saves_the_choice(base_url: str,
                                                    chromium: Chromium) -> None:
    # No lang= and a Chinese browser: Chinese.
    page = await chromium.open("switch", f"{base_url}/recordings.html#token=token-bed-12",
                               locale="zh-CN")
    await expect(page.locator("#status")).to_have_text("共 1 段录像")
    assert await page.title() == "会诊 · 教学录像"
    english = page.locator('.language-switch [data-language="en"]')
    await expect(page.locator('.language-switch [data-language="zh-CN"]')).to_have_attribute(
        "aria-pressed", "true")
    # The switch saves the choice and reloads the page in English ...
    await english.click()
    await expect(page.locator("#status")).to_have_text("Recordings: 1")
    await expect(english).to_have_attribute("aria-pressed", "true")
    assert await page.evaluate("localStorage.getItem('huizhen.lang')") == "en"
    # ... which outranks the browser's language on the next visit, and lang= outranks both.
    await page.goto(f"{base_url}/index.html")
    await expect(page.locator("h1 .page")).to_have_text("Video consultation")
    await page.goto(f"{base_url}/index.html?lang=zh-CN")
    await expect(page.locator("h1 .page")).to_have_text("远程视频会诊")
    # On a page opened with lang= in the fragment, the switch rewrites it.
    await page.goto(f"{base_url}/recordings.html#token=token-bed-12&lang=en")
    await expect(page.locator("#status")).to_have_text("Recordings: 1")
    await page.locator('.language-switch [data-language="zh-CN"]').click()
    await expect(page.locator("#status")).to_have_text("共 1 段录像")
    assert "lang=zh-CN" in page.url and "token=token-bed-12" in page.url


def test_the_scan_finds_english() -> None:
    words = english_words("心率 HR 72 /min SpO₂ 97 % Camera off bed-1 王医生", ("bed-1",))
    assert words == Counter({"HR": 1, "Camera": 1, "off": 1})
