"""The records service serves the workspace pages (one front door) and live-page links."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from consult_api import live_pages
from consult_api.app import create_app
from huizhen.app import WEB_ROOT
from tests.conftest import RunningServer
from tests.test_consult_api import MEDIA_TOKENS, SECRET, Clock, World, create, schedule

MEDIA = "https://media.example.org:8443/"


@pytest.fixture
async def pages(tmp_path: Path, aiohttp_client: Any) -> Any:
    return await aiohttp_client(create_app(f"sqlite:///{tmp_path / 'x.sqlite3'}", SECRET,
                                           web_root=WEB_ROOT))


async def test_the_front_door_serves_the_workspace_and_the_catalogue(pages: Any) -> None:
    response = await pages.get("/")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/html")
    html = await response.text()
    assert '<script type="module" src="/workspace/app.js"></script>' in html
    assert (WEB_ROOT / "workspace" / "index.html").read_text(encoding="utf-8") == html
    for path, kind, on_disk in [
            ("/workspace/app.js", "text/javascript", WEB_ROOT / "workspace" / "app.js"),
            ("/workspace/workspace.css", "text/css", WEB_ROOT / "workspace" / "workspace.css"),
            ("/i18n.js", "text/javascript", WEB_ROOT / "i18n.js"),
            ("/i18n/index.json", "application/json", WEB_ROOT / "i18n" / "index.json"),
            ("/i18n/workspace.json", "application/json", WEB_ROOT / "i18n" / "workspace.json")]:
        response = await pages.get(path)
        assert response.status == 200, path
        assert response.headers["Content-Type"].startswith(kind), path
        assert await response.read() == on_disk.read_bytes()


@pytest.mark.parametrize("path", [
    "/workspace/", "/workspace", "/workspace/..%2Fi18n.js", "/workspace/%2e%2e/%2e%2e/README.md",
    "/workspace/.hidden.js", "/i18n/", "/i18n/index", "/i18n/..%2F..%2Fpyproject.toml",
    "/ward.html", "/i18n/common.json/", "/workspace/missing.js", "/workspace/README.md",
    "/style.css", "/workspace/index.html/x"])
async def test_no_directory_index_no_escape_no_other_files(pages: Any, path: str) -> None:
    response = await pages.get(path)
    assert response.status == 404, path
    assert (await response.json())["code"] == "not-found"


async def test_symlinks_are_never_followed(tmp_path: Path, aiohttp_client: Any) -> None:
    root = tmp_path / "web"
    (root / "workspace").mkdir(parents=True)
    (root / "i18n").mkdir()
    secret = tmp_path / "secret.js"
    secret.write_text("patient data")
    (root / "workspace" / "index.html").write_text("<!doctype html><p>ok</p>")
    (root / "workspace" / "leak.js").symlink_to(secret)
    (root / "i18n" / "index.json").symlink_to(secret)
    (root / "i18n.js").symlink_to(secret)
    client = await aiohttp_client(create_app(f"sqlite:///{tmp_path / 'x.sqlite3'}", SECRET,
                                             web_root=root))
    assert (await client.get("/")).status == 200
    for path in ("/workspace/leak.js", "/i18n/index.json", "/i18n.js"):
        response = await client.get(path)
        assert response.status == 404, path
        assert "patient" not in await response.text()
    (root / "workspace" / "index.html").unlink()
    (root / "workspace" / "index.html").symlink_to(secret)
    assert (await client.get("/")).status == 404


async def test_without_a_web_root_there_are_no_pages(tmp_path: Path,
                                                     aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(f"sqlite:///{tmp_path / 'x.sqlite3'}", SECRET))
    for path in ("/", "/workspace/app.js", "/i18n.js"):
        response = await client.get(path)
        assert response.status == 404
        assert (await response.json())["code"] == "not-found"


def test_page_url_names_the_page_for_the_role_with_token_and_language() -> None:
    assert live_pages.page_url(MEDIA, "expert", "a.b-c", "en") == (
        "https://media.example.org:8443/expert.html#token=a.b-c&lang=en")
    assert live_pages.page_url(MEDIA, "ward", "t", "zh-CN") == (
        "https://media.example.org:8443/ward.html#token=t&lang=zh-CN")
    assert live_pages.page_url("", "observer", "t", "fr") == "/expert.html#token=t&lang=zh-CN"


async def test_room_token_carries_the_live_page_for_each_role(world: World,
                                                             aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(world.url, SECRET, clock=Clock(),
                                             room_tokens=MEDIA_TOKENS, media_url=MEDIA))
    world.client = client
    cid = await create(world)
    await schedule(world, cid)
    for who, role, page in [("doctor", "ward", "ward.html"), ("expert", "expert", "expert.html"),
                            ("coordinator", "observer", "expert.html")]:
        response = await client.post(f"/api/v1/consultations/{cid}/room-token",
                                     headers=world.auth(who))
        assert response.status == 200
        body = await response.json()
        url = urlsplit(body["page_url"])
        assert (url.scheme, url.netloc, url.path) == ("https", "media.example.org:8443",
                                                      f"/{page}")
        assert url.query == ""  # the token travels in the fragment only
        fragment = parse_qs(url.fragment)
        assert fragment == {"token": [body["token"]], "lang": ["zh-CN"]}
        assert body["role"] == role


async def test_the_media_servers_start_page_leads_to_the_workspace(
        running_server: RunningServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{running_server.base_url}/api/v1/front-door") as response:
            assert response.status == 200
            assert await response.json() == {
                "workspace_url": running_server.settings.records.base_url + "/"}
        async with session.get(f"{running_server.base_url}/") as response:
            html = await response.text()
    assert 'id="workspace-link"' in html and 'src="front-door.js"' in html
    assert running_server.settings.records.base_url == (
        f"http://{running_server.settings.records.host}:{running_server.settings.records.port}")
