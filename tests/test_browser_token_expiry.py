"""The web pages on token-expired: a notice in the page's language, no retry; refresh keeps
them in."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import expect

from tests.conftest import RunningServer
from tests.test_browser import ROOM, Chromium, chromium, server, wait_joined

pytestmark = pytest.mark.browser
__all__ = ["chromium", "server"]  # fixtures used by name below


@pytest.mark.parametrize(("page_name", "lang", "notice"), [
    ("expert", "zh-CN", "会话已过期，请重新打开链接"),
    ("ward", "en", "The session has expired; open the link again."),
])
async def test_an_expired_session_shows_the_notice_and_stops(server: RunningServer,
                                                             chromium: Chromium,
                                                             page_name: str, lang: str,
                                                             notice: str) -> None:
    role = "expert" if page_name == "expert" else "ward"
    # 5 s: time to load the page and its catalogue and join on a busy machine, then expire.
    short = server.authority.mint(room=ROOM, role=role, name="Dr. Short", ttl=5)
    page = await chromium.open(
        page_name, f"{server.base_url}/{page_name}.html#token={short}&lang={lang}")
    await wait_joined(page)
    status = page.locator("#status")
    await expect(status).to_have_text(notice, timeout=12_000)
    await expect(status).to_have_attribute("data-code", "token-expired")
    await expect(status).to_have_attribute("data-state", "failed")
    # An expired token is final: the page does not reconnect with it.
    await asyncio.sleep(1.5)
    assert await page.evaluate("window.huizhen.state") == "failed", str(chromium.log)


async def test_a_page_that_refreshes_its_token_stays_joined(server: RunningServer,
                                                            chromium: Chromium) -> None:
    short = server.authority.mint(room=ROOM, role="expert", name="Dr. Li", ttl=5,
                                  subject="u-li")
    fresh = server.authority.mint(room=ROOM, role="expert", name="Dr. Li", ttl=600,
                                  subject="u-li")
    page = await chromium.open("expert", f"{server.base_url}/expert.html#token={short}")
    await wait_joined(page)
    expires_at = await page.evaluate("(t) => window.huizhen.session.client.refresh(t)", fresh)
    assert expires_at > 0
    await asyncio.sleep(6.0)
    assert await page.evaluate("window.huizhen.state") == "joined", str(chromium.log)
    await expect(page.locator("#status")).to_have_attribute("data-state", "joined")
    await expect(page.locator("#status")).not_to_have_attribute("data-code", "token-expired")
