"""The whole app records a live session and serves it only to tokens for that room."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import av
from aiohttp import web
from aiortc import RTCPeerConnection

from huizhen.app import create_app, token_authority
from huizhen.testpattern import PatternVideoTrack, ToneAudioTrack
from signaling.client import SignalingClient
from tests.conftest import make_settings


async def test_a_session_is_recorded_and_listed_for_its_room_only(tmp_path: Path):
    settings = make_settings(HUIZHEN_RECORDER_ENABLED="true",
                             HUIZHEN_STORAGE_DATA_DIR=str(tmp_path))
    authority = token_authority(settings)
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.server.port).start()
    base = settings.server.base_url
    try:
        ward = SignalingClient(base.replace("http", "ws", 1) + "/ws")
        await ward.connect()
        await ward.join(authority.mint(room="bed-4", role="ward", name="w", ttl=60))
        pc = RTCPeerConnection()
        pc.addTrack(PatternVideoTrack(320, 240, 30))
        pc.addTrack(ToneAudioTrack())
        await ward.publish(pc)
        await asyncio.sleep(4.0)
        # The ward leaves: only the recorder is left, the room closes, the recording ends.
        await ward.close()
        await pc.close()
        manifest_path = None
        for _ in range(100):
            found = list((tmp_path / "recordings").glob("*/manifest.json"))
            if found:
                manifest_path = found[0]
                break
            await asyncio.sleep(0.1)
        assert manifest_path is not None, "no manifest was written"
        manifest = json.loads(manifest_path.read_text())
        assert manifest["room"] == "bed-4" and manifest["status"] == "complete"
        codecs = sorted(t["codec"] for t in manifest["tracks"])
        assert codecs == ["VP8", "opus"]
        video = next(t for t in manifest["tracks"] if t["kind"] == "video")
        with av.open(str(manifest_path.parent / video["file"])) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "vp8"  # remuxed, not transcoded
            frames = sum(1 for _ in container.decode(stream))
        assert frames >= 60

        async with aiohttp.ClientSession() as http:
            def bearer(room: str, role: str) -> dict[str, str]:
                token = authority.mint(room=room, role=role, name="x", ttl=60)
                return {"Authorization": f"Bearer {token}"}

            url = base + "/api/v1/recordings"
            async with http.get(url, headers=bearer("bed-4", "expert")) as response:
                listed = (await response.json())["recordings"]
            assert [r["room"] for r in listed] == ["bed-4"]
            async with http.get(url, headers=bearer("bed-5", "expert")) as response:
                assert (await response.json())["recordings"] == []
            one = f"{url}/{manifest['id']}"
            async with http.get(one, headers=bearer("bed-5", "expert")) as response:
                assert response.status == 403
            async with http.get(one) as response:
                assert response.status == 401
            # Expired or forged: 401 on the list and on a recording, never an empty list.
            expired = authority.mint(room="bed-4", role="expert", name="x", ttl=60,
                                     now=time.time() - 120)
            for token in (expired, "not.a.jwt"):
                for target in (url, one):
                    async with http.get(target,
                                        headers={"Authorization": f"Bearer {token}"}) as response:
                        assert response.status == 401, (token, target)
                        assert "ask for a new link" in (await response.json())["error"]
            async with http.get(one, headers=bearer("bed-4", "observer")) as response:
                assert response.status == 200
                assert (await response.json())["id"] == manifest["id"]
    finally:
        await runner.cleanup()
