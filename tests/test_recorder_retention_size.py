"""recorder.library: retention by the recordings' total size, oldest first, never deleting
a recording still being written or one the records service has not got."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from recorder.library import RecordingLibrary, RetentionPolicy, apply_retention

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MIB = 1024 * 1024


def recording(root: Path, recording_id: str, *, ended_days_ago: float, mib: int,
              status: str = "complete", handoff: str | None = None) -> Path:
    """A recording directory whose manifest says it holds ``mib`` MiB (no media needed)."""
    directory = root / recording_id
    directory.mkdir()
    end = NOW - timedelta(days=ended_days_ago)
    manifest = {"id": recording_id, "room": "bed-1", "status": status, "reason": "room-closed",
                "started_at": (end - timedelta(minutes=30)).isoformat().replace("+00:00", "Z"),
                "ended_at": end.isoformat().replace("+00:00", "Z"), "tracks": [],
                "timeline": {"file": "timeline.msgpack", "bytes": mib * MIB, "sha256": ""}}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    if handoff is not None:
        (directory / "handoff.json").write_text(json.dumps({"status": handoff}))
    return directory


@pytest.fixture
def root(tmp_path: Path) -> Path:
    recording(tmp_path, "a-oldest", ended_days_ago=9, mib=40, handoff="delivered")
    recording(tmp_path, "b-pending", ended_days_ago=8, mib=40, handoff="pending")
    recording(tmp_path, "c-unclaimed-old", ended_days_ago=7.9, mib=40, handoff="unclaimed")
    recording(tmp_path, "d-rejected", ended_days_ago=7, mib=40, handoff="rejected")
    recording(tmp_path, "e-stopped", ended_days_ago=6, mib=40, status="stopped",
              handoff="delivered")
    recording(tmp_path, "f-unclaimed-new", ended_days_ago=1, mib=40, handoff="unclaimed")
    recording(tmp_path, "g-newest", ended_days_ago=0.5, mib=40, handoff="delivered")
    (tmp_path / "h-in-progress").mkdir()  # no manifest yet: still being written
    return tmp_path


def test_the_oldest_handed_off_recordings_go_first_until_the_rest_fit(root: Path) -> None:
    policy = RetentionPolicy(keep_days=None, max_total_bytes=160 * MIB, require_handoff=True,
                             keep_unclaimed_days=7)
    # 280 MiB; deletable, oldest first: a (delivered), c (unclaimed 7.9 days), e (stopped,
    # delivered), g; b (pending), d (rejected), f (unclaimed 1 day) are not.
    deleted = apply_retention(RecordingLibrary(root), policy, NOW)
    assert deleted == ["a-oldest", "c-unclaimed-old", "e-stopped"]
    assert sorted(p.name for p in root.iterdir()) == [
        "b-pending", "d-rejected", "f-unclaimed-new", "g-newest", "h-in-progress"]
    assert apply_retention(RecordingLibrary(root), policy, NOW) == []


def test_what_cannot_go_stays_even_over_the_budget(root: Path) -> None:
    policy = RetentionPolicy(keep_days=None, max_total_bytes=1, require_handoff=True)
    library = RecordingLibrary(root)
    assert sorted(apply_retention(library, policy, NOW)) == [
        "a-oldest", "c-unclaimed-old", "e-stopped", "g-newest"]
    assert {s.id for s in library.summaries()} == {
        "b-pending", "d-rejected", "f-unclaimed-new", "h-in-progress"}


def test_without_hand_off_every_finished_recording_counts(root: Path) -> None:
    policy = RetentionPolicy(keep_days=None, max_total_bytes=100 * MIB)
    ids = [i for i, why in policy.to_delete(RecordingLibrary(root).summaries(), NOW)]
    assert ids == ["a-oldest", "b-pending", "c-unclaimed-old", "d-rejected", "e-stopped"]


def test_age_and_size_together(root: Path) -> None:
    policy = RetentionPolicy(keep_days=7.5, max_total_bytes=100 * MIB, require_handoff=True)
    decided = policy.to_delete(RecordingLibrary(root).summaries(), NOW)
    # a, b, c are past 7.5 days (age keeps its own rule); then 160 MiB > 100: e, g.
    assert sorted(decided) == [("a-oldest", "age"), ("b-pending", "age"),
                               ("c-unclaimed-old", "age"), ("e-stopped", "size"),
                               ("g-newest", "size")]


def test_summaries_carry_the_hand_off_state(root: Path) -> None:
    by_id = {s.id: s for s in RecordingLibrary(root).summaries()}
    assert by_id["a-oldest"].handoff == "delivered" and by_id["a-oldest"].size_bytes == 40 * MIB
    assert by_id["e-stopped"].finished and by_id["e-stopped"].status == "stopped"
    assert by_id["h-in-progress"].handoff is None


def test_a_negative_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="max_total_bytes"):
        RetentionPolicy(keep_days=None, max_total_bytes=-1)
