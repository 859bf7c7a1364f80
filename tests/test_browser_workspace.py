"""The consultation workspace in a real headless Chromium against the real records service
(real HTTP, real SQLite and PostgreSQL), Chinese first.

People are made the way a hospital makes them: the admin creates the account over the API
and the person sets their password through the one-time link. Set HUIZHEN_SCREENSHOTS=<dir>
to keep screenshots of the pages.
"""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from PIL import Image
from playwright.async_api import Page, async_playwright, expect

from consult_api.app import create_app
from consult_api.models import Consultation, Material
from contracts.catalogue import Catalogue
from huizhen.app import WEB_ROOT
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, PageLog
from tests.test_consult_api import MEDIA_TOKENS, SECRET, World

pytestmark = pytest.mark.browser

PASSWORD = "Zhenduan-2026!"
CATALOGUE = Catalogue.load()


def zh(key: str) -> str:
    return CATALOGUE.text(key, "zh-CN")


@dataclass
class Workspace:
    world: World
    client: Any
    base: str

    async def person(self, username: str, display_name: str, who_like: str) -> str:
        """A user with the role and hospital of the seeded ``who_like``, password set
        through their one-time link; returns the username."""
        like = self.world.people[who_like]
        body: dict[str, Any] = {"username": username, "display_name": display_name,
                                "role": like.role.value, "hospital_id": like.hospital_id}
        if like.role.value == "expert":
            body["specialty"] = "cardiology"
        response = await self.client.post("/api/v1/users", json=body,
                                          headers=self.world.auth("admin"))
        assert response.status == 201, await response.text()
        link = (await response.json())["set_password_url"]
        token = link.rsplit("/", 1)[-1]
        response = await self.client.post("/api/v1/password-links/redeem",
                                          json={"token": token, "password": PASSWORD})
        assert response.status == 204, await response.text()
        return username


@pytest.fixture
async def workspace(world: World, aiohttp_client: Any, tmp_path: Path) -> Workspace:
    """The records service with its pages, on the seeded database, on a loopback port."""
    client = await aiohttp_client(create_app(world.url, SECRET, room_tokens=MEDIA_TOKENS,
                                             web_root=WEB_ROOT, data_dir=tmp_path / "files",
                                             media_url="http://127.0.0.1:9"))
    world.client = client
    return Workspace(world=world, client=client, base=str(client.make_url("/")))


class Browser:
    def __init__(self) -> None:
        self.log = PageLog()
        self.browser: Any = None

    async def open(self, playwright: Any, url: str, *, locale: str = "zh-CN",
                   permissions: list[str] | None = None, fake_clock: bool = False) -> Page:
        """A page in a fresh browser context (its own cookies); with ``fake_clock`` the
        page's timers can be fast-forwarded (the bell polls every 30 s)."""
        if self.browser is None:
            if not CHROMIUM.exists():
                pytest.fail(f"{CHROMIUM} is missing: ./scripts/ensure-chromium installs it",
                            pytrace=False)
            self.browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        context = await self.browser.new_context(viewport={"width": 1280, "height": 900},
                                                 locale=locale, permissions=permissions or [])
        page = self.log.attach(await context.new_page(), locale)
        if fake_clock:
            await page.clock.install()
        await page.goto(url)
        await page.wait_for_selector("body[data-ready='1']")
        return page


@pytest.fixture
async def chromium() -> AsyncIterator[tuple[Any, Browser]]:
    async with async_playwright() as playwright:
        browser = Browser()
        try:
            yield playwright, browser
        finally:
            if browser.browser is not None:
                await browser.browser.close()


async def screenshot(page: Page, name: str) -> None:
    directory = os.environ.get("HUIZHEN_SCREENSHOTS")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(directory) / name), full_page=True)


async def sign_in(page: Page, username: str, password: str = PASSWORD) -> None:
    await page.get_by_test_id("signin-username").fill(username)
    await page.get_by_test_id("signin-password").fill(password)
    await page.get_by_test_id("signin-submit").click()


def png(width: int = 900, height: int = 700) -> bytes:
    """A real PNG of a few hundred KB (noise does not compress)."""
    image = Image.effect_noise((width, height), 64).convert("RGB")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


async def test_the_front_door_is_chinese_and_loads_every_module(
        workspace: Workspace, chromium: tuple[Any, Browser]) -> None:
    playwright, browser = chromium
    page = await browser.open(playwright, workspace.base)
    await expect(page).to_have_url(f"{workspace.base}#/signin")
    assert await page.get_attribute("html", "lang") == "zh-CN"
    await expect(page.get_by_test_id("page-title")).to_have_text(zh("ws.signin.title"))
    await expect(page.get_by_test_id("signin-submit")).to_have_text(zh("ws.signin.submit"))
    await expect(page.get_by_test_id("signin-username")).to_be_visible()
    assert "pageerror" not in str(browser.log), browser.log
    await screenshot(page, "workspace-signin.png")


async def test_sign_in_in_chinese_wrong_password_and_lockout(
        workspace: Workspace, chromium: tuple[Any, Browser]) -> None:
    playwright, browser = chromium
    username = await workspace.person("wang.doctor", "王医生", "doctor")
    page = await browser.open(playwright, workspace.base + "#/signin")
    error = page.get_by_test_id("signin-error")
    await sign_in(page, "nobody-here", "wrong-password-1")
    await expect(error).to_have_attribute("data-code", "bad-credentials")
    await expect(error).to_have_text(zh("error.bad-credentials"))
    # Five wrong passwords lock the name; the sixth attempt is told so.
    for attempt in range(6):
        await sign_in(page, username, f"wrong-password-{attempt}")
        await expect(page.get_by_test_id("signin-submit")).to_be_enabled()
    await expect(error).to_have_attribute("data-code", "locked-out")
    assert zh("error.locked-out") in (await error.text_content() or "")
    await screenshot(page, "workspace-locked-out.png")
    # Even the right password waits for the lock to end.
    await sign_in(page, username)
    await expect(error).to_have_attribute("data-code", "locked-out")
    assert "pageerror" not in str(browser.log), browser.log


async def test_a_requesting_doctor_requests_a_consultation_and_uploads_with_progress(
        workspace: Workspace, chromium: tuple[Any, Browser], tmp_path: Path) -> None:
    playwright, browser = chromium
    username = await workspace.person("li.doctor", "李医生", "doctor")
    page = await browser.open(playwright, workspace.base)
    await sign_in(page, username)
    await expect(page).to_have_url(f"{workspace.base}#/requests")
    await expect(page.get_by_test_id("user-name")).to_have_text("李医生")
    await expect(page.get_by_test_id("user-role")).to_have_text(zh("ws.role.requesting_doctor"))

    await page.get_by_test_id("nav-requests-new").click()
    await page.get_by_test_id("patient-name").fill("张伟")
    await page.get_by_test_id("patient-sex").select_option("male")
    await page.get_by_test_id("patient-age").fill("63")
    await page.get_by_test_id("patient-record").fill("ZY-2026-0042")
    await page.get_by_test_id("patient-summary").fill("胸痛三天，心电图提示 ST 段压低。")
    await page.get_by_test_id("request-specialty").fill("心内科")
    await page.get_by_test_id("request-urgency").select_option("urgent")
    await page.get_by_test_id("request-question").fill("是否为非 ST 段抬高型心肌梗死？")
    await page.get_by_test_id("request-submit").click()
    await expect(page.get_by_test_id("consultation-details")).to_be_visible()
    cid = int(page.url.rsplit("/", 1)[-1])
    await expect(page.get_by_test_id("patient-name-value")).to_have_text("张伟")
    await expect(page.get_by_test_id("state-badge").first).to_have_text(zh("ws.state.requested"))

    stored = workspace.world.query(lambda s: s.scalars(
        sa.select(Consultation).where(Consultation.id == cid)).one())
    assert (stored.patient_name, stored.urgency, stored.state) == ("张伟", "urgent", "requested")
    assert stored.question.startswith("【申请专科：心内科】")

    data = png()
    first, second = tmp_path / "胸片 正位.png", tmp_path / "second.png"
    first.write_bytes(data)
    second.write_bytes(png(400, 300))
    await page.get_by_test_id("file-input").set_input_files([str(first), str(second)])
    items = page.get_by_test_id("upload-item")
    await expect(items).to_have_count(2)
    for index in range(2):
        await expect(items.nth(index)).to_have_attribute("data-state", "done", timeout=20_000)
        await expect(items.nth(index).get_by_test_id("upload-progress")).to_have_attribute(
            "value", "100")
        await expect(items.nth(index).get_by_test_id("upload-status")).to_have_text(
            zh("ws.materials.done"))
    listed = page.get_by_test_id("material-item")
    await expect(listed).to_have_count(2)
    await expect(page.get_by_test_id("material-download").filter(has_text="胸片 正位.png")
                 ).to_have_count(1)
    rows = workspace.world.query(lambda s: [(m.filename, m.size, m.kind) for m in s.scalars(
        sa.select(Material).where(Material.consultation_id == cid).order_by(Material.id))])
    assert rows[0] == ("胸片 正位.png", len(data), "png")
    assert rows[1][0] == "second.png"
    await screenshot(page, "workspace-consultation.png")

    # The request is in "my requests" with its state badge; a file the service refuses
    # shows the localised error in the queue.
    bad = tmp_path / "notes.txt"
    bad.write_text("plain text is not a medical image")
    await page.get_by_test_id("file-input").set_input_files([str(bad)])
    failed = page.get_by_test_id("upload-item").nth(2)
    await expect(failed).to_have_attribute("data-state", "failed")
    await expect(failed).to_have_attribute("data-code", "unsupported-type")
    await expect(failed.get_by_test_id("upload-status")).to_have_text(zh("error.unsupported-type"))
    await page.get_by_test_id("nav-requests").click()
    row = page.locator(f"[data-testid=consultation-row][data-id='{cid}']")
    await expect(row.get_by_test_id("state-badge")).to_have_text(zh("ws.state.requested"))
    assert "pageerror" not in str(browser.log), browser.log
