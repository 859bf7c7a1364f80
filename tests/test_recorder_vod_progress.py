"""The render writes HLS while it encodes (an EVENT playlist that grows, segments that
exist when listed, #EXT-X-ENDLIST at the end) and its progress a few times a second;
the progress document's arithmetic and its reading of hostile files."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from recorder.vod import HLS_DIR, HLS_PLAYLIST, MP4, RENDER_JSON, VOD_DIR, RenderOptions, render
from recorder.vod_progress import (
    PROGRESS_JSON,
    ProgressThrottle,
    RenderProgress,
    read_progress,
)
from tests.test_recorder_vod_fixtures import make_recording


def test_the_playlist_grows_while_the_render_runs(tmp_path: Path) -> None:
    directory = make_recording(tmp_path)
    vod = directory / VOD_DIR
    playlist = vod / HLS_DIR / HLS_PLAYLIST
    results: list[object] = []
    thread = threading.Thread(target=lambda: results.append(
        render(directory, RenderOptions(width=640, height=360, segment_seconds=1.0,
                                        keyframe_seconds=1.0))))
    thread.start()
    counts: list[int] = []
    progress: list[float] = []
    while thread.is_alive():
        if playlist.is_file():
            text = playlist.read_text()
            segments = [line for line in text.splitlines() if line.endswith(".m4s")]
            if "#EXT-X-ENDLIST" not in text:
                assert "#EXT-X-PLAYLIST-TYPE:EVENT" in text
                assert not (vod / RENDER_JSON).exists()
                for name in segments:  # a listed segment is complete
                    assert (playlist.parent / name).stat().st_size > 0
                if not counts or counts[-1] != len(segments):
                    counts.append(len(segments))
        reading = read_progress(vod / PROGRESS_JSON)
        if reading is not None and (not progress or progress[-1] != reading.fraction):
            progress.append(reading.fraction)
        time.sleep(0.05)
    thread.join()
    assert results, "the render failed"
    final = playlist.read_text()
    assert final.rstrip().endswith("#EXT-X-ENDLIST")
    total = len([line for line in final.splitlines() if line.endswith(".m4s")])
    print(f"\nsegments listed while rendering: {counts} of {total}; progress {progress}")
    assert len(counts) >= 2 and counts == sorted(counts) and counts[-1] < total
    assert len(progress) >= 2 and progress == sorted(progress)
    assert (vod / MP4).stat().st_size > 0 and (vod / RENDER_JSON).is_file()
    assert not (vod / PROGRESS_JSON).exists()


def test_progress_eta_and_speed() -> None:
    half = RenderProgress(frames=500, total=1000, elapsed=10.0, fps=25)
    assert half.fraction == 0.5
    assert half.speed == 2.0  # 20 s of video in 10 s
    assert half.eta == 10.0
    assert RenderProgress(0, 1000, 3.0, 25).eta is None
    assert half.to_json() == {"frames": 500, "total": 1000, "elapsed": 10.0, "fps": 25,
                              "progress": 0.5, "speed": 2.0, "eta": 10.0}
    assert RenderProgress.from_json(half.to_json()) == half


def test_hostile_progress_files_read_as_none(tmp_path: Path) -> None:
    path = tmp_path / PROGRESS_JSON
    for text in ["", "{", "[]", '{"frames": 1}', '{"frames": -1, "total": 2, "elapsed": 1, '
                 '"fps": 25}', '{"frames": 1, "total": 0, "elapsed": 1, "fps": 25}',
                 '{"frames": "x", "total": 2, "elapsed": 1, "fps": 25}',
                 '{"frames": 1, "total": 2, "elapsed": NaN, "fps": 25}']:
        path.write_text(text)
        assert read_progress(path) is None, text
    assert read_progress(tmp_path / "missing.json") is None
    path.write_text('{"frames": 9, "total": 4, "elapsed": 1, "fps": 25}')
    assert read_progress(path) == RenderProgress(4, 4, 1.0, 25)  # clamped


def test_the_throttle_lets_a_report_through_four_times_a_second() -> None:
    throttle = ProgressThrottle(0.25)
    due = [now for now in [0.0, 0.1, 0.2, 0.25, 0.3, 0.49, 0.5, 1.0] if throttle.due(now)]
    assert due == [0.0, 0.25, 0.5, 1.0]
