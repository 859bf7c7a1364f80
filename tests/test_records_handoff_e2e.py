"""Media server and records service together: a scheduled consultation's live session is
recorded, and the recorder's hand-off lands as an artefact of that consultation."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import sqlalchemy as sa
from aiohttp import web
from aiortc import RTCPeerConnection

from config.settings import Settings
from consult_api import records
from consult_api.app import create_app as create_records_app
from consult_api.db import make_engine, make_sessionmaker, upgrade
from huizhen.app import create_app, token_authority
from huizhen.testpattern import PatternVideoTrack
from signaling.client import SignalingClient
from tests.conftest import free_port, make_settings
from tests.test_consult_api import REQUEST, SECRET, DbTokens, seed

RECORDER_TOKEN = "recorder-service-token-0123456789abcdef"


async def start(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def publish_for(settings: Settings, token: str, seconds: float) -> None:
    """A ward joins with ``token``, publishes a test pattern for ``seconds`` and leaves."""
    ward = SignalingClient(settings.server.base_url.replace("http", "ws", 1) + "/ws")
    await ward.connect()
    await ward.join(token)
    pc = RTCPeerConnection()
    pc.addTrack(PatternVideoTrack(320, 240, 30))
    await ward.publish(pc)
    await asyncio.sleep(seconds)
    await ward.close()
    await pc.close()


async def test_the_recording_of_a_scheduled_session_reaches_its_consultation(tmp_path: Path):
    import aiohttp

    url = f"sqlite:///{tmp_path / 'records.sqlite3'}"
    upgrade(url)
    engine = make_engine(url)
    people = records.run_in_session(make_sessionmaker(engine), seed)
    settings = make_settings(HUIZHEN_RECORDER_ENABLED="true",
                             HUIZHEN_STORAGE_DATA_DIR=str(tmp_path / "media"))
    records_port = free_port()
    records_runner = await start(create_records_app(
        url, SECRET, data_dir=tmp_path / "records", recorder_token=RECORDER_TOKEN,
        room_tokens=token_authority(settings)), records_port)
    api = f"http://127.0.0.1:{records_port}/api/v1"
    tokens = DbTokens(url)

    def auth(who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens.mint(people[who])}"}

    async with aiohttp.ClientSession() as http:
        async with http.post(api + "/consultations", json=REQUEST, headers=auth("doctor")) as r:
            consultation = (await r.json())["id"]
        body = {"start": "2026-03-03T09:00:00+08:00", "end": "2026-03-03T09:30:00+08:00",
                "expert_id": people["expert"].user_id}
        async with http.post(f"{api}/consultations/{consultation}/schedule", json=body,
                             headers=auth("coordinator")) as r:
            room = (await r.json())["room"]
        # The live room's ward token comes from the records service itself.
        async with http.post(f"{api}/consultations/{consultation}/room-token",
                             json={"role": "ward"}, headers=auth("doctor")) as r:
            minted = await r.json()
    assert room, "scheduling opens a live room"

    media = create_app(dataclass_replace_recorder(settings, f"{api}/recordings"))
    media_runner = await start(media, settings.server.port)
    try:
        token = minted.get("token") or token_authority(settings).mint(
            room=room, role="ward", name="w", ttl=60)
        await publish_for(settings, token, 3.0)
        rows: list[sa.Row[tuple[object, ...]]] = []
        for _ in range(150):
            with engine.connect() as connection:
                rows = list(connection.execute(sa.text(
                    "SELECT consultation_id, manifest_id, room, files FROM artefacts "
                    "WHERE status = 'attached'")))
            if rows:
                break
            await asyncio.sleep(0.1)
        # The room's teaching video is rendered in the background after the hand-off; once
        # ready, its files follow the recording to the records service.
        teaching = (tmp_path / "records" / "received-recordings" / str(rows[0][1] if rows else "")
                    / "vod" / "teaching.mp4")
        for _ in range(600):
            if teaching.is_file() and teaching.stat().st_size > 0:
                break
            await asyncio.sleep(0.1)
        delivered_video = teaching.is_file()

        # A bed's own room, which no consultation owns: its hand-off ends "unclaimed" (the
        # records service's answer), once, and the recording stays for an admin.
        await publish_for(settings, token_authority(settings).mint(
            room="bed-e2e-7", role="ward", name="w", ttl=60), 1.5)
        unclaimed: list[dict[str, object]] = []
        for _ in range(150):
            unclaimed = [json.loads(state.read_text()) for state in
                         (tmp_path / "media" / "recordings").glob("*/handoff.json")
                         if json.loads(state.read_text()).get("status") == "unclaimed"]
            if unclaimed:
                break
            await asyncio.sleep(0.1)
    finally:
        await media_runner.cleanup()
        await records_runner.cleanup()
        engine.dispose()
    assert len(rows) == 1, "the recorder's hand-off did not arrive"
    consultation_id, manifest_id, artefact_room, files = rows[0]
    assert consultation_id == consultation and artefact_room == room
    manifest = json.loads(
        (tmp_path / "media" / "recordings" / str(manifest_id) / "manifest.json").read_text())
    assert manifest["room"] == room
    names = {f["file"] for f in (json.loads(files) if isinstance(files, str) else files)}
    assert any(name.startswith("tracks/") for name in names)
    # The bytes themselves reached the records service's own data directory, verified.
    received = tmp_path / "records" / "received-recordings" / str(manifest_id)
    for name in names:
        assert (received / name).read_bytes() == (
            tmp_path / "media" / "recordings" / str(manifest_id) / name).read_bytes()
    assert delivered_video, "the teaching video rendered after the hand-off did not follow it"
    rendered = tmp_path / "media" / "recordings" / str(manifest_id) / "vod" / "teaching.mp4"
    assert teaching.read_bytes() == rendered.read_bytes()
    assert len(unclaimed) == 1, "the bed room's hand-off did not end unclaimed"
    assert (unclaimed[0]["attempts"], unclaimed[0]["last_status"]) == (1, 404)


def dataclass_replace_recorder(settings, handoff_url: str):  # type: ignore[no-untyped-def]
    import dataclasses

    recorder = dataclasses.replace(settings.recorder, handoff_url=handoff_url,
                                   handoff_token=RECORDER_TOKEN)
    return dataclasses.replace(settings, recorder=recorder)
