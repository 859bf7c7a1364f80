"""The workspace's referral, notification and administration pages in a real headless
Chromium against the real records service (real HTTP, real SQLite and PostgreSQL), Chinese
first: a two-way referral between a county and the provincial hospital, the bell, and an
admin managing people and API tokens.

Set HUIZHEN_SCREENSHOTS=<dir> to keep screenshots of the pages.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa
from playwright.async_api import Page, expect

from consult_api.models import (
    ApiToken,
    Department,
    Hospital,
    Notification,
    Referral,
    ReferralEvent,
    User,
)
from tests.test_browser_workspace import (
    PASSWORD,
    Browser,
    Workspace,
    chromium,  # noqa: F401  (a fixture)
    screenshot,
    sign_in,
    workspace,  # noqa: F401  (a fixture)
    zh,
)

pytestmark = pytest.mark.browser

PROVINCE = "Provincial Hospital"
COUNTY = "Xian County People's Hospital"


async def new_person(ws: Workspace, username: str, display_name: str, role: str,
                     hospital_id: int) -> str:
    """A user made by the admin over the API, password set through their one-time link."""
    response = await ws.client.post("/api/v1/users", json={
        "username": username, "display_name": display_name, "role": role,
        "hospital_id": hospital_id}, headers=ws.world.auth("admin"))
    assert response.status == 201, await response.text()
    token = (await response.json())["set_password_url"].rsplit("/", 1)[-1]
    response = await ws.client.post("/api/v1/password-links/redeem",
                                    json={"token": token, "password": PASSWORD})
    assert response.status == 204, await response.text()
    return username


async def signed_in(playwright: Any, browser: Browser, ws: Workspace, username: str,
                    display_name: str, **kwargs: Any) -> Page:
    page = await browser.open(playwright, ws.base, **kwargs)
    await sign_in(page, username)
    await expect(page.get_by_test_id("user-name")).to_have_text(display_name)
    # Wait for the home page to be drawn: a page still loading can overwrite the next one.
    await expect(page.get_by_test_id("page-title")).not_to_have_text(zh("ws.signin.title"))
    return page


def referral_id(page: Page) -> int:
    found = re.search(r"#/referrals/(\d+)$", page.url)
    assert found, page.url
    return int(found.group(1))


async def open_referral(page: Page, rid: int) -> None:
    await page.get_by_test_id("nav-referrals").click()
    row = page.locator(f"[data-testid=referral-row][data-id='{rid}']")
    await row.get_by_test_id("referral-link").click()
    await expect(page.get_by_test_id("referral-details")).to_be_visible()


async def state_is(page: Page, state: str) -> None:
    await expect(page.get_by_test_id("referral-details").get_by_test_id(
        "referral-state-badge")).to_have_text(zh(f"ws.referral-state.{state}"))


async def act(page: Page, to: str, note: str = "") -> None:
    if note:
        await page.get_by_test_id("referral-action-note").fill(note)
    await page.get_by_test_id(f"referral-action-{to}").click()
    await state_is(page, to)


def no_page_errors(browser: Browser) -> None:
    assert "pageerror" not in str(browser.log), browser.log


async def test_a_two_way_referral_between_county_and_province(
        workspace: Workspace, chromium: tuple[Any, Browser]) -> None:  # noqa: F811
    playwright, browser = chromium
    world = workspace.world
    county = world.people["doctor"].hospital_id
    doctor = await workspace.person("zhou.doctor", "周医生", "doctor")
    coordinator = await workspace.person("chen.coord", "陈协调员", "coordinator")
    county_coordinator = await new_person(workspace, "xu.coord", "徐协调员", "coordinator",
                                          county)
    stranger = await workspace.person("wu.stranger", "吴医生", "stranger")

    # The county doctor refers the patient up to the provincial cardiology department.
    up = await signed_in(playwright, browser, workspace, doctor, "周医生")
    await up.get_by_test_id("nav-referrals").click()
    await expect(up.get_by_test_id("page-title")).to_have_text(zh("ws.referral.list-title"))
    await up.get_by_test_id("new-referral").click()
    await up.get_by_test_id("referral-patient-name").fill("刘建国")
    await up.get_by_test_id("referral-patient-sex").select_option("male")
    await up.get_by_test_id("referral-patient-age").fill("58")
    await up.get_by_test_id("referral-patient-record").fill("XY-2026-0815")
    await up.get_by_test_id("referral-to-hospital").select_option(label=PROVINCE)
    await expect(up.get_by_test_id("referral-direction")).to_have_value("up")
    await up.get_by_test_id("referral-department").select_option(label="Cardiology")
    await up.get_by_test_id("referral-reason").fill(
        "急性前壁心肌梗死，需行急诊 PCI，本院无导管室。")
    await screenshot(up, "workspace-referral-new.png")
    # A direction that does not fit the hospitals' levels is refused, in Chinese.
    await up.get_by_test_id("referral-direction").select_option("down")
    await up.get_by_test_id("referral-submit").click()
    await expect(up.get_by_test_id("referral-error")).to_have_attribute(
        "data-code", "referral-direction")
    await expect(up.get_by_test_id("referral-error")).to_have_text(zh("error.referral-direction"))
    assert world.query(lambda s: s.scalar(sa.select(sa.func.count()).select_from(Referral))) == 0
    await up.get_by_test_id("referral-direction").select_option("up")
    await up.get_by_test_id("referral-submit").click()
    await expect(up.get_by_test_id("referral-details")).to_be_visible()
    rid = referral_id(up)
    await state_is(up, "requested")
    await expect(up.get_by_test_id("referral-details").get_by_test_id("direction-badge")
                 ).to_have_text(zh("ws.direction.up"))
    await expect(up.get_by_test_id("referral-department-value")).to_have_text("Cardiology")
    # The sender may only cancel; accepting is the provincial coordinators' move.
    await expect(up.get_by_test_id("referral-action-cancelled")).to_be_visible()
    await expect(up.get_by_test_id("referral-action-accepted")).to_have_count(0)
    stored = world.query(lambda s: s.scalars(sa.select(Referral).where(
        Referral.id == rid)).one())
    assert (stored.direction, stored.state, stored.from_hospital_id, stored.patient_name,
            stored.patient_age) == ("up", "requested", county, "刘建国", 58)
    assert stored.to_hospital_id == world.people["coordinator"].hospital_id
    assert stored.to_department_id is not None

    # The provincial coordinator sees it, accepts with a note, then admits the patient.
    prov = await signed_in(playwright, browser, workspace, coordinator, "陈协调员")
    await prov.get_by_test_id("nav-referrals").click()
    row = prov.locator(f"[data-testid=referral-row][data-id='{rid}']")
    await expect(row.get_by_test_id("referral-state-badge")).to_have_text(
        zh("ws.referral-state.requested"))
    await expect(row).to_contain_text("急性前壁心肌梗死")
    await expect(row).to_contain_text(COUNTY)
    await open_referral(prov, rid)
    await expect(prov.get_by_test_id("referral-action-cancelled")).to_have_count(0)
    await act(prov, "accepted", "已预留心内科床位，请直接送导管室")
    await prov.get_by_test_id("referral-note-text").fill("请携带既往心电图及化验单")
    await prov.get_by_test_id("referral-note-add").click()
    events = prov.get_by_test_id("referral-event")
    await expect(events).to_have_count(3)
    await act(prov, "admitted")
    await expect(events).to_have_count(4)
    await expect(events.nth(1)).to_contain_text("已预留心内科床位")
    await expect(events.nth(2)).to_contain_text("请携带既往心电图及化验单")
    await screenshot(prov, "workspace-referral-admitted.png")

    # The county side sees the same history and state.
    await up.reload()
    await up.wait_for_selector("body[data-ready='1']")
    await state_is(up, "admitted")
    history = up.get_by_test_id("referral-event")
    await expect(history).to_have_count(4)
    await expect(history.nth(0).get_by_test_id("referral-state-badge")).to_have_text(
        zh("ws.referral-state.requested"))
    await expect(history.nth(1).get_by_test_id("referral-state-badge")).to_have_text(
        zh("ws.referral-state.accepted"))
    await expect(history.nth(2)).to_contain_text("请携带既往心电图及化验单")
    await expect(history.nth(3).get_by_test_id("referral-state-badge")).to_have_text(
        zh("ws.referral-state.admitted"))
    await expect(up.get_by_test_id("referral-actions")).to_have_count(0)

    # After treatment the province refers the patient back down for rehabilitation.
    await prov.get_by_test_id("nav-referrals").click()
    await prov.get_by_test_id("new-referral").click()
    await prov.get_by_test_id("referral-patient-name").fill("刘建国")
    await prov.get_by_test_id("referral-patient-sex").select_option("male")
    await prov.get_by_test_id("referral-patient-age").fill("58")
    await prov.get_by_test_id("referral-to-hospital").select_option(label=COUNTY)
    # Towards a county hospital the form turns to "down" by itself.
    await expect(prov.get_by_test_id("referral-direction")).to_have_value("down")
    await prov.get_by_test_id("referral-reason").fill("PCI 术后病情稳定，转回县医院康复治疗。")
    await prov.get_by_test_id("referral-submit").click()
    await expect(prov.get_by_test_id("referral-details")).to_be_visible()
    down = referral_id(prov)
    assert down != rid
    await state_is(prov, "requested")
    await expect(prov.get_by_test_id("referral-details").get_by_test_id("direction-badge")
                 ).to_have_text(zh("ws.direction.down"))

    # A county doctor may read it but only the county's coordinators receive it.
    await open_referral(up, down)
    await state_is(up, "requested")
    await expect(up.get_by_test_id("referral-actions")).to_have_count(0)

    cc = await signed_in(playwright, browser, workspace, county_coordinator, "徐协调员")
    await open_referral(cc, down)
    await act(cc, "accepted", "康复科已安排床位")
    await act(cc, "admitted")
    await act(cc, "completed", "康复出院")
    await expect(cc.get_by_test_id("referral-actions")).to_have_count(0)
    await screenshot(cc, "workspace-referral-down-completed.png")
    await cc.get_by_test_id("nav-referrals").click()
    for referral, state in ((rid, "admitted"), (down, "completed")):
        row = cc.locator(f"[data-testid=referral-row][data-id='{referral}']")
        await expect(row.get_by_test_id("referral-state-badge")).to_have_text(
            zh(f"ws.referral-state.{state}"))
    await cc.get_by_test_id("referral-direction-filter").select_option("down")
    await expect(cc.get_by_test_id("referral-row")).to_have_count(1)

    rows = world.query(lambda s: [(e.kind, e.from_state, e.to_state, e.note) for e in s.scalars(
        sa.select(ReferralEvent).where(ReferralEvent.referral_id == down)
        .order_by(ReferralEvent.id))])
    assert rows == [("transition", None, "requested", ""),
                    ("transition", "requested", "accepted", "康复科已安排床位"),
                    ("transition", "accepted", "admitted", ""),
                    ("transition", "admitted", "completed", "康复出院")]
    states = world.query(lambda s: dict(s.execute(sa.select(Referral.id, Referral.state))
                                        .all()))
    assert states == {rid: "admitted", down: "completed"}

    # A doctor of another county hospital sees none of it, not even by address.
    other = await signed_in(playwright, browser, workspace, stranger, "吴医生")
    await other.get_by_test_id("nav-referrals").click()
    await expect(other.get_by_test_id("page-title")).to_have_text(zh("ws.referral.list-title"))
    await expect(other.get_by_test_id("empty")).to_have_text(zh("ws.list.empty"))
    await expect(other.get_by_test_id("referral-row")).to_have_count(0)
    await other.goto(f"{workspace.base}#/referrals/{rid}")
    error = other.get_by_test_id("page-error")
    await expect(error).to_have_attribute("data-code", "forbidden")
    await expect(error).to_have_text(zh("error.forbidden"))
    await expect(other.locator("body")).not_to_contain_text("刘建国")
    no_page_errors(browser)


async def test_the_bell_counts_what_happens_to_me_in_chinese(
        workspace: Workspace, chromium: tuple[Any, Browser]) -> None:  # noqa: F811
    playwright, browser = chromium
    world = workspace.world
    doctor = await workspace.person("sun.doctor", "孙医生", "doctor")
    page = await signed_in(playwright, browser, workspace, doctor, "孙医生", fake_clock=True)
    bell = page.get_by_test_id("bell-count")
    await expect(bell).to_be_hidden()

    await page.get_by_test_id("nav-referrals").click()
    await page.get_by_test_id("new-referral").click()
    await page.get_by_test_id("referral-patient-name").fill("何秀英")
    await page.get_by_test_id("referral-patient-sex").select_option("female")
    await page.get_by_test_id("referral-patient-age").fill("71")
    await page.get_by_test_id("referral-to-hospital").select_option(label=PROVINCE)
    await page.get_by_test_id("referral-reason").fill("反复晕厥，需行电生理检查。")
    await page.get_by_test_id("referral-submit").click()
    await expect(page.get_by_test_id("referral-details")).to_be_visible()
    rid = referral_id(page)

    # The provincial coordinator accepts it and writes a note (over the API, elsewhere).
    response = await workspace.client.post(f"/api/v1/referrals/{rid}/transitions",
                                           json={"to": "accepted", "note": ""},
                                           headers=world.auth("coordinator"))
    assert response.status == 200, await response.text()
    response = await workspace.client.post(f"/api/v1/referrals/{rid}/notes",
                                           json={"text": "明早八点入院"},
                                           headers=world.auth("coordinator"))
    assert response.status == 201, await response.text()

    # The next poll of the bell shows two unread.
    await page.clock.fast_forward("00:31")
    await expect(bell).to_have_text("2")
    await expect(bell).to_be_visible()
    await page.get_by_test_id("bell").click()
    await expect(page.get_by_test_id("page-title")).to_have_text(zh("ws.notifications.title"))
    items = page.get_by_test_id("notification")
    await expect(items).to_have_count(2)
    state_text = zh("notify.referral.state").format(
        referral_id=rid, **{"from": zh("ws.referral-state.requested"),
                            "to": zh("ws.referral-state.accepted")})
    note_text = zh("notify.referral.note").format(referral_id=rid)
    await expect(items.nth(0)).to_have_attribute("data-kind", "referral.note")
    await expect(items.nth(0).get_by_test_id("notification-link")).to_have_text(note_text)
    await expect(items.nth(1).get_by_test_id("notification-link")).to_have_text(state_text)
    await expect(items.nth(1).get_by_test_id("notification-link")).to_have_attribute(
        "href", f"#/referrals/{rid}")
    await screenshot(page, "workspace-notifications.png")

    # Marking one read lowers the count; reading all empties it.
    await items.nth(1).get_by_test_id("notification-read").click()
    await expect(items.nth(1)).to_have_attribute("data-read", "1")
    await expect(bell).to_have_text("1")
    unread = world.query(lambda s: [n.kind for n in s.scalars(sa.select(Notification).where(
        Notification.referral_id == rid, Notification.read_at.is_(None)))])
    me_id = world.query(lambda s: s.scalar(sa.select(User.id).where(User.username == doctor)))
    mine = world.query(lambda s: {n.kind: n.read_at is not None for n in s.scalars(
        sa.select(Notification).where(Notification.user_id == me_id))})
    assert mine == {"referral.state": True, "referral.note": False}
    assert "referral.note" in unread
    await page.get_by_test_id("notifications-read-all").click()
    await expect(bell).to_be_hidden()
    await expect(page.get_by_test_id("notification").first).to_have_attribute("data-read", "1")
    assert world.query(lambda s: s.scalar(sa.select(sa.func.count()).select_from(Notification)
                                          .where(Notification.user_id == me_id,
                                                 Notification.read_at.is_(None)))) == 0
    # The link leads to the referral.
    await page.get_by_test_id("notification-link").first.click()
    await expect(page.get_by_test_id("referral-details")).to_be_visible()
    assert referral_id(page) == rid
    no_page_errors(browser)


async def test_an_admin_manages_people_and_api_tokens(
        workspace: Workspace, chromium: tuple[Any, Browser]) -> None:  # noqa: F811
    playwright, browser = chromium
    world = workspace.world
    admin_name = await workspace.person("gao.admin", "高管理员", "admin")
    admin = await signed_in(playwright, browser, workspace, admin_name, "高管理员",
                            permissions=["clipboard-read", "clipboard-write"])
    await expect(admin).to_have_url(f"{workspace.base}#/admin/users")
    await expect(admin.get_by_test_id("page-title")).to_have_text(zh("ws.admin.users-title"))

    # Create a person: the one-time link is shown and copied.
    await admin.get_by_test_id("new-user-username").fill("zhao.doctor")
    await admin.get_by_test_id("new-user-name").fill("赵医生")
    await admin.get_by_test_id("new-user-role").select_option("requesting_doctor")
    await admin.get_by_test_id("new-user-hospital").select_option(label=COUNTY)
    await admin.get_by_test_id("new-user-submit").click()
    link = admin.get_by_test_id("set-password-link")
    await expect(link).to_have_value(re.compile(re.escape(workspace.base) +
                                                r"#/set-password/[A-Za-z0-9_\-]+$"))
    first_link = await link.input_value()
    await admin.get_by_test_id("copy-link").click()
    await expect(admin.get_by_test_id("banner")).to_have_text(zh("ws.admin.copied"))
    assert await admin.evaluate("navigator.clipboard.readText()") == first_link
    row = admin.locator("[data-testid=user-row][data-username='zhao.doctor']")
    await expect(row.get_by_test_id("user-status")).to_have_text(zh("ws.admin.active"))
    await screenshot(admin, "workspace-admin-users.png")
    # Somebody without a username has no password to reset.
    seeded = admin.locator(f"[data-testid=user-row][data-id='{world.people['doctor'].user_id}']")
    await expect(seeded.get_by_test_id("user-disable")).to_be_visible()
    await expect(seeded.get_by_test_id("user-reset")).to_have_count(0)
    # The search finds people by name.
    await admin.get_by_test_id("users-text").fill("赵医")
    await expect(admin.get_by_test_id("user-row")).to_have_count(1)
    await admin.get_by_test_id("users-text").fill("")
    await expect(admin.get_by_test_id("user-row")).to_have_count(9)
    stored = world.query(lambda s: s.scalars(sa.select(User).where(
        User.username == "zhao.doctor")).one())
    assert (stored.display_name, stored.role, stored.hospital_id, stored.password_hash) == (
        "赵医生", "requesting_doctor", world.people["doctor"].hospital_id, None)

    # The person opens the link in their own browser, sets a password and signs in.
    person = await browser.open(playwright, first_link)
    await person.get_by_test_id("set-password-new").fill(PASSWORD)
    await person.get_by_test_id("set-password-repeat").fill(PASSWORD)
    await person.get_by_test_id("set-password-submit").click()
    await expect(person).to_have_url(f"{workspace.base}#/signin")
    await sign_in(person, "zhao.doctor")
    await expect(person.get_by_test_id("user-name")).to_have_text("赵医生")
    await expect(person).to_have_url(f"{workspace.base}#/requests")

    # The admin disables them: their next action is refused and they are signed out.
    await admin.locator("[data-testid=user-row][data-username='zhao.doctor']").get_by_test_id(
        "user-disable").click()
    row = admin.locator("[data-testid=user-row][data-username='zhao.doctor']")
    await expect(row.get_by_test_id("user-status")).to_have_text(zh("ws.admin.disabled"))
    assert world.query(lambda s: s.scalar(sa.select(User.disabled).where(
        User.username == "zhao.doctor"))) is True
    async with person.expect_response(lambda r: "/api/v1/referrals" in r.url) as refused:
        await person.get_by_test_id("nav-referrals").click()
    assert (await refused.value).status == 401
    await expect(person).to_have_url(f"{workspace.base}#/signin")
    await expect(person.get_by_test_id("page-title")).to_have_text(zh("ws.signin.title"))
    await expect(person.get_by_test_id("signin-ended")).to_have_text(zh("ws.signin.ended"))
    await expect(person.locator("#topbar")).to_be_hidden()
    await sign_in(person, "zhao.doctor")
    await expect(person.get_by_test_id("signin-error")).to_have_attribute(
        "data-code", "bad-credentials")
    await expect(person.get_by_test_id("signin-error")).to_have_text(zh("error.bad-credentials"))

    # Enable, reset: a new link; the old one no longer works, the new one does.
    await row.get_by_test_id("user-enable").click()
    await expect(row.get_by_test_id("user-status")).to_have_text(zh("ws.admin.active"))
    await row.get_by_test_id("user-reset").click()
    await expect(link).not_to_have_value(first_link)
    second_link = await link.input_value()
    assert "/#/set-password/" in second_link
    fresh = await browser.open(playwright, first_link)
    await fresh.get_by_test_id("set-password-new").fill("Another-pass-2026")
    await fresh.get_by_test_id("set-password-repeat").fill("Another-pass-2026")
    await fresh.get_by_test_id("set-password-submit").click()
    await expect(fresh.get_by_test_id("set-password-error")).to_have_attribute(
        "data-code", "link-invalid")
    await expect(fresh.get_by_test_id("set-password-error")).to_have_text(
        zh("error.link-invalid"))
    await fresh.goto(second_link)
    await fresh.reload()
    await fresh.wait_for_selector("body[data-ready='1']")
    await fresh.get_by_test_id("set-password-new").fill("Another-pass-2026")
    await fresh.get_by_test_id("set-password-repeat").fill("Another-pass-2026")
    await fresh.get_by_test_id("set-password-submit").click()
    await expect(fresh).to_have_url(f"{workspace.base}#/signin")
    await sign_in(fresh, "zhao.doctor", "Another-pass-2026")
    await expect(fresh.get_by_test_id("user-name")).to_have_text("赵医生")

    # Change role: the page and the database agree.
    await row.get_by_test_id("user-role-select").select_option("coordinator")
    await expect(admin.get_by_test_id("banner")).to_have_text(zh("ws.admin.saved"))
    assert world.query(lambda s: s.scalar(sa.select(User.role).where(
        User.username == "zhao.doctor"))) == "coordinator"
    await admin.reload()
    await admin.wait_for_selector("body[data-ready='1']")
    await expect(admin.locator("[data-testid=user-row][data-username='zhao.doctor']")
                 .get_by_test_id("user-role-select")).to_have_value("coordinator")
    # An admin cannot disable themselves: the refusal is shown in Chinese.
    mine = admin.locator(f"[data-testid=user-row][data-username='{admin_name}']")
    await mine.get_by_test_id("user-disable").click()
    await expect(mine.get_by_test_id("user-error")).to_have_attribute("data-code", "self-change")
    await expect(mine.get_by_test_id("user-error")).to_have_text(zh("error.self-change"))

    # Nor give up their own role: the select goes back to what is stored.
    await mine.get_by_test_id("user-role-select").select_option("expert")
    await expect(mine.get_by_test_id("user-error")).to_have_attribute("data-code", "self-change")
    await expect(mine.get_by_test_id("user-role-select")).to_have_value("admin")
    assert world.query(lambda s: s.scalar(sa.select(User.role).where(
        User.username == admin_name))) == "admin"

    # Hospitals of every level, and their departments.
    await admin.get_by_test_id("nav-admin-hospitals").click()
    await admin.get_by_test_id("hospital-name").fill("市第一人民医院")
    await admin.get_by_test_id("hospital-level").select_option("prefecture")
    await admin.get_by_test_id("hospital-add").click()
    added = admin.get_by_test_id("hospital-row").filter(has_text="市第一人民医院")
    await expect(added).to_contain_text(zh("ws.level.prefecture"))
    await added.get_by_test_id("hospital-departments").click()
    await admin.get_by_test_id("department-name").fill("神经内科")
    await admin.get_by_test_id("department-add").click()
    await expect(admin.get_by_test_id("department-item")).to_have_text(["神经内科"])
    assert world.query(lambda s: s.execute(sa.select(Hospital.level, Department.name).join(
        Department, Department.hospital_id == Hospital.id).where(
        Hospital.name == "市第一人民医院")).all()) == [("prefecture", "神经内科")]

    # API tokens: issued (shown once), used, revoked.
    await admin.get_by_test_id("nav-admin-tokens").click()
    await expect(admin.get_by_test_id("page-title")).to_have_text(zh("ws.tokens.title"))
    await admin.get_by_test_id("token-user").select_option(label="赵医生 (zhao.doctor)")
    await admin.get_by_test_id("token-label").fill("PACS 接口")
    await admin.get_by_test_id("token-days").fill("30")
    await admin.get_by_test_id("token-issue").click()
    value = admin.get_by_test_id("token-value")
    await expect(value).to_have_value(re.compile(r".{20,}"))
    token = await value.input_value()
    await screenshot(admin, "workspace-admin-tokens.png")
    bearer = {"Authorization": f"Bearer {token}"}
    response = await workspace.client.get("/api/v1/notifications", headers=bearer)
    assert response.status == 200, await response.text()
    row = admin.get_by_test_id("token-row").filter(has_text="PACS 接口")
    await expect(row).to_contain_text("赵医生")
    stored_token = world.query(lambda s: s.scalars(sa.select(ApiToken).where(
        ApiToken.label == "PACS 接口")).one())
    assert stored_token.revoked_at is None
    assert token not in (stored_token.token_hash or "")
    await row.get_by_test_id("token-revoke").click()
    await expect(row).to_contain_text(zh("ws.tokens.revoked"))
    await expect(value).to_have_count(0)
    response = await workspace.client.get("/api/v1/notifications", headers=bearer)
    assert response.status == 401
    assert world.query(lambda s: s.scalar(sa.select(ApiToken.revoked_at).where(
        ApiToken.id == stored_token.id))) is not None
    no_page_errors(browser)
