"""The media clock, the msgpack timeline and the manifest: pure pieces and files."""

from __future__ import annotations

import json

import msgpack
import pytest

from recorder.clock import NTP_EPOCH_OFFSET, MediaClock, ntp_to_unix
from recorder.errors import ManifestError
from recorder.manifest import FileEntry, Manifest, TrackEntry, iso_utc, load_manifest
from recorder.timeline import TimelineWriter, read_timeline


def ntp(unix: float) -> int:
    return int((unix + NTP_EPOCH_OFFSET) * 2**32)


def test_ntp_to_unix():
    assert ntp_to_unix(ntp(1_700_000_000.25)) == pytest.approx(1_700_000_000.25, abs=1e-6)


def test_timestamps_unwrap_across_2_to_the_32():
    clock = MediaClock(90000)
    first = clock.extend((1 << 32) - 3000)
    assert clock.extend(0) == first + 3000
    assert clock.extend(3000) == first + 6000
    assert clock.relative(0) == first + 3000  # a late packet maps back, not a wrap forward


def test_arrival_mapping_takes_the_least_delayed_packet():
    clock = MediaClock(90000)
    clock.observe_arrival(90000, 1000.050)  # 50 ms late
    clock.observe_arrival(180000, 1001.010)  # 10 ms late: the best one
    clock.observe_arrival(270000, 1002.030)
    assert clock.arrival_wall(90000) == pytest.approx(1000.010)


def test_sender_report_used_only_when_plausible():
    clock = MediaClock(48000)
    clock.observe_arrival(48000, 500.040)
    clock.observe_sender_report(ntp(500.020), 48000)  # sent 20 ms before arrival: fine
    assert clock.report_wall(0) == pytest.approx(499.020, abs=1e-6)
    clock.observe_sender_report(ntp(505.0), 48000)  # a publisher clock 5 s ahead
    assert clock.report_wall(0) is None and clock.report_disagrees
    clock.observe_sender_report(ntp(480.0), 48000)  # 20 s behind
    assert clock.report_wall(0) is None


def test_timeline_appends_and_a_torn_tail_is_ignored(tmp_path):
    path = tmp_path / "timeline.msgpack"
    writer = TimelineWriter(path)
    writer.append({"kind": "join", "t": 1, "participant": "p-1", "role": "ward"})
    writer.append({"kind": "vitals", "t": 2, "samples": [{"vital": "hr", "value": 72}]})
    writer.sync()
    intact = path.stat().st_size
    # A crash in the middle of the third event.
    third = msgpack.packb({"kind": "leave", "t": 3, "participant": "p-1"})
    with open(path, "ab") as file:
        file.write(third[:5])
    events, good = read_timeline(path)
    assert [e["kind"] for e in events] == ["join", "vitals"]
    assert good == intact
    writer.close()


def test_manifest_round_trip_and_validation(tmp_path):
    track = TrackEntry(
        id="s-1-0", stream="s-1", participant="p-1", role="ward", kind="video", codec="VP8",
        container="webm", mime_type="video/webm", file="tracks/s-1-0.webm", duration=20.0,
        bytes=10, sha256="ab", start_ms=1_000, end_ms=21_000, clock="arrival", frames=600,
        width=320, height=240)
    manifest = Manifest(id="r1", room="bed-1", status="complete", reason="room-closed",
                        started_at=iso_utc(900), ended_at=iso_utc(21_000), start_ms=900,
                        end_ms=21_000, tracks=[track],
                        timeline=FileEntry("timeline.msgpack", 5, "cd", 3))
    manifest.write(tmp_path)
    document = json.loads((tmp_path / "manifest.json").read_text())
    assert document["tracks"][0]["start_ms"] == 1_000
    assert document["started_at"] == "1970-01-01T00:00:00.900Z"
    assert load_manifest(tmp_path) == manifest
    document["tracks"] = [{"id": "x"}]
    with pytest.raises(ManifestError):
        Manifest.from_json(document)
