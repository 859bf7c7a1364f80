"""Response headers of both services over real HTTP, and the download's Content-Disposition
(records service on SQLite AND PostgreSQL)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDictProxy

from consult_api.app import create_app
from consult_api.safe_headers import API_CSP, PAGE_CSP, attachment_disposition
from signaling.routes import page_csp
from tests.conftest import RunningServer
from tests.test_consult_api import SECRET, World
from tests.test_consult_materials import PDF, Site, consultation, upload
from tests.test_consult_materials import site as site  # the fixture, by name


def assert_api_headers(headers: CIMultiDictProxy[str]) -> None:
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Content-Security-Policy"] == API_CSP


# --- records service -----------------------------------------------------------------------

async def test_every_api_answer_is_nosniff_and_never_cached(world: World) -> None:
    client = world.client
    answers = [
        await client.get("/api/v1/consultations", headers=world.auth("doctor")),  # 200
        await client.get("/api/v1/consultations"),  # 401
        await client.get("/api/v1/consultations/999999", headers=world.auth("doctor")),  # 404
        await client.post("/api/v1/consultations", data=b"{", headers=world.auth("doctor")),
        await client.delete("/api/v1/consultations"),  # 405
        await client.get("/api/v1/openapi.json"),
    ]
    assert [r.status for r in answers] == [200, 401, 404, 400, 405, 200]
    for response in answers:
        assert_api_headers(response.headers)
    outside = await client.get("/no-such-page")
    assert outside.status == 404
    assert outside.headers["X-Content-Type-Options"] == "nosniff"
    assert "Cache-Control" not in outside.headers


async def test_html_pages_get_the_content_security_policy(migrated: str,
                                                          aiohttp_client: Any) -> None:
    app = create_app(migrated, SECRET)

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>工作台</title>",
                            content_type="text/html")

    app.router.add_get("/workspace.html", page)
    client = await aiohttp_client(app)
    response = await client.get("/workspace.html")
    assert response.status == 200
    assert response.headers["Content-Security-Policy"] == PAGE_CSP
    assert "script-src 'self';" in PAGE_CSP and "frame-ancestors 'none'" in PAGE_CSP
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "Cache-Control" not in response.headers


@pytest.mark.parametrize(("name", "fallback", "encoded"), [
    ("胸片报告.pdf", "download.pdf", "%E8%83%B8%E7%89%87%E6%8A%A5%E5%91%8A.pdf"),
    ('evil"; filename=x.html.pdf', "evil__ filename=x.html.pdf",
     "evil%22%3B%20filename%3Dx.html.pdf"),
    ("Résumé 2026.pdf", "Resume 2026.pdf", "R%C3%A9sum%C3%A9%202026.pdf"),
])
async def test_downloads_are_attachments_with_a_safe_name(site: Site, name: str, fallback: str,
                                                          encoded: str) -> None:
    cid = await consultation(site)
    result = await upload(site, cid, PDF, filename=quote(name))
    assert result["filename"] == name  # stored as given; only the header is made safe
    response = await site.client.get(f"/api/v1/materials/{result['id']}",
                                     headers=site.auth("doctor"))
    assert response.status == 200
    assert await response.read() == PDF
    assert response.headers["Content-Disposition"] == (
        f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
    assert response.headers["Content-Type"] == "application/pdf"
    assert_api_headers(response.headers)
    refused = await site.client.get(f"/api/v1/materials/{result['id']}",
                                    headers=site.auth("stranger"))
    assert refused.status == 403
    assert "Content-Disposition" not in refused.headers
    assert_api_headers(refused.headers)


@pytest.mark.parametrize(("name", "expected"), [
    ("../../etc/passwd", "attachment; filename=\"passwd\"; filename*=UTF-8''passwd"),
    ("C:\\scans\\ct.dcm", "attachment; filename=\"ct.dcm\"; filename*=UTF-8''ct.dcm"),
    ("a\r\nSet-Cookie: x=1.png",
     "attachment; filename=\"aSet-Cookie_ x=1.png\"; filename*=UTF-8''aSet-Cookie%3A%20x%3D1.png"),
    ("..", "attachment; filename=\"download\"; filename*=UTF-8''download"),
    (".profile", "attachment; filename=\"profile\"; filename*=UTF-8''profile"),
    ("%2e%2e.pdf", "attachment; filename=\"_2e_2e.pdf\"; filename*=UTF-8''%252e%252e.pdf"),
    ("心电图", "attachment; filename=\"download\"; filename*=UTF-8''%E5%BF%83%E7%94%B5%E5%9B%BE"),
])
def test_attachment_disposition(name: str, expected: str) -> None:
    header = attachment_disposition(name)
    assert header == expected
    assert "\r" not in header and "\n" not in header and header.count('"') == 2


# --- media server --------------------------------------------------------------------------

async def test_media_server_pages_and_api(running_server: RunningServer) -> None:
    base = running_server.base_url
    host = base.removeprefix("http://")
    async with aiohttp.ClientSession() as http:
        for path in ("/", "/expert.html", "/ward.html", "/recordings.html"):
            async with http.get(base + path) as response:
                assert response.status == 200
                assert response.content_type == "text/html"
                csp = response.headers["Content-Security-Policy"]
                assert csp == page_csp(host)
                assert f"connect-src 'self' ws://{host} wss://{host};" in csp
                assert "media-src 'self' blob: mediastream:;" in csp
                assert "img-src 'self' data: blob:;" in csp
                assert response.headers["X-Content-Type-Options"] == "nosniff"
                assert response.headers["X-Frame-Options"] == "DENY"
        async with http.get(base + "/expert.js") as response:
            assert response.status == 200
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert "Content-Security-Policy" not in response.headers
        for path, status in (("/api/v1/health", 200), ("/api/v1/stats", 401),
                             ("/api/v1/recordings", 401)):
            async with http.get(base + path) as response:
                assert response.status == status
                assert response.headers["Cache-Control"] == "no-store"
                assert response.headers["X-Content-Type-Options"] == "nosniff"
        # A forged Host header cannot add sources to the policy.
        async with http.get(base + "/expert.html",
                            headers={"Host": "evil.example; script-src *"}) as response:
            assert response.headers["Content-Security-Policy"] == page_csp(None)
            assert "evil" not in response.headers["Content-Security-Policy"]
