"""Recording real sessions: aiortc peers publish into a MediaServer room; PyAV checks the files.

The 20 s session is recorded once (module fixture) and examined by several tests.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import av
import numpy as np
import pytest

from huizhen.testpattern import dominant_frequency, pattern_difference, read_frame_number
from mediaserver import MediaConfig, MediaServer
from recorder.manifest import Manifest, file_digest, read_json
from recorder.service import RecorderService
from recorder.session_recorder import SessionRecorder
from recorder.timeline import read_timeline
from tests.fakes import Member
from tests.peers import wait_for
from tests.recorder_child import publish

SESSION_SECONDS = 20.0
NAMES = ("Nurse Li", "Dr. Wang")


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decode_video(path: Path) -> list[tuple[float, int, float]]:
    """(media time, frame number, difference to the pattern) of every decoded picture."""
    out = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            image = frame.to_ndarray(format="bgr24")
            number = read_frame_number(image)
            out.append((float(frame.time), number, pattern_difference(image, number)))
    return out


@dataclass
class Session:
    directory: Path
    manifest: Manifest
    captured: dict[int, float]  # frame number -> wall-clock capture time at the publisher
    vitals_sent: int
    video: list[tuple[float, int, float]]
    finished: list[Path]  # what the service's finish hook was told (queues the render)


async def record_session(recordings: Path) -> Session:
    server = MediaServer(MediaConfig(ice_addresses=("127.0.0.1",)))
    finished: list[Path] = []
    service = RecorderService(server.directory, recordings, on_finished=finished.append)
    await service.start()
    room = server.room("bed-7")
    recorder = service.recorder_for("bed-7")
    assert recorder is not None
    ward, pc, publication, tracks = await publish(room, name=NAMES[0])
    video = publication.producers[0]
    await wait_for(lambda: video.packets_received > 0, 30)
    sent = 0
    expert = None
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < SESSION_SECONDS:
        room.broadcast("vitals", {"device": "monitor-1", "samples": [
            {"vital": "heart-rate", "code": "147842", "codeSystem": "MDC",
             "name": "MDC_ECG_HEART_RATE", "unit": "/min", "loinc": "8867-4", "status": "R",
             "observedAt": iso_now(), "value": 60 + sent % 40},
            {"vital": "pleth", "code": "150452", "codeSystem": "MDC",
             "name": "MDC_PULS_OXIM_PLETH", "unit": "1", "loinc": None, "status": "R",
             "observedAt": iso_now(), "values": [0.1, 0.5, 0.9, 0.4], "sampleRate": 8}]})
        sent += 1
        if sent == 10:
            expert = room.join(NAMES[1], "expert", Member())
        elif sent == 12 and expert is not None:
            room.broadcast("ptz-state", {"holder": expert.id, "holderName": NAMES[1],
                                         "holderRole": "expert", "camera": "online",
                                         "moving": True, "motion": "move"})
        elif sent == 14:
            room.broadcast("alarm", {"id": "monitor-1/pcd-04/196670/spo2", "device": "monitor-1",
                                     "source": "pcd-04", "code": "196670",
                                     "name": "MDC_EVT_LO", "vital": "spo2", "priority": "high",
                                     "state": "active", "text": None, "flags": ["PH"],
                                     "observedAt": iso_now()})
            room.broadcast("patient-changed", {"device": "monitor-1", "changedAt": iso_now()})
        elif sent == 30 and expert is not None:
            room.leave(expert)
        await asyncio.sleep(max(0.0, sent * 0.5 - elapsed))
    room.leave(ward)  # only the recorder is left: the room closes itself
    manifest = await asyncio.wait_for(recorder.wait_finished(), 30)
    await pc.close()
    await service.stop()
    await server.close()
    path = recorder.path / next(t.file for t in manifest.tracks if t.kind == "video")
    decoded = await asyncio.to_thread(decode_video, path)
    return Session(recorder.path, manifest, dict(tracks[0].captured), sent, decoded, finished)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    return asyncio.run(record_session(tmp_path_factory.mktemp("recordings")))


def test_twenty_seconds_of_vp8_and_opus_remuxed_and_decodable(session):
    manifest = session.manifest
    assert manifest.status == "complete" and manifest.reason == "room-closed"
    video, audio = sorted(manifest.tracks, key=lambda t: t.kind != "video")
    assert (video.kind, video.codec, video.container) == ("video", "VP8", "webm")
    assert (audio.kind, audio.codec, audio.container) == ("audio", "opus", "webm")
    for track, codec in ((video, "vp8"), (audio, "opus")):
        with av.open(str(session.directory / track.file)) as container:
            stream = container.streams[0]
            assert stream.codec_context.name == codec  # the source codec: no transcoding
            duration = container.duration / 1_000_000
        assert abs(duration - SESSION_SECONDS) <= 0.05 * SESSION_SECONDS, (track.kind, duration)
        assert abs(track.duration - duration) < 0.1
    # The pictures are the publisher's pattern, in order, whole.
    numbers = [n for _, n, _ in session.video]
    assert len(numbers) >= 0.95 * SESSION_SECONDS * 30, len(numbers)
    assert all(b > a for a, b in itertools.pairwise(numbers))
    differences = [d for _, _, d in session.video]
    assert np.mean(differences) < 12 and max(differences) < 25, max(differences)
    assert (video.width, video.height) == (320, 240)
    with av.open(str(session.directory / audio.file)) as container:
        samples = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
    assert abs(dominant_frequency(samples[-96000:], 48000) - 440) < 15


def test_manifest_describes_the_files(session):
    manifest = session.manifest
    directory = session.directory
    document = json.loads((directory / "manifest.json").read_text())
    assert document["id"] == directory.name and document["room"] == "bed-7"
    assert read_json(directory / "recording.json")["status"] == "complete"
    for track in manifest.tracks:
        assert (track.bytes, track.sha256) == file_digest(directory / track.file)
        assert track.file.startswith("tracks/") and track.end_ms > track.start_ms
        assert track.participant and track.role == "ward"
        # aiortc publishers send RTCP sender reports: the tracks are timed by them.
        assert track.clock == "sender-report" and track.lost_packets == 0
    timeline = manifest.timeline
    assert (timeline.bytes, timeline.sha256) == file_digest(directory / timeline.file)
    started = datetime.fromisoformat(manifest.started_at.replace("Z", "+00:00"))
    ended = datetime.fromisoformat(manifest.ended_at.replace("Z", "+00:00"))
    assert started.timestamp() * 1000 == pytest.approx(manifest.start_ms, abs=1)
    assert SESSION_SECONDS <= (ended - started).total_seconds() <= SESSION_SECONDS + 5


def test_timeline_keeps_vitals_ptz_and_membership_without_names(session):
    path = session.directory / "timeline.msgpack"
    events, size = read_timeline(path)
    assert size == path.stat().st_size and len(events) == session.manifest.timeline.events
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "recording-start" and kinds[-1] == "recording-end"
    assert kinds.count("track-start") == 2 and kinds.count("track-end") == 2
    assert kinds.count("vitals") == session.vitals_sent
    times = [e["t"] for e in events if e["kind"] == "vitals"]
    assert times == sorted(times)
    vitals = next(e for e in events if e["kind"] == "vitals")
    assert vitals["device"] == "monitor-1" and vitals["samples"][1]["values"] == [
        0.1, 0.5, 0.9, 0.4]
    joins = [e for e in events if e["kind"] in ("join", "leave")]
    assert [(e["kind"], e["role"]) for e in joins] == [
        ("join", "ward"), ("join", "expert"), ("leave", "expert"), ("leave", "ward")]
    ptz = next(e for e in events if e["kind"] == "ptz-state")
    assert ptz["state"]["moving"] is True and "holderName" not in ptz["state"]
    alarm = next(e for e in events if e["kind"] == "alarm")
    assert (alarm["device"], alarm["vital"], alarm["priority"], alarm["state"]) == (
        "monitor-1", "spo2", "high", "active")
    changed = next(e for e in events if e["kind"] == "patient-changed")
    assert changed["device"] == "monitor-1" and "changedAt" in changed
    raw = path.read_bytes()
    assert not any(name.encode() in raw for name in NAMES)


def test_vitals_line_up_with_the_video_within_100_ms(session):
    """At each vitals event's time, the replayed picture is the one captured at that time."""
    video = next(t for t in session.manifest.tracks if t.kind == "video")
    events, _ = read_timeline(session.directory / "timeline.msgpack")
    times = [t for t, _, _ in session.video]
    errors = []
    for event in events:
        if event["kind"] != "vitals":
            continue
        media_time = (event["t"] - video.start_ms) / 1000
        index = bisect.bisect_right(times, media_time + 1e-6) - 1
        if index < 0:
            continue  # before the first picture
        shown = session.video[index][1]
        errors.append(session.captured[shown] * 1000 - event["t"])
    assert len(errors) >= session.vitals_sent - 2
    print(f"picture capture time - vitals time: min {min(errors):.1f} ms, "
          f"max {max(errors):.1f} ms, mean {np.mean(errors):.1f} ms")
    assert max(abs(e) for e in errors) <= 100, errors


async def test_h264_session_to_matroska(tmp_path):
    server = MediaServer(MediaConfig(ice_addresses=("127.0.0.1",)))
    room = server.room("bed-h264")
    recorder = SessionRecorder(room, tmp_path)
    recorder.start()
    _, pc, publication, _ = await publish(room, codec="H264")
    await wait_for(lambda: publication.producers[0].packets_received > 0, 30)
    await asyncio.sleep(4)
    room.close()
    manifest = await asyncio.wait_for(recorder.wait_finished(), 30)
    await pc.close()
    await server.close()
    video = next(t for t in manifest.tracks if t.kind == "video")
    assert (video.codec, video.container, Path(video.file).suffix) == ("H264", "matroska", ".mkv")
    with av.open(str(recorder.path / video.file)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        duration = container.duration / 1_000_000
    assert abs(duration - 4) < 0.3
    decoded = await asyncio.to_thread(decode_video, recorder.path / video.file)
    numbers = [n for _, n, _ in decoded]
    assert len(numbers) >= 100 and all(b > a for a, b in itertools.pairwise(numbers))
    assert max(d for _, _, d in decoded) < 25


async def test_late_recorder_late_joiner_and_removed_track(tmp_path):
    server = MediaServer(MediaConfig(ice_addresses=("127.0.0.1",)))
    room = server.room("bed-late")
    first, pc_a, pub_a, _ = await publish(room, name="A", audio=False)
    await wait_for(lambda: pub_a.producers[0].packets_received > 30, 30)
    requests_before = pub_a.producers[0].keyframe_requests_sent
    recorder = SessionRecorder(room, tmp_path)  # joins a session already under way
    recorder.start()
    assert pub_a.producers[0].keyframe_requests_sent > requests_before  # asks for a keyframe
    await asyncio.sleep(1.5)
    _, pc_b, pub_b, _ = await publish(room, name="B", role="expert")  # a late joiner
    await wait_for(lambda: pub_b.producers[0].packets_received > 0, 30)
    await asyncio.sleep(1.5)
    room.unpublish(first, pub_a.id)  # A's track ends; B goes on
    removed_at = time.time() * 1000
    await asyncio.sleep(1.0)
    manifest = await recorder.stop()
    await pc_a.close()
    await pc_b.close()
    await server.close()
    by_id = {t.id: t for t in manifest.tracks}
    a_video = by_id[pub_a.producers[0].id]
    b_video, b_audio = (by_id[p.id] for p in pub_b.producers)
    assert b_audio.kind == "audio" and b_video.role == "expert"
    assert abs(a_video.end_ms - removed_at) < 300
    assert b_video.start_ms > a_video.start_ms + 1000 and b_video.end_ms > a_video.end_ms + 500
    for track in (a_video, b_video):
        decoded = await asyncio.to_thread(decode_video, recorder.path / track.file)
        # Each starts at a keyframe: its very first picture is already right.
        assert decoded and decoded[0][0] == 0 and max(d for _, _, d in decoded) < 25
        assert abs(decoded[-1][0] - track.duration) < 0.1
    events, _ = read_timeline(recorder.path / "timeline.msgpack")
    ends = [e["track"] for e in events if e["kind"] == "track-end"]
    assert ends[0] == a_video.id and len(ends) == 3
    assert manifest.reason == "stopped" and recorder.participant is not None
    assert recorder.participant.id not in room.participants


def test_a_closed_rooms_recording_is_handed_to_the_finish_hook(session: Session) -> None:
    """The app factory queues the teaching video's render from this hook."""
    assert session.finished == [session.directory]
    assert (session.directory / "manifest.json").is_file()
