"""The command line: tokens minted by the CLI verify, and the demo comes up and streams."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys

from huizhen.app import token_authority
from signaling.client import SignalingClient
from tests.conftest import free_port, make_settings, stop_process
from tests.peers import Subscriber, wait_for

SECRET = "cli-test-secret-0123456789abcdef-0123456"


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "huizhen", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **env})


def test_token_command_mints_a_verifiable_token():
    result = run_cli("token", "--room", "bed-12", "--role", "expert", "--name", "Dr. Li",
                     "--ttl", "120", HUIZHEN_AUTH_TOKEN_SECRET=SECRET)
    assert result.returncode == 0, result.stderr
    settings = make_settings(HUIZHEN_AUTH_TOKEN_SECRET=SECRET)
    grant = token_authority(settings).verify(result.stdout.strip())
    assert (grant.room, grant.role, grant.name) == ("bed-12", "expert", "Dr. Li")


def test_token_command_refuses_bad_input():
    result = run_cli("token", "--room", "r", "--role", "king", "--name", "x")
    assert result.returncode != 0 and "invalid choice" in result.stderr
    bad = run_cli("token", "--room", "r", "--role", "ward", "--name", "x",
                  HUIZHEN_SERVER_PORT="eighty")
    assert bad.returncode != 0 and "HUIZHEN_SERVER_PORT" in bad.stderr


async def test_demo_comes_up_and_streams_the_moving_pattern(tmp_path):
    """``--no-records``: the media server and bedside only, as before the workspace joined
    the demo (which tests/test_demo_records.py covers), in the room given."""
    port = free_port()
    env = {**os.environ, "HUIZHEN_SERVER_PORT": str(port),
           "HUIZHEN_STORAGE_DATA_DIR": str(tmp_path)}
    demo = subprocess.Popen([sys.executable, "-m", "huizhen", "demo", "--duration", "60",
                             "--no-records", "--room", "bed-9"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert demo.stdout is not None
        url = None
        loop = asyncio.get_running_loop()
        for _ in range(40):
            line = await asyncio.wait_for(loop.run_in_executor(None, demo.stdout.readline), 30)
            match = re.search(r"expert page:\s+(\S+)", line)
            if match:
                url = match.group(1)
                break
        assert url is not None and url.startswith(f"http://127.0.0.1:{port}/expert.html#token=")
        token = url.split("#token=", 1)[1]
        client = SignalingClient(f"ws://127.0.0.1:{port}/ws")
        await client.connect()
        joined = await client.join(token)
        assert joined["room"] == "bed-9"
        assert joined["grants"] == ["ptz", "publish", "subscribe"]
        # The simulated PTZ camera and monitor are bound to the demo room.
        assert joined["ptz"]["camera"] == "online"
        vitals = await client.next_event("vitals", 15)
        assert {s["vital"] for s in vitals["samples"]} >= {"hr", "spo2"}
        await client.request({"type": "ptz", "action": "move", "pan": 1, "tilt": 0, "zoom": 0})
        await client.request({"type": "ptz", "action": "stop"})
        [stream] = joined["streams"]
        assert [t["kind"] for t in stream["tracks"]] == ["video", "audio"]
        sub = Subscriber()
        await client.subscribe(stream["id"], sub.pc)
        await wait_for(lambda: sub.received.video_frames >= 30, 30)
        numbers = sub.received.frame_numbers
        assert numbers[-1] > numbers[0]  # the pattern moves: frame numbers advance
        await sub.close()
        await client.close()
    finally:
        returncode = stop_process(demo)
        rest = demo.stdout.read() if demo.stdout is not None else ""
    assert returncode == 0
    assert "workspace" not in rest and "demo-expert" not in rest  # no workspace, no accounts
    assert not list(tmp_path.glob("*records*"))


async def test_records_command_migrates_and_serves(tmp_path):
    import aiohttp

    port = free_port()
    env = {**os.environ, "HUIZHEN_RECORDS_PORT": str(port),
           "HUIZHEN_STORAGE_DATA_DIR": str(tmp_path),
           "HUIZHEN_RECORDER_HANDOFF_TOKEN": "recorder-service-token-0123456789abcdef"}
    service = subprocess.Popen([sys.executable, "-m", "huizhen", "records"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env=env)
    try:
        assert service.stdout is not None
        line = await asyncio.wait_for(
            asyncio.get_running_loop().run_in_executor(None, service.stdout.readline), 60)
        assert f"http://127.0.0.1:{port}" in line
        assert (tmp_path / "records.sqlite3").exists()  # migrated before serving
        base = f"http://127.0.0.1:{port}/api/v1"
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/consultations") as response:
                assert response.status == 401
            async with http.post(base + "/artefacts", json={},
                                 headers={"Authorization": "Bearer wrong"}) as response:
                assert response.status == 401
    finally:
        assert stop_process(service) == 0


async def test_records_admin_is_idempotent_and_prints_a_link_and_a_capped_token(
        tmp_path, aiohttp_client):
    import sqlalchemy as sa

    from consult_api.app import create_app as create_records_app
    from consult_api.db import make_engine
    from consult_api.models import Hospital, User

    env = {"HUIZHEN_STORAGE_DATA_DIR": str(tmp_path), "HUIZHEN_RECORDS_PORT": "9123"}
    command = ("records-admin", "--hospital", "Provincial Hospital", "--level", "province",
               "--name", "Records Admin", "--username", "Admin")
    first = run_cli(*command, **env)
    assert first.returncode == 0, first.stderr
    [first_link] = first.stdout.split()
    assert first_link.startswith("http://127.0.0.1:9123/#/set-password/")
    second = run_cli(*command, "--api-token", "--ttl", "86400", **env)
    assert second.returncode == 0, second.stderr
    link, token = second.stdout.split()
    assert token.startswith("hz_") and link != first_link
    too_long = run_cli(*command, "--api-token", "--ttl", str(30 * 24 * 3600 + 1), **env)
    assert too_long.returncode == 2
    assert len(too_long.stderr.strip().splitlines()) == 1 and "--ttl" in too_long.stderr

    url = f"sqlite:///{tmp_path / 'records.sqlite3'}"
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.scalar(sa.select(sa.func.count()).select_from(Hospital)) == 1
            users = connection.execute(sa.select(User.username, User.role)).all()
    finally:
        engine.dispose()
    assert users == [("admin", "admin")]

    # The link (the newest one only) sets the password; the token is the admin's.
    client = await aiohttp_client(create_records_app(url, make_settings().records.token_secret))
    response = await client.get("/api/v1/session", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200 and (await response.json())["user"]["role"] == "admin"
    for old_or_new, status in [(first_link, 400), (link, 204)]:
        response = await client.post("/api/v1/password-links/redeem", json={
            "token": old_or_new.split("/#/set-password/")[1], "password": "Records-admin-1"})
        assert response.status == status
    response = await client.post("/api/v1/session", json={"username": "admin",
                                                         "password": "Records-admin-1"})
    assert response.status == 200


def test_records_refuses_a_bad_webhook_in_one_line(tmp_path):
    bad = '[{"url": "ftp://sms.example/hook", "secret": "s3cret-s3cret-s3cret"}]'
    result = run_cli("records", HUIZHEN_RECORDS_WEBHOOKS=bad,
                     HUIZHEN_STORAGE_DATA_DIR=str(tmp_path))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "huizhen: records.webhooks: webhook 1: url must be an http(s) URL"]
