"""A full recordings disk, on a small tmpfs made by the test: the room keeps going, its
participants are told, health is degraded, the logs stay short, the stopped recording is
finished and handed off, and recording resumes (no restart) once space is freed."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection

from huizhen.testpattern import PatternVideoTrack, ToneAudioTrack
from recorder.manifest import read_json
from signaling.client import SignalingClient
from tests.conftest import make_settings, serving
from tests.peers import wait_for
from tests.test_recorder_handoff import RecordsService, serving_records

MIB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs, unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[RecordsService, str]]:
    """The records service's hand-off endpoint (the upload protocol): accepts every
    recording."""
    service = RecordsService(failures=0)
    async with serving_records(service) as url:
        yield service, url


def handed_off(service: RecordsService) -> set[str | None]:
    """The recordings announced to ``service`` (a recording is announced again once its
    teaching video is rendered)."""
    return {key for key, _ in service.requests}


def free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def fill(path: Path, leave: int) -> None:
    """A filler file that leaves about ``leave`` bytes free (0: not a byte)."""
    size = max(0, free_bytes(path.parent) - leave) if leave else 1 << 40
    with open(path, "wb", buffering=0) as file:
        while size > 0:
            chunk = min(size, MIB)
            try:
                file.write(b"\0" * chunk)
            except OSError:  # ENOSPC: full to the last byte
                break
            size -= chunk


def recording_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


@pytest.mark.parametrize("leave", [3 * MIB, 0], ids=["below-the-stop-threshold",
                                                    "to-the-last-byte"])
async def test_a_full_disk_stops_recording_cleanly_and_it_resumes(
        small_disk: Path, receiver: tuple[RecordsService, str], caplog: pytest.LogCaptureFixture,
        leave: int) -> None:
    """Filled below the stop threshold, or to the last byte (writes fail with ENOSPC: the
    recordings' reserve file makes room for the manifests)."""
    received, url = receiver
    settings = make_settings(
        HUIZHEN_RECORDER_ENABLED="true", HUIZHEN_STORAGE_DATA_DIR=str(small_disk),
        HUIZHEN_RECORDER_HANDOFF_URL=url,
        HUIZHEN_RECORDER_DISK_WARN_MIB="12", HUIZHEN_RECORDER_DISK_WARN_PERCENT="0",
        HUIZHEN_RECORDER_DISK_STOP_MIB="6", HUIZHEN_RECORDER_DISK_STOP_PERCENT="0",
        HUIZHEN_RECORDER_DISK_RESUME_MIB="10", HUIZHEN_RECORDER_DISK_RESERVE_MIB="2",
        HUIZHEN_RECORDER_DISK_CHECK_INTERVAL="0.2", HUIZHEN_RECORDER_DISK_FAILURE_HOLD="1",
        HUIZHEN_METRICS_ALLOW='["127.0.0.1/32"]')
    recordings = small_disk / "recordings"
    filler = small_disk / "filler.bin"
    caplog.set_level(logging.INFO)
    async with serving(settings) as server:
        ward = SignalingClient(server.ws_url)
        await ward.connect()
        await ward.join(server.token("ward", room="bed-9"))
        expert = SignalingClient(server.ws_url)
        await expert.connect()
        await expert.join(server.token("expert", room="bed-9"))
        pc = RTCPeerConnection()
        pc.addTrack(PatternVideoTrack(320, 240, 30))
        pc.addTrack(ToneAudioTrack())
        http = aiohttp.ClientSession()
        try:
            await ward.publish(pc)
            await wait_for(lambda: any(
                f.stat().st_size > 20_000 for d in recording_dirs(recordings)
                for f in (d / "tracks").glob("*")), timeout=30)
            [first] = recording_dirs(recordings)

            # The disk fills (something else writes to it): recording stops at the threshold.
            caplog.clear()
            fill(filler, leave=leave)
            for client in (ward, expert):
                event = await client.next_event("recording-state")
                assert event == {"type": "recording-state", "state": "stopped",
                                 "reason": "disk-full"}
            async with http.get(server.base_url + "/api/v1/health") as response:
                assert response.status == 200
                health = await response.json()
            assert health["status"] == "degraded"
            assert [(c["component"], c["reason"], c["stoppedRooms"])
                    for c in health["checks"]] == [("recording", "disk-full", 1)]
            async with http.get(server.base_url + "/metrics") as response:
                assert "huizhen_recorder_stopped_for_space 1.0" in await response.text()
            # Who joins now is told in the join reply.
            late = SignalingClient(server.ws_url)
            await late.connect()
            joined = await late.join(server.token("observer", room="bed-9"))
            assert joined["recording"] == {"state": "stopped", "reason": "disk-full"}
            await late.close()
            # The stopped recording is finished with its reason and handed off.
            await wait_for(lambda: (first / "handoff.json").is_file()
                           and read_json(first / "handoff.json")["status"] == "delivered",
                           timeout=30)
            manifest = json.loads((first / "manifest.json").read_text())
            assert (manifest["status"], manifest["reason"]) == ("stopped", "disk-full")
            assert {t["kind"] for t in manifest["tracks"]} == {"video", "audio"}
            assert all(t["bytes"] > 0 and t["frames"] > 0 for t in manifest["tracks"])
            # (Announced again once its teaching video is rendered: the same key.)
            assert handed_off(received) == {manifest["id"]}
            first_id = manifest["id"]
            # The room goes on (frames keep arriving), nothing new is written, the log is quiet.
            await asyncio.sleep(3.0)
            assert recording_dirs(recordings) == [first]
            full_lines = [r for r in caplog.records if r.name.startswith("recorder")]
            assert len(full_lines) < 10, [r.getMessage() for r in full_lines]
            assert all(r.exc_info is None for r in full_lines)
            assert any("disk full" in r.getMessage() for r in full_lines)
            # No teaching video is rendered into what is left of the disk meanwhile.
            assert not (first / "vod").exists()

            # Space is freed, no restart: the room is recorded again, under a new id.
            filler.unlink()
            for client in (ward, expert):
                event = await client.next_event("recording-state")
                assert event == {"type": "recording-state", "state": "recording"}
            async with http.get(server.base_url + "/api/v1/health") as response:
                health = await response.json()
            assert health["status"] == "ok" and "checks" not in health
            late = SignalingClient(server.ws_url)
            await late.connect()
            assert "recording" not in await late.join(server.token("observer", room="bed-9"))
            await late.close()
            await wait_for(lambda: len(recording_dirs(recordings)) == 2, timeout=10)
            second = next(d for d in recording_dirs(recordings) if d != first)
            await wait_for(lambda: any(f.stat().st_size > 5_000
                                       for f in (second / "tracks").glob("*")), timeout=30)
        finally:
            await http.close()
            await expert.close()
            await ward.close()
            await pc.close()
        await wait_for(lambda: (second / "manifest.json").is_file(), timeout=30)
        manifest = json.loads((second / "manifest.json").read_text())
        assert (manifest["status"], manifest["reason"]) == ("complete", "room-closed")
        assert manifest["room"] == "bed-9"
        await wait_for(lambda: manifest["id"] in handed_off(received), timeout=30)
        assert handed_off(received) == {first_id, manifest["id"]}
        # The stopped recording's teaching video was rendered once space came back.
        await wait_for(lambda: (first / "vod" / "render.json").is_file(), timeout=60)


async def test_low_space_is_a_warning_in_health_and_one_log_line(
        small_disk: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(
        HUIZHEN_RECORDER_ENABLED="true", HUIZHEN_STORAGE_DATA_DIR=str(small_disk),
        HUIZHEN_RECORDER_DISK_WARN_MIB="12", HUIZHEN_RECORDER_DISK_WARN_PERCENT="0",
        HUIZHEN_RECORDER_DISK_STOP_MIB="4", HUIZHEN_RECORDER_DISK_STOP_PERCENT="0",
        HUIZHEN_RECORDER_DISK_RESUME_MIB="6", HUIZHEN_RECORDER_DISK_RESERVE_MIB="1",
        HUIZHEN_RECORDER_DISK_CHECK_INTERVAL="0.1", HUIZHEN_METRICS_ALLOW='["127.0.0.1/32"]')
    caplog.set_level(logging.INFO)
    async with serving(settings) as server, aiohttp.ClientSession() as http:
        fill(small_disk / "filler.bin", leave=8 * MIB)
        health: dict[str, Any] = {}

        async def read_health() -> None:
            nonlocal health
            async with http.get(server.base_url + "/api/v1/health") as response:
                health = await response.json()

        for _ in range(100):
            await read_health()
            if "checks" in health:
                break
            await asyncio.sleep(0.1)
        assert health["status"] == "ok"  # recording goes on
        checks: list[dict[str, Any]] = health["checks"]
        assert len(checks) == 1
        check = checks[0]
        assert (check["component"], check["status"], check["reason"]) == (
            "recording", "warning", "disk-low")
        assert 4 * MIB < check["freeBytes"] < 12 * MIB
        async with http.get(server.base_url + "/metrics") as response:
            metrics = {line.split(" ")[0]: float(line.split(" ")[1])
                       for line in (await response.text()).splitlines()
                       if line.startswith("huizhen_recorder_")}
        assert 4 * MIB < metrics["huizhen_recorder_disk_free_bytes"] < 12 * MIB
        assert metrics["huizhen_recorder_stopped_for_space"] == 0
        await asyncio.sleep(1.0)  # ten more checks: no more lines
        lines = [r.getMessage() for r in caplog.records if r.name == "recorder.service"]
        assert len(lines) == 1 and lines[0].startswith("recordings: disk space low"), lines
