"""recorder.http: the recordings API and media routes on a real aiohttp server (loopback).

Authorisation is the injected ``authorize(request, room)``; here a fixed Bearer token
per room (tests/test_recorder_vod_fixtures.py) stands in for the app's JWTs.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from recorder.http import (
    COOKIE,
    RECORDINGS,
    PlaybackTickets,
    VodRenderer,
    render_in_subprocess,
    setup_recording_routes,
)
from recorder.vod import RenderOptions, render
from tests.test_recorder_playback_tickets import flip_signature, with_claims
from tests.test_recorder_vod_fixtures import auth, bearer_authorize, make_recording

SECRET = "recordings-ticket-secret-0123456789abcdef"
REC = "rec-20260101-bed-12"
OTHER = "rec-20260102-bed-7"
MyClient = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]
OWN, FOREIGN = auth("token-bed-12"), auth("token-bed-7")


@pytest.fixture(scope="module")
def library_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two short recordings: REC (room bed-12, rendered) and OTHER (room bed-7)."""
    root = tmp_path_factory.mktemp("recordings")
    render(make_recording(root, REC, duration=2.5), RenderOptions(width=640, height=360))
    make_recording(root, OTHER, room="bed-7", duration=2.5, origin_ms=1_767_312_000_000)
    (root / "rec-live").mkdir()  # being recorded: no manifest yet
    return root


def app_for(root: Path, renderer: VodRenderer | None = None) -> web.Application:
    app = web.Application()
    setup_recording_routes(app, root, bearer_authorize, SECRET, ticket_ttl=300,
                           renderer=renderer)
    return app


async def test_listing_needs_a_token_and_shows_only_its_rooms(
        aiohttp_client: MyClient, library_root: Path) -> None:
    client = await aiohttp_client(app_for(library_root))
    response = await client.get("/api/v1/recordings")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    response = await client.get("/api/v1/recordings", headers=auth("not-a-token"))
    assert response.status == 401, "not an empty list: the page must ask for a new link"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert (await response.json())["error"] == (
        "the token is expired or not valid: ask for a new link")
    response = await client.get("/api/v1/recordings", headers=OWN)
    assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
    [only] = (await response.json())["recordings"]
    assert only["id"] == REC and only["room"] == "bed-12" and only["status"] == "complete"
    assert only["rendered"] is True and only["tracks"] == 3 and only["participants"] == 2
    response = await client.get("/api/v1/recordings", headers=FOREIGN)
    assert [r["id"] for r in (await response.json())["recordings"]] == [OTHER]


async def test_async_authorize_and_newest_first(aiohttp_client: MyClient,
                                                library_root: Path) -> None:
    async def everything(request: web.Request, room: str) -> bool:
        await asyncio.sleep(0)
        return request.headers.get("Authorization") == "Bearer admin"

    app = web.Application()
    setup_recording_routes(app, library_root, everything, SECRET)
    client = await aiohttp_client(app)
    response = await client.get("/api/v1/recordings", headers=auth("admin"))
    assert [r["id"] for r in (await response.json())["recordings"]] == [OTHER, REC]


@pytest.mark.parametrize("path", ["", "/vitals"])
async def test_manifest_and_vitals_need_the_room(aiohttp_client: MyClient, library_root: Path,
                                                 path: str) -> None:
    client = await aiohttp_client(app_for(library_root))
    url = f"/api/v1/recordings/{REC}{path}"
    assert (await client.get(url)).status == 401
    response = await client.get(url, headers=FOREIGN)
    assert response.status == 403
    assert "bed-12" not in await response.text()
    response = await client.get(url, headers=OWN)
    assert response.status == 200
    body = await response.json()
    if path:
        assert body["vitals"]["hr"]["v"][:2] == [70.0, 71.0]
    else:
        assert body["video"]["state"] == "ready"
        assert body["video"]["media"] == f"/recordings/{REC}/teaching.mp4"
        assert {t["kind"] for t in body["tracks"]} == {"video", "audio"}
    assert (await client.get(f"/api/v1/recordings/nope{path}", headers=OWN)).status == 404


async def test_unsafe_ids_are_not_found(aiohttp_client: MyClient, library_root: Path) -> None:
    client = await aiohttp_client(app_for(library_root))
    for recording_id in ["..", "%2e%2e", ".hidden", "rec-live"]:
        response = await client.get(f"/api/v1/recordings/{recording_id}", headers=OWN)
        assert response.status == 404, recording_id


async def test_vitals_of_an_unrendered_recording_are_computed(
        aiohttp_client: MyClient, library_root: Path) -> None:
    client = await aiohttp_client(app_for(library_root))
    response = await client.get(f"/api/v1/recordings/{OTHER}/vitals", headers=FOREIGN)
    computed = await response.json()
    rendered = json.loads((library_root / REC / "vod" / "vitals.json").read_text())
    assert computed["vitals"] == rendered["vitals"]
    assert not (library_root / OTHER / "vod").exists()


async def playback(client: TestClient[web.Request, web.Application],
                   recording_id: str = REC) -> str:
    response = await client.post(f"/api/v1/recordings/{recording_id}/playback", headers=OWN)
    assert response.status == 200, await response.text()
    cookie = response.cookies[COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == f"/recordings/{recording_id}/"
    assert int(cookie["max-age"]) == 300
    body = await response.json()
    assert body["media"] == f"/recordings/{recording_id}/teaching.mp4"
    assert "token" not in json.dumps(body)
    return cookie.value


async def test_media_needs_the_playback_cookie(aiohttp_client: MyClient,
                                               library_root: Path) -> None:
    client = await aiohttp_client(app_for(library_root))
    media = f"/recordings/{REC}/teaching.mp4"
    response = await client.get(media)
    assert response.status == 401 and "invalid_token" not in response.headers["WWW-Authenticate"]
    assert (await client.get(media, headers=OWN)).status == 401, "a token is not a ticket"
    response = await client.post(f"/api/v1/recordings/{REC}/playback", headers=FOREIGN)
    assert response.status == 403 and COOKIE not in response.cookies
    response = await client.post(f"/api/v1/recordings/{REC}/playback")
    assert response.status == 401
    await playback(client)
    response = await client.get(media)
    assert response.status == 200
    assert response.headers["Content-Type"] == "video/mp4"
    assert response.headers["Accept-Ranges"] == "bytes"


async def test_range_requests_return_206_and_the_right_bytes(aiohttp_client: MyClient,
                                                             library_root: Path) -> None:
    client = await aiohttp_client(app_for(library_root))
    await playback(client)
    data = (library_root / REC / "vod" / "teaching.mp4").read_bytes()
    media = f"/recordings/{REC}/teaching.mp4"
    response = await client.get(media, headers={"Range": "bytes=100-1123"})
    assert response.status == 206
    assert response.headers["Content-Range"] == f"bytes 100-1123/{len(data)}"
    assert await response.read() == data[100:1124]
    response = await client.get(media, headers={"Range": f"bytes={len(data) - 10}-"})
    assert response.status == 206 and await response.read() == data[-10:]
    response = await client.get(media, headers={"Range": f"bytes={len(data) + 5}-"})
    assert response.status == 416
    # Several ranges: the whole file (RFC 9110 lets a server ignore Range), not 416.
    response = await client.get(media, headers={"Range": "bytes=0-9,100-199"})
    assert response.status == 200 and await response.read() == data
    assert "Content-Range" not in response.headers


async def test_hls_files_are_served_with_the_ticket(aiohttp_client: MyClient,
                                                   library_root: Path) -> None:
    client = await aiohttp_client(app_for(library_root))
    playlist = f"/recordings/{REC}/hls/index.m3u8"
    assert (await client.get(playlist)).status == 401
    await playback(client)
    response = await client.get(playlist)
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    names = [line for line in (await response.text()).splitlines()
             if line and not line.startswith("#")]
    response = await client.get(f"/recordings/{REC}/hls/{names[0]}",
                                headers={"Range": "bytes=0-99"})
    assert response.status == 206 and len(await response.read()) == 100
    for bad in ["..%2Fmanifest.json", "x.json", "%2e%2e"]:
        assert (await client.get(f"/recordings/{REC}/hls/{bad}")).status == 404, bad


async def test_a_ticket_opens_one_recording_only_and_expires(aiohttp_client: MyClient,
                                                             library_root: Path) -> None:
    app = app_for(library_root)
    client = await aiohttp_client(app)
    ticket = await playback(client)
    client.session.cookie_jar.clear()
    other = f"/recordings/{OTHER}/teaching.mp4"
    assert (await client.get(other, cookies={COOKIE: ticket})).status == 403
    own = f"/recordings/{REC}/teaching.mp4"
    assert (await client.get(own, cookies={COOKIE: ticket})).status == 200
    forged = flip_signature(ticket)
    response = await client.get(own, cookies={COOKIE: forged})
    assert response.status == 401 and 'error="invalid_token"' in response.headers[
        "WWW-Authenticate"]
    service = app[RECORDINGS]
    later = service.clock() + 301
    service.clock = lambda: later
    response = await client.get(own, cookies={COOKIE: ticket})
    assert response.status == 401, "an expired ticket asks for a new one"
    assert "ask for playback again" in (await response.json())["error"]


def test_tickets_are_bound_signed_and_short_lived() -> None:
    tickets = PlaybackTickets(SECRET, ttl=60)
    ticket = tickets.issue("rec-1", now=1000.0)
    assert tickets.verify(ticket, "rec-1", now=1059.0)
    assert not tickets.verify(ticket, "rec-1", now=1060.0)
    assert not tickets.verify(ticket, "rec-2", now=1001.0)
    assert not PlaybackTickets(SECRET + "x").verify(ticket, "rec-1", now=1001.0)
    assert not tickets.verify(with_claims(ticket, exp=1000 + 999), "rec-1", now=1001.0)
    assert not tickets.verify("", "rec-1", now=0) and not tickets.verify(None, "rec-1", now=0)
    with pytest.raises(ValueError):
        PlaybackTickets("short")


async def test_render_runs_in_a_subprocess_on_request(aiohttp_client: MyClient,
                                                      tmp_path: Path,
                                                      library_root: Path) -> None:
    shutil.copytree(library_root / OTHER, tmp_path / OTHER)
    renderer = VodRenderer(runner=render_in_subprocess)
    client = await aiohttp_client(app_for(tmp_path, renderer))
    assert (await client.post(f"/api/v1/recordings/{OTHER}/render", headers=OWN)).status == 403
    response = await client.post(f"/api/v1/recordings/{OTHER}/render", headers=FOREIGN)
    assert response.status == 202 and (await response.json())["state"] == "rendering"
    info = await (await client.get(f"/api/v1/recordings/{OTHER}", headers=FOREIGN)).json()
    assert info["video"]["state"] == "rendering"
    recording = client.app[RECORDINGS].library.get(OTHER)
    assert recording is not None
    await asyncio.wait_for(renderer.wait(recording), 120)
    info = await (await client.get(f"/api/v1/recordings/{OTHER}", headers=FOREIGN)).json()
    assert info["video"]["state"] == "ready"
    assert (tmp_path / OTHER / "vod" / "hls" / "index.m3u8").is_file()


async def test_media_before_the_render_starts_it_lazily(aiohttp_client: MyClient,
                                                        tmp_path: Path,
                                                        library_root: Path) -> None:
    shutil.copytree(library_root / OTHER, tmp_path / OTHER)
    started: list[Path] = []
    gate = asyncio.Event()

    async def fake_render(directory: Path) -> None:
        started.append(directory)
        await gate.wait()
        render(directory, RenderOptions(width=320, height=180))

    renderer = VodRenderer(runner=fake_render)
    app = app_for(tmp_path, renderer)
    client = await aiohttp_client(app)
    ticket = app[RECORDINGS].tickets.issue(OTHER, app[RECORDINGS].clock())
    response = await client.get(f"/recordings/{OTHER}/teaching.mp4", cookies={COOKIE: ticket})
    assert response.status == 503 and response.headers["Retry-After"] == "5"
    await asyncio.sleep(0)
    assert started == [tmp_path / OTHER]
    gate.set()
    recording = app[RECORDINGS].library.get(OTHER)
    assert recording is not None
    await asyncio.wait_for(renderer.wait(recording), 60)
    response = await client.get(f"/recordings/{OTHER}/teaching.mp4", cookies={COOKIE: ticket})
    assert response.status == 200


async def test_a_failed_render_is_reported_not_retried_in_a_loop(
        aiohttp_client: MyClient, tmp_path: Path, library_root: Path) -> None:
    shutil.copytree(library_root / OTHER, tmp_path / OTHER)
    calls = 0

    async def broken(directory: Path) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("encoder exploded")

    renderer = VodRenderer(runner=broken)
    client = await aiohttp_client(app_for(tmp_path, renderer))
    url = f"/api/v1/recordings/{OTHER}"
    assert (await (await client.post(f"{url}/playback", headers=FOREIGN)).json())["state"] == \
        "rendering"
    recording = client.app[RECORDINGS].library.get(OTHER)
    assert recording is not None
    await renderer.wait(recording)
    info = await (await client.get(url, headers=FOREIGN)).json()
    assert info["video"]["state"] == "failed"
    assert (await (await client.post(f"{url}/playback", headers=FOREIGN)).json())["state"] == \
        "failed"
    assert calls == 1
    response = await client.post(f"{url}/render", headers=FOREIGN)  # an explicit retry
    assert response.status == 202
    await renderer.wait(recording)
    assert calls == 2
