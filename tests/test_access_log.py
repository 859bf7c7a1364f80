"""The access log never carries a query string (where search filters, such as a patient's
name in an audit search, travel)."""

from __future__ import annotations

import logging

import aiohttp
import pytest
from aiohttp import web

from huizhen.running import serving
from tests.conftest import free_port


async def test_the_access_log_has_the_path_but_never_the_query(
        caplog: pytest.LogCaptureFixture) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/api/v1/audit", hello)
    port = free_port()
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    url = f"http://127.0.0.1:{port}/api/v1/audit?patient=%E5%BC%A0%E4%BC%9F&user_id=3"
    async with serving(app, "127.0.0.1", port), aiohttp.ClientSession() as client, \
            client.get(url) as response:
        assert response.status == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(lines) == 1, lines
    assert " GET /api/v1/audit 200 " in lines[0]
    assert "patient" not in lines[0] and "张伟" not in lines[0] and "%E5" not in lines[0]
