"""The pages' status line while reconnecting (web_client/ui.js renderStatus), in Chromium.

Before a first join the client gives up after 5 attempts, so the line counts them
("attempt 2 of 5"); once joined it retries for as long as the page is open, and the
line says no "of 5".
"""

from __future__ import annotations

import pytest

from tests.conftest import RunningServer
from tests.test_browser import Chromium, chromium  # noqa: F401

pytestmark = pytest.mark.browser

RENDER = """async ([everJoined, attempt]) => {
  const i18n = await import('/i18n.js');
  if (!i18n.has('live.status.retrying')) await i18n.loadCatalogue(); // the page's may still load
  const { renderStatus } = await import('/ui.js');
  const node = document.createElement('p');
  const client = { _everJoined: everJoined, _attempt: attempt, maxRetries: 5 };
  renderStatus(node, { state: 'disconnected', client, room: 'bed-1', errors: [] });
  return [node.textContent, node.dataset.kind];
}"""


@pytest.mark.parametrize(("locale", "limited", "unlimited"), [
    ("zh-CN", "连接中断，正在重试（第 2 次，共 5 次）…", "连接中断，正在重试（第 7 次）…"),
    ("en", "Disconnected — retrying (attempt 2 of 5)…", "Disconnected — retrying (attempt 7)…"),
])
async def test_the_retry_status_names_a_maximum_only_before_the_first_join(
        running_server: RunningServer, chromium: Chromium,  # noqa: F811
        locale: str, limited: str, unlimited: str) -> None:
    page = await chromium.open("status", f"{running_server.base_url}/whep.html",
                               locale=locale)
    assert await page.evaluate(RENDER, [False, 2]) == [limited, "warn"]
    assert await page.evaluate(RENDER, [True, 7]) == [unlimited, "warn"]
