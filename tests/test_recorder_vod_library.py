"""recorder.library: listing recordings newest first, and the retention policy."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web

from recorder.library import (
    RecordingLibrary,
    RetentionPolicy,
    apply_retention,
    retention_context,
)
from recorder.vod_input import read_recording, read_timeline
from tests.test_recorder_vod_fixtures import make_recording

DAY_MS = 86_400_000
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


def write_manifest_only(root: Path, recording_id: str, *, ended_days_ago: float,
                        status: str = "complete", room: str = "bed-1") -> Path:
    """A recording directory with a manifest and no media (listing needs no media)."""
    directory = root / recording_id
    directory.mkdir()
    end = NOW - timedelta(days=ended_days_ago)
    manifest = {"id": recording_id, "room": room, "status": status,
                "started_at": (end - timedelta(minutes=30)).isoformat().replace("+00:00", "Z"),
                "ended_at": end.isoformat().replace("+00:00", "Z"), "tracks": [],
                "future_field": {"ignored": True}}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_manifest_only(tmp_path, "old", ended_days_ago=40)
    write_manifest_only(tmp_path, "recent", ended_days_ago=2)
    write_manifest_only(tmp_path, "old-recovered", ended_days_ago=35, status="recovered")
    write_manifest_only(tmp_path, "old-but-recording", ended_days_ago=50, status="recording")
    (tmp_path / "in-progress").mkdir()  # no manifest yet
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    (tmp_path / "notes.txt").write_text("not a recording")
    return tmp_path


def test_summaries_newest_first_with_fields(tmp_path: Path) -> None:
    make_recording(tmp_path, "a", duration=2.5, origin_ms=NOW_MS - 3 * DAY_MS)
    make_recording(tmp_path, "b", duration=2.5, origin_ms=NOW_MS - DAY_MS, room="bed-7")
    summaries = RecordingLibrary(tmp_path).summaries()
    assert [s.id for s in summaries] == ["b", "a"]
    b = summaries[0].to_json()
    assert b["room"] == "bed-7" and b["status"] == "complete" and b["tracks"] == 3
    assert b["participants"] == 2 and b["rendered"] is False and b["bytes"] > 10_000
    assert b["startedAt"].endswith("Z") and b["duration"] == pytest.approx(2.55)


def test_listing_reports_unfinished_and_invalid_directories(root: Path) -> None:
    by_id = {s.id: s for s in RecordingLibrary(root).summaries()}
    assert set(by_id) == {"old", "recent", "old-recovered", "old-but-recording",
                          "in-progress", "broken"}
    assert by_id["in-progress"].status == "recording" and by_id["in-progress"].room == ""
    assert by_id["broken"].status == "invalid"
    assert by_id["recent"].finished and not by_id["old-but-recording"].finished


def test_retention_deletes_only_old_finished_recordings(root: Path) -> None:
    library = RecordingLibrary(root)
    deleted = apply_retention(library, RetentionPolicy(keep_days=30), now=NOW)
    assert sorted(deleted) == ["old", "old-recovered"]
    assert sorted(p.name for p in root.iterdir()) == [
        "broken", "in-progress", "notes.txt", "old-but-recording", "recent"]
    assert apply_retention(library, RetentionPolicy(keep_days=30), now=NOW) == []


def test_retention_never_touches_a_recording_in_progress(root: Path) -> None:
    far_future = NOW + timedelta(days=10_000)
    deleted = apply_retention(RecordingLibrary(root), RetentionPolicy(keep_days=1), far_future)
    assert "in-progress" not in deleted and "old-but-recording" not in deleted
    assert "broken" not in deleted  # unreadable: left for a human unless configured
    assert (root / "in-progress").is_dir()


def test_invalid_directories_expire_only_when_configured(root: Path) -> None:
    policy = RetentionPolicy(keep_days=30, keep_invalid_days=7)
    assert "broken" in policy.expired(RecordingLibrary(root).summaries(),
                                      datetime.now(UTC) + timedelta(days=8))
    with pytest.raises(ValueError):
        RetentionPolicy(keep_days=0)


async def test_retention_context_runs_in_the_app(root: Path) -> None:
    app = web.Application()
    app.cleanup_ctx.append(retention_context(RecordingLibrary(root), RetentionPolicy(30),
                                             interval=0.05, now=lambda: NOW))
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        for _ in range(100):
            if not (root / "old").exists():
                break
            await asyncio.sleep(0.02)
        assert not (root / "old").exists() and (root / "recent").exists()
    finally:
        await runner.cleanup()


def test_reader_tolerates_extra_fields_and_a_torn_timeline(tmp_path: Path) -> None:
    directory = make_recording(tmp_path, "r", duration=2.5)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["tracks"][0]["new_thing"] = 1
    manifest["hand_off"] = {"state": "pending"}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    recording = read_recording(directory)
    assert [t.role for t in recording.video_tracks] == ["ward", "expert"]
    timeline = directory / "timeline.msgpack"
    complete = list(read_timeline(timeline))
    data = timeline.read_bytes()
    timeline.write_bytes(data[:-7])  # killed mid-write
    torn = list(read_timeline(timeline))
    assert torn == complete[:-1]


@pytest.mark.parametrize("change, message", [
    ({"room": ""}, "no room"),
    ({"tracks": [{"kind": "video", "file": "../../etc/passwd", "start_ms": 1}]},
     "leaves the recording directory"),
    ({"tracks": [{"kind": "subtitle", "file": "x", "start_ms": 1}]}, "kind"),
    ({"tracks": [{"kind": "audio", "file": "x"}]}, "start_ms"),
])
def test_malformed_manifests_are_refused_precisely(tmp_path: Path, change: dict[str, object],
                                                   message: str) -> None:
    directory = write_manifest_only(tmp_path, "m", ended_days_ago=1)
    manifest = json.loads((directory / "manifest.json").read_text()) | change
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=message):
        read_recording(directory)
