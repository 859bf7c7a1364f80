"""A whole consultation through the workspace UI only, in Chinese, in a real Chromium.

The records service (real HTTP, real SQLite) serves the workspace; the media server runs
beside it with the same room-token secret, so the "join" buttons open its ward and expert
pages with tokens the records service minted for the signed-in person. Every step a person
takes goes through the pages (``data-testid`` controls); ``page.evaluate`` only reads
measurements (decoded frames, image sizes). Setup that is not a person's step in this story
(accounts, the expert's offered slots, another coordinator booking a slot meanwhile) goes
through the API.

Screenshots of every page are always kept: in ``HUIZHEN_SCREENSHOTS`` if set, else in
``tests/artefacts/screenshots/``.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from playwright.async_api import Page, expect

from consult_api.app import create_app
from consult_api.models import AuditLog, Consultation
from huizhen.app import WEB_ROOT
from tests.conftest import RunningServer
from tests.dicom_samples import jpeg_ct
from tests.test_browser import frames_decoded, wait_joined
from tests.test_browser_workspace import PASSWORD, Browser, Workspace, chromium, sign_in, zh
from tests.test_consult_api import SECRET, World

__all__ = ["chromium"]  # the fixture, used by name

pytestmark = pytest.mark.browser

SHANGHAI = timezone(timedelta(hours=8))
DIAGNOSIS = "急性非 ST 段抬高型心肌梗死，建议转诊介入治疗"
SCREENSHOTS = Path(__file__).parent / "artefacts" / "screenshots"


@dataclass
class Shots:
    """Screenshots of each page, always written; the paths are printed at the end."""

    directory: Path
    paths: list[Path] = field(default_factory=list)

    async def take(self, page: Page, name: str) -> None:
        path = self.directory / f"consultation-{len(self.paths) + 1:02d}-{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        self.paths.append(path)


@pytest.fixture
def shots() -> Shots:
    directory = Path(os.environ.get("HUIZHEN_SCREENSHOTS") or SCREENSHOTS)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("consultation-*.png"):  # a previous run's pages
        stale.unlink()
    return Shots(directory)


@pytest.fixture
async def live(world: World, aiohttp_client: Any, tmp_path: Path,
               running_server: RunningServer) -> Workspace:
    """The records service with its pages, its ``media_url`` at the running media server
    and minting room tokens with the media server's own secret."""
    client = await aiohttp_client(create_app(
        world.url, SECRET, room_tokens=running_server.authority, web_root=WEB_ROOT,
        data_dir=tmp_path / "files", media_url=running_server.base_url))
    world.client = client
    return Workspace(world=world, client=client, base=str(client.make_url("/")))


async def user_id(space: Workspace, username: str) -> int:
    response = await space.client.get("/api/v1/users", headers=space.world.auth("admin"))
    assert response.status == 200, await response.text()
    found = [u for u in (await response.json())["users"] if u.get("username") == username]
    assert len(found) == 1, found
    return int(found[0]["id"])


async def offer_slot(space: Workspace, expert: int, start: datetime) -> int:
    body = {"start": start.isoformat(), "end": (start + timedelta(minutes=30)).isoformat()}
    response = await space.client.post(f"/api/v1/experts/{expert}/slots", json=body,
                                       headers=space.world.auth("coordinator"))
    assert response.status == 201, await response.text()
    return int((await response.json())["id"])


async def new_page(browser: Browser, playwright: Any, space: Workspace, hash_: str = "") -> Page:
    return await browser.open(playwright, space.base + hash_)


async def signed_in(browser: Browser, playwright: Any, space: Workspace, username: str,
                    home: str) -> Page:
    page = await new_page(browser, playwright, space, "#/signin")
    await sign_in(page, username, PASSWORD)
    await expect(page).to_have_url(f"{space.base}{home}")
    return page


def literal(text: str) -> re.Pattern[str]:
    return re.compile(re.escape(text))


def no_page_errors(browser: Browser) -> None:
    assert "pageerror" not in str(browser.log), browser.log


@pytest.mark.parametrize("migrated", ["sqlite"], indirect=True)
async def test_a_whole_consultation_through_the_workspace_in_chinese(
        live: Workspace, running_server: RunningServer, chromium: tuple[Any, Browser],
        shots: Shots, tmp_path: Path) -> None:
    playwright, browser = chromium
    started = time.monotonic()
    doctor = await live.person("li.doctor", "李医生", "doctor")
    stranger = await live.person("wu.doctor", "吴医生", "stranger")
    coordinator = await live.person("zhao.coord", "赵协调员", "coordinator")
    expert = await live.person("chen.expert", "陈主任", "expert")
    admin = await live.person("sun.admin", "孙管理员", "admin")
    expert_id = await user_id(live, expert)
    # The expert offers two half-hours tomorrow morning (Beijing time).
    tomorrow = (datetime.now(SHANGHAI) + timedelta(days=1)).replace(
        hour=9, minute=0, second=0, microsecond=0)
    taken_slot = await offer_slot(live, expert_id, tomorrow)
    free_slot = await offer_slot(live, expert_id, tomorrow + timedelta(minutes=30))

    # 1. The county doctor requests a consultation and uploads a JPEG-compressed CT.
    desk = await signed_in(browser, playwright, live, doctor, "#/requests")
    await expect(desk.get_by_test_id("user-role")).to_have_text(zh("ws.role.requesting_doctor"))
    await desk.get_by_test_id("nav-requests-new").click()
    await desk.get_by_test_id("patient-name").fill("张伟")
    await desk.get_by_test_id("patient-sex").select_option("male")
    await desk.get_by_test_id("patient-age").fill("63")
    await desk.get_by_test_id("patient-record").fill("ZY-2026-0042")
    await desk.get_by_test_id("patient-summary").fill(
        "胸痛三天，心电图提示 ST 段压低，肌钙蛋白升高。")
    await desk.get_by_test_id("request-specialty").fill("心内科")
    await desk.get_by_test_id("request-urgency").select_option("urgent")
    await desk.get_by_test_id("request-question").fill(
        "是否为非 ST 段抬高型心肌梗死？是否需要转上级医院介入治疗？")
    await shots.take(desk, "doctor-new-request")
    await desk.get_by_test_id("request-submit").click()
    await expect(desk.get_by_test_id("consultation-details")).to_be_visible()
    cid = int(desk.url.rsplit("/", 1)[-1])
    await expect(desk.get_by_test_id("state-badge").first).to_have_text(zh("ws.state.requested"))

    ct = jpeg_ct(tmp_path / "胸部CT.dcm")
    await desk.get_by_test_id("file-input").set_input_files(str(ct))
    item = desk.get_by_test_id("upload-item")
    await expect(item).to_have_attribute("data-state", "done", timeout=20_000)
    await expect(item.get_by_test_id("upload-progress")).to_have_attribute("value", "100")
    await expect(item.get_by_test_id("upload-status")).to_have_text(zh("ws.materials.done"))
    material = desk.locator("[data-testid=material-item][data-kind=dicom]")
    await expect(material).to_have_count(1)
    preview = material.get_by_test_id("material-preview")
    await expect(preview).to_be_visible()
    await desk.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=await preview.element_handle())
    await material.get_by_test_id("open-viewer").click()
    image = desk.get_by_test_id("dicom-image")
    await expect(image).to_have_attribute("data-loaded", literal("center=40&width=400"))
    first_url = await image.get_attribute("data-loaded")
    size = await image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert size == [512, 512], size
    before = await image.screenshot()
    await desk.get_by_test_id("level-slider").fill("400")
    await desk.get_by_test_id("width-slider").fill("1800")
    await expect(image).to_have_attribute("data-loaded", literal("center=400&width=1800"))
    assert await image.get_attribute("data-loaded") != first_url
    await expect(desk.get_by_test_id("window-readout")).to_have_text(
        zh("ws.dicom.window").replace("{center}", "400").replace("{width}", "1800"))
    await desk.wait_for_timeout(100)
    assert await image.screenshot() != before, "the bone window shows the same pixels"
    await shots.take(desk, "doctor-dicom-viewer")

    # The hostile case: a doctor of another county hospital does not see it.
    other = await signed_in(browser, playwright, live, stranger, "#/requests")
    await expect(other.get_by_test_id("user-name")).to_have_text("吴医生")
    await expect(other.locator(f"[data-testid=consultation-row][data-id='{cid}']")).to_have_count(0)
    await expect(other.get_by_test_id("empty")).to_be_visible()
    await shots.take(other, "other-hospital-list")
    await other.goto(f"{live.base}#/consultations/{cid}")
    refusal = other.get_by_test_id("page-error")
    await expect(refusal).to_have_attribute("data-code", "forbidden")
    await expect(refusal).to_have_text(zh("error.forbidden"))
    assert await other.get_by_test_id("patient-name-value").count() == 0
    assert "张伟" not in (await other.content())
    await shots.take(other, "other-hospital-sees-nothing")

    # 2. The coordinator opens the queue, picks the expert, meets a clash, books a free slot.
    desk2 = await signed_in(browser, playwright, live, coordinator, "#/queue")
    row = desk2.locator(f"[data-testid=consultation-row][data-id='{cid}']")
    await expect(row.get_by_test_id("state-badge")).to_have_text(zh("ws.state.requested"))
    await row.get_by_test_id("consultation-link").click()
    await expect(desk2.get_by_test_id("patient-name-value")).to_have_text("张伟")
    await desk2.get_by_test_id("assign-expert").select_option(str(expert_id))
    day = tomorrow.strftime("%Y-%m-%d")
    # The week is drawn once the expert's slots have loaded: decide only then whether
    # tomorrow is in the next week (it is when today is Sunday in Beijing).
    await expect(desk2.get_by_test_id("week-day")).to_have_count(7)
    if await desk2.locator(f"[data-testid=week-day][data-day='{day}']").count() == 0:
        await desk2.get_by_test_id("week-next").click()
    slots = desk2.locator(f"[data-testid=week-day][data-day='{day}'] [data-testid=slot]")
    await expect(slots).to_have_count(2)
    await expect(slots.nth(0)).to_have_attribute("data-status", "free")
    await shots.take(desk2, "coordinator-calendar")
    # Meanwhile another coordinator books the first slot for another consultation.
    other_cid = await other_booking(live, taken_slot)
    await desk2.locator(f"[data-testid=slot][data-slot-id='{taken_slot}']").click()
    refusal = desk2.get_by_test_id("calendar-error")
    await expect(refusal).to_have_text(zh("error.slot-taken"))
    await expect(refusal).to_have_attribute("data-code", "slot-taken")
    taken = desk2.locator(f"[data-testid=slot][data-slot-id='{taken_slot}']")
    await expect(taken).to_have_attribute("data-status", "booked")
    await expect(taken).to_be_disabled()
    await expect(taken).to_contain_text(f"#{other_cid}")
    # Times in the calendar read as a clock, without the zone name.
    await expect(taken).to_contain_text("09:00–09:30")
    assert "GMT" not in (await desk2.get_by_test_id("week-grid").text_content() or "")
    await shots.take(desk2, "coordinator-slot-taken")
    await desk2.locator(f"[data-testid=slot][data-slot-id='{free_slot}']").click()
    await expect(desk2.get_by_test_id("state-badge").first).to_have_text(zh("ws.state.scheduled"))
    await expect(desk2.get_by_test_id("expert-value")).to_have_text("陈主任")
    await expect(desk2.get_by_test_id("slot-value")).to_contain_text("09:30 – 10:00 GMT+8")
    stored = live.world.query(lambda s: s.scalars(
        sa.select(Consultation).where(Consultation.id == cid)).one())
    assert (stored.state, stored.expert_id) == ("scheduled", expert_id)
    booked_at = (tomorrow + timedelta(minutes=30)).astimezone(UTC)
    assert stored.slot_start.replace(tzinfo=UTC) == booked_at
    await shots.take(desk2, "coordinator-scheduled")
    # Offering the expert a time that overlaps the booked one is refused too.
    await desk2.get_by_test_id("nav-calendar").click()
    await desk2.get_by_test_id("calendar-expert").select_option(str(expert_id))
    await desk2.get_by_test_id("slots-date").fill(day)
    await desk2.get_by_test_id("slots-from").fill("09:45")
    await desk2.get_by_test_id("slots-to").fill("10:15")
    await desk2.get_by_test_id("slots-add").click()
    clash = desk2.get_by_test_id("slots-error")
    await expect(clash).to_have_attribute("data-code", "slot-conflict")
    await expect(clash).to_have_text(f"09:45: {zh('error.slot-conflict')}")
    await shots.take(desk2, "coordinator-slot-conflict")

    # 3. The doctor opens the bedside page and publishes; the expert joins from the worklist.
    await desk.goto(f"{live.base}#/consultations/{cid}")
    await desk.reload()
    await expect(desk.get_by_test_id("join-live")).to_have_text(zh("ws.live.bedside"))
    async with desk.context.expect_page() as opened:
        await desk.get_by_test_id("join-live").click()
    ward = browser.log.attach(await opened.value, "ward")
    await ward.wait_for_url(f"{running_server.base_url}/ward.html#*")
    await expect(ward.locator("#start")).to_be_enabled(timeout=15_000)
    await ward.locator("#start").click()
    await expect(ward.locator("#publication-state")).to_have_attribute(
        "data-state", "connected", timeout=20_000)
    await expect(ward.locator("#identity")).to_contain_text("李医生")

    desk3 = await signed_in(browser, playwright, live, expert, "#/worklist")
    upcoming = desk3.get_by_test_id("worklist-upcoming")
    await upcoming.locator(f"[data-testid=consultation-row][data-id='{cid}'] "
                           "[data-testid=consultation-link]").click()
    await expect(desk3.get_by_test_id("join-live")).to_have_text(zh("ws.live.join"))
    async with desk3.context.expect_page() as opened:
        await desk3.get_by_test_id("join-live").click()
    room = browser.log.attach(await opened.value, "expert")
    await room.wait_for_url(f"{running_server.base_url}/expert.html#*")
    await wait_joined(room, 15)
    frames = await frames_decoded(room, 60, 60, browser.log)
    print(f"\nthe expert page decoded {frames} frames of the ward's camera")
    assert frames >= 60
    await expect(room.locator("figure.tile .name")).to_have_text("李医生")
    await expect(room.locator("#identity")).to_contain_text("陈主任")
    # Joining started the session: the workspace shows it in session.
    await expect(desk3.get_by_test_id("state-badge").first).to_have_text(
        zh("ws.state.in_session"))
    await shots.take(ward, "ward-publishing")
    await shots.take(room, "expert-live")

    # 4. The expert writes the report from a template, with an ICD-10 code, and publishes.
    await desk3.bring_to_front()
    desk3.on("dialog", lambda dialog: dialog.accept())
    await desk3.get_by_test_id("template-select").select_option(index=1)
    await desk3.get_by_test_id("report-start").click()
    editor = desk3.get_by_test_id("report-editor")
    await expect(editor).to_be_visible()
    areas = editor.locator("textarea")
    assert await areas.count() >= 2
    for index in range(await areas.count()):
        await areas.nth(index).fill(
            f"第{index + 1}部分：心电图 V1-V4 导联 ST 段压低，肌钙蛋白 I 升高。")
    await editor.get_by_test_id("icd-search").fill("心肌梗死")
    option = editor.locator("[data-testid=icd-option][data-code^='I21']").first
    await expect(option).to_be_visible()
    code = await option.get_attribute("data-code")
    assert code is not None
    await option.click()
    await expect(editor.get_by_test_id("icd-chosen")).to_have_attribute("data-code", code)
    await editor.get_by_test_id("diagnosis-text").fill(DIAGNOSIS)
    await shots.take(desk3, "expert-report-editor")
    await editor.get_by_test_id("report-publish").click()
    published = desk3.get_by_test_id("report-published")
    await expect(published).to_be_visible()
    await expect(published.get_by_test_id("report-diagnosis")).to_contain_text(code)
    await expect(desk3.get_by_test_id("state-badge").first).to_have_text(zh("ws.state.reported"))

    # 5. The doctor signs in again, reads the report and opens the print view.
    desk = await signed_in(browser, playwright, live, doctor, "#/requests")
    row = desk.locator(f"[data-testid=consultation-row][data-id='{cid}']")
    await expect(row.get_by_test_id("state-badge")).to_have_text(zh("ws.state.reported"))
    await row.get_by_test_id("consultation-link").click()
    report = desk.get_by_test_id("report-published")
    await expect(report.get_by_test_id("report-diagnosis")).to_contain_text(code)
    await expect(report.get_by_test_id("report-diagnosis")).to_contain_text(DIAGNOSIS)
    await shots.take(desk, "doctor-reads-report")
    await report.get_by_test_id("report-print").click()
    sheet = desk.get_by_test_id("print-sheet")
    # The print view opens at its top, though the link is at the bottom of a long page.
    await expect(desk.get_by_test_id("page-title")).to_be_in_viewport()
    await expect(sheet.get_by_test_id("print-patient")).to_have_text("张伟")
    await expect(sheet.get_by_test_id("print-expert")).to_have_text("陈主任")
    await expect(sheet.get_by_test_id("report-diagnosis")).to_contain_text(code)
    await shots.take(desk, "doctor-print-view")
    # Printed (the print stylesheet): the sheet alone, no navigation, on A4, as a PDF.
    await desk.emulate_media(media="print")
    await expect(desk.get_by_test_id("nav")).to_be_hidden()
    await expect(sheet.get_by_test_id("print-patient")).to_be_visible()
    pdf = shots.directory / "consultation-report.pdf"
    await desk.pdf(path=str(pdf), format="A4", print_background=True)
    printed = pdf.read_bytes()
    pages = printed.count(b"/Type /Page") - printed.count(b"/Type /Pages")
    assert printed.startswith(b"%PDF") and 1 <= pages <= 3, (len(printed), pages)
    print(f"the report printed to {pdf} ({len(printed)} bytes, {pages} A4 page(s))")
    await desk.emulate_media(media="screen")

    # 6. The admin sees it in the statistics and the reads in the audit viewer.
    board = await signed_in(browser, playwright, live, admin, "#/admin/users")
    await board.get_by_test_id("nav-admin-stats").click()
    diagnosis = board.get_by_test_id("chart-diagnosis").locator("g.bar")
    await expect(diagnosis).to_have_count(1)
    assert (await diagnosis.get_attribute("data-label") or "").startswith(code)
    assert await diagnosis.get_attribute("data-value") == "1"
    # The expert has two: this one and the one booked into the slot taken meanwhile.
    await expect(board.get_by_test_id("stats-total")).to_have_text("2")
    experts = board.get_by_test_id("chart-expert").locator("g.bar[data-label='陈主任']")
    await expect(experts).to_have_attribute("data-value", "2")
    county = board.get_by_test_id("chart-hospital").locator(
        "g.bar[data-label=\"Xian County People's Hospital\"]")
    await expect(county).to_have_attribute("data-value", "2")
    doctors = board.get_by_test_id("chart-doctor").locator("g.bar[data-label='李医生']")
    await expect(doctors).to_have_attribute("data-value", "1")
    await shots.take(board, "admin-statistics")
    await board.get_by_test_id("nav-admin-audit").click()
    await board.get_by_test_id("audit-consultation").fill(str(cid))
    await board.get_by_test_id("audit-search").click()
    rows = board.get_by_test_id("audit-row")
    for who, action in [("李医生", "consultation.read"), ("李医生", "report.read"),
                        ("陈主任", "consultation.read"), ("陈主任", "report.read")]:
        await expect(rows.filter(has_text=who).filter(has_text=action).first).to_be_visible()
    # ... and the other hospital's doctor's refused attempt.
    refused = rows.filter(has_text="吴医生").filter(has_text="consultation.read")
    await expect(refused).to_have_attribute("data-outcome", "refused")
    await expect(refused.locator("td").last).to_have_text(zh("ws.outcome.refused"))
    await shots.take(board, "admin-audit")
    reads = live.world.query(lambda s: {(a, u) for a, u in s.execute(
        sa.select(AuditLog.action, AuditLog.actor_id).where(
            AuditLog.object_id == cid, AuditLog.action.in_(
                ["consultation.read", "report.read"])))})
    doctor_id = await user_id(live, doctor)
    assert {("consultation.read", doctor_id), ("report.read", doctor_id),
            ("consultation.read", expert_id), ("report.read", expert_id)} <= reads
    no_page_errors(browser)
    print(f"decoded frames: {frames}; {len(shots.paths)} screenshots in {shots.directory}:")
    for path in shots.paths:
        print(f"  {path}")
    print(f"the whole consultation took {time.monotonic() - started:.0f} s")


async def other_booking(space: Workspace, slot_id: int) -> int:
    """Another county doctor's consultation, booked into ``slot_id`` by another
    coordinator (the seeded ones), as happens while the first coordinator looks."""
    body = {"patient": {"name": "另一位患者", "sex": "female", "age": 70, "summary": "心悸"},
            "question": "房颤的抗凝方案？", "urgency": "routine", "type": "interactive"}
    world = space.world
    response = await space.client.post("/api/v1/consultations", json=body,
                                       headers=world.auth("colleague"))
    assert response.status == 201, await response.text()
    other = int((await response.json())["id"])
    response = await space.client.post(f"/api/v1/consultations/{other}/appointment",
                                       json={"slot_id": slot_id},
                                       headers=world.auth("coordinator"))
    assert response.status == 200, await response.text()
    return other
