"""kill -9 in the middle of a recording, then recovery: all but the last ~2 s plays."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av

from huizhen.testpattern import pattern_difference, read_frame_number
from mediaserver import MediaConfig, MediaServer
from recorder.manifest import load_manifest, read_json
from recorder.recovery import interrupted_recordings
from recorder.service import RecorderService
from recorder.timeline import read_timeline

ROOT = Path(__file__).resolve().parent.parent
RECORD_BEFORE_KILL = 6.5  # not a whole number of seconds: clusters close every second


def last_decodable(path: Path) -> tuple[float, int, float]:
    """(time of the last decodable frame, frames, worst pattern difference for video)."""
    last, count, worst = -1.0, 0, 0.0
    with av.open(str(path)) as container:
        stream = container.streams[0]
        for frame in container.decode(stream):
            count += 1
            last = float(frame.time)
            if stream.type == "video" and count % 10 == 0:
                image = frame.to_ndarray(format="bgr24")
                worst = max(worst, pattern_difference(image, read_frame_number(image)))
    return last, count, worst


async def test_kill_minus_nine_then_recovery_keeps_all_but_the_last_two_seconds(tmp_path):
    child = subprocess.Popen([sys.executable, "-m", "tests.recorder_child", str(tmp_path)],
                             cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(
            asyncio.get_running_loop().run_in_executor(None, child.stdout.readline), 60)
        ready = json.loads(line)
        await asyncio.sleep(RECORD_BEFORE_KILL)
        killed_at = time.time()
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    directory = Path(ready["path"])
    assert read_json(directory / "recording.json")["status"] == "recording"
    assert interrupted_recordings(tmp_path) == [directory]

    # A restarted service recovers it before recording anything new.
    server = MediaServer(MediaConfig())
    service = RecorderService(server.directory, tmp_path)
    await service.start()
    await service.stop()
    await server.close()
    assert [m.id for m in service.recovered] == [ready["recording"]]
    manifest = load_manifest(directory)
    assert manifest.status == "recovered" and manifest.reason == "interrupted"
    assert read_json(directory / "recording.json")["status"] == "recovered"
    assert interrupted_recordings(tmp_path) == []
    assert {t.kind for t in manifest.tracks} == {"video", "audio"}
    for track in manifest.tracks:
        last, count, worst = await asyncio.to_thread(last_decodable, directory / track.file)
        kept_until = (track.start_ms / 1000) + last
        print(f"{track.kind}: {count} frames decode; the last one is "
              f"{killed_at - kept_until:.2f} s before the kill")
        assert kept_until >= killed_at - 2.5, (track.kind, killed_at - kept_until)
        assert abs(track.duration - last) < 0.1 and worst < 25
        with av.open(str(directory / track.file)) as container:  # finished: it has a duration
            assert container.duration is not None
    # The timeline survived too, up to the kill, and was closed by the recovery.
    events, size = read_timeline(directory / "timeline.msgpack")
    assert size == manifest.timeline.bytes and len(events) == manifest.timeline.events
    assert [e["kind"] for e in events].count("track-start") == 2
    assert events[-1]["kind"] == "recording-end" and events[-1]["reason"] == "interrupted"
