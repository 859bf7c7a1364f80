"""The teaching video's picture: every camera in a tile of its own, and waveforms placed
sample by sample from their own times (never looping back).

Pure checks of the layout and of the waveform placement, and one render of a
recording with two ward cameras, an expert and vitals events carrying two pleth chunks
each, decoded with PyAV: each tile shows its own camera's test pattern.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from contracts.catalogue import Catalogue
from huizhen.testpattern import pattern_frame
from recorder.vod import (
    MAX_SIDE_TILES,
    RenderOptions,
    group_cameras,
    plan_layout,
    render,
)
from recorder.vod_input import Recording, Track, read_recording, read_timeline
from recorder.vod_overlay import Rect, wave_runs
from recorder.vod_sample import SampleParty, write_sample_recording
from recorder.vod_vitals import RawChunk, VitalsSeries, place_chunks
from tests.test_recorder_vod_fixtures import read_code

ZH = Catalogue.load().labels("vod", "zh-CN")
EN = Catalogue.load().labels("vod", "en")
FPS = 30
DURATION = 4.0
SECOND_WARD_OFFSET = 3000
EXPERT_OFFSET = 6000
EXPERT_START = 1.0
ORIGIN_MS = 1_767_225_600_000


def video(track_id: str, participant: str, role: str, start_s: float,
          duration: float) -> Track:
    return Track(track_id, "video", "VP8", Path(f"/nonexistent/{track_id}.webm"),
                 ORIGIN_MS + start_s * 1000, duration, participant, role)


# ----------------------------------------------------------------------------- layout


def test_a_second_ward_camera_gets_a_tile_beside_the_bedside_camera() -> None:
    first = video("w-0", "p-ward", "ward", 0.0, 60.0)
    second = video("w-1", "p-ward", "ward", 2.0, 58.0)  # same device, a second camera
    expert = video("e-0", "p-expert", "expert", 1.0, 50.0)
    cameras = group_cameras([expert, second, first])
    assert cameras == [(first,), (expert,), (second,)]


def test_a_republication_after_a_reconnect_shares_the_tile() -> None:
    before = video("w-0", "p-ward", "ward", 0.0, 10.0)
    again = video("w-1", "p-ward-2", "ward", 12.0, 20.0)  # reconnected under a new id
    expert = video("e-0", "p-expert", "expert", 0.0, 5.0)
    expert_again = video("e-1", "p-expert", "expert", 5.5, 20.0)
    other_expert = video("e-2", "p-expert-2", "expert", 6.0, 20.0)  # live with e-1
    rejoined = video("e-3", "p-expert-3", "expert", 29.0, 10.0)  # e-2's expert, a new id
    late = video("e-4", "p-expert-4", "expert", 200.0, 10.0)  # minutes later: a tile
    # In order of first start (ties in the manifest's order).
    assert group_cameras([before, again, expert, expert_again, other_expert, rejoined,
                          late]) == [
        (before, again), (expert, expert_again), (other_expert, rejoined), (late,)]


def test_layout_and_labels_of_several_cameras(tmp_path: Path) -> None:
    directory = two_ward_cameras(tmp_path, vitals=False, duration=1.5)
    layout = plan_layout(read_recording(directory), 1280, 720)
    assert [t.id for t in layout.main.tracks] == ["p-ward-video"]
    assert layout.main.rect == Rect(0, 0, 960, 720)
    assert [[t.id for t in s.tracks] for s in layout.others] == [
        ["p-ward-cam2"], ["p-expert-video"]]
    assert [s.rect for s in layout.others] == [Rect(960, 0, 320, 240), Rect(960, 240, 320, 240)]
    assert [s.caption(ZH) for s in layout.others] == ["床旁摄像头 2", "会诊专家"]
    assert [s.caption(EN) for s in layout.others] == ["Bedside camera 2", "Specialist"]
    assert layout.main.caption(ZH) == "床旁摄像头 1"


def test_many_cameras_take_two_columns_inside_the_picture() -> None:
    tracks = (video("w-0", "p-ward", "ward", 0.0, 60.0),
              *(video(f"e-{i}", f"p-e{i}", "expert", 1.0 + i, 50.0) for i in range(10)))
    recording = Recording("r", "bed-1", "complete", None, None, tracks, None, Path("/r"), 0)
    layout = plan_layout(recording, 1280, 720)
    assert layout.main.rect == Rect(0, 0, 800, 720)
    assert len(layout.others) == MAX_SIDE_TILES == 8
    rects = [s.rect for s in layout.others]
    assert rects[:3] == [Rect(800, 0, 240, 180), Rect(1040, 0, 240, 180), Rect(800, 180, 240, 180)]
    assert all(r.x + r.w <= 1280 and r.y + r.h <= 720 for r in rects)
    assert [s.caption(ZH) for s in layout.others[:2]] == ["会诊专家 1", "会诊专家 2"]


# ----------------------------------------------------------------------------- waveforms


def pleth_event(t_ms: float, chunks: list[tuple[float | None, list[float]]],
                rate: float = 100) -> dict[str, object]:
    """A vitals event carrying pleth chunks [(observed ms or None, values)]."""
    samples = []
    for observed, values in chunks:
        sample: dict[str, object] = {"vital": "pleth", "values": values, "sampleRate": rate}
        if observed is not None:
            sample["observedAt"] = iso(observed)
        samples.append(sample)
    return {"t": t_ms, "kind": "vitals", "device": "mon-1", "samples": samples}


def iso(ms: float) -> str:
    from datetime import UTC, datetime
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def test_two_chunks_of_one_event_follow_each_other() -> None:
    # A monitor whose clock is 7 s behind sends, at t, two 0.5 s chunks of the last second.
    t = ORIGIN_MS + 5000
    monitor = t - 7000
    event = pleth_event(t, [(monitor - 1000, [float(i) for i in range(50)]),
                            (monitor - 500, [float(50 + i) for i in range(50)])])
    series = VitalsSeries.from_events([event], ORIGIN_MS)
    wave = series.to_json(10.0)["waves"]["pleth"]
    assert [c["t"] for c in wave["chunks"]] == [4.0, 4.5]
    times = chunk_times(wave)
    assert np.all(np.diff(times) > 0)
    assert times[0] == pytest.approx(4.0) and times[-1] == pytest.approx(4.99)
    state = series.state_at(5.0)
    drawn = state.waves["pleth"]
    assert np.all(np.diff(drawn[:, 0]) > 0)
    assert list(drawn[:, 1]) == [float(i) for i in range(100)]


def chunk_times(wave: dict[str, object]) -> np.ndarray:
    rate = float(wave["sampleRate"])  # type: ignore[arg-type]
    return np.concatenate([c["t"] + np.arange(len(c["values"])) / rate
                           for c in wave["chunks"]])  # type: ignore[attr-defined]


def test_overlaps_and_resent_chunks_are_dropped_and_gaps_stay_gaps() -> None:
    rate = 10.0
    raw = [
        RawChunk(10_000, 9_000, tuple(float(i) for i in range(10))),  # 9.0 .. 9.9 s
        RawChunk(10_100, 9_000, tuple(float(i) for i in range(10))),  # sent again
        RawChunk(10_500, 9_500, tuple(float(100 + i) for i in range(10))),  # half overlaps
        RawChunk(13_000, 12_000, (1.0, 2.0, 3.0)),  # after a 1.5 s gap
        RawChunk(13_400, None, (4.0, 5.0)),  # no time: the event's untimed chunks end at it
        RawChunk(13_400, None, (6.0,)),
    ]
    chunks = place_chunks(raw, rate, origin_ms=0.0)
    assert [(c.start, c.values, c.gap_before) for c in chunks] == [
        (9.0, tuple(float(i) for i in range(10)), True),
        (10.0, (105.0, 106.0, 107.0, 108.0, 109.0), False),
        (12.0, (1.0, 2.0, 3.0), True),
        (13.1, (4.0, 5.0), True),
        (13.3, (6.0,), False),
    ]


def test_a_chunk_with_a_wild_observation_time_does_not_move_the_others() -> None:
    events = [pleth_event(ORIGIN_MS + 1000 * k + 1000, [(ORIGIN_MS + 1000 * k, [1.0] * 100)])
              for k in range(10)]
    # The monitor's clock was set a day ahead for one message.
    events[5] = pleth_event(ORIGIN_MS + 6000, [(ORIGIN_MS + 86_400_000 + 5000, [2.0] * 100)])
    series = VitalsSeries.from_events(events, ORIGIN_MS)
    wave = series.to_json(10.0)["waves"]["pleth"]
    # Its time is not trusted: it is placed as delivered, ending at its event (6 s).
    assert [(c["t"], c["values"][0], c["gap"]) for c in wave["chunks"]] == [
        (float(k), 2.0 if k == 5 else 1.0, k == 0) for k in range(10)]
    assert np.all(np.diff(chunk_times(wave)) > 0)


def test_the_drawn_points_never_go_back_and_break_at_gaps() -> None:
    events = [pleth_event(ORIGIN_MS + 1000 * k + 1000,
                          [(ORIGIN_MS + 1000 * k, [float(i) for i in range(50)]),
                           (ORIGIN_MS + 1000 * k + 500, [float(50 + i) for i in range(50)])])
              for k in (0, 1, 3)]  # second 2 is missing: a gap
    series = VitalsSeries.from_events(events, ORIGIN_MS)
    state = series.state_at(4.0)
    runs = wave_runs(Rect(0, 0, 400, 100), state.waves["pleth"], 4.0, 0.0, 100.0)
    assert len(runs) == 2
    xs = np.concatenate([run[:, 0] for run in runs])
    assert np.all(np.diff(xs) > 0)
    assert runs[0][-1, 0] == pytest.approx(199.0) and runs[1][0, 0] == pytest.approx(300.0)


def test_a_monitor_clock_that_drifts_is_followed() -> None:
    # The monitor's clock gains 1 s over 10 minutes: each chunk still ends shortly before
    # the event that brought it (a single offset for the whole recording would put the
    # first chunks a second early), and the chunks meet without gaps.
    events = []
    for k in range(600):
        observed = ORIGIN_MS + 1000 * k + k * 1000 / 600
        events.append(pleth_event(ORIGIN_MS + 1000 * (k + 1), [(observed, [1.0] * 100)]))
    series = VitalsSeries.from_events(events, ORIGIN_MS)
    wave = series.to_json(600.0)["waves"]["pleth"]
    assert np.all(np.diff(chunk_times(wave)) > 0)
    assert [c["gap"] for c in wave["chunks"]] == [True] + [False] * 599
    lags = [k + 1 - (c["t"] + 0.99) for k, c in enumerate(wave["chunks"])]
    print(f"\nlast sample before its event by {min(lags):.3f}..{max(lags):.3f} s")
    assert all(0.0 <= lag <= 0.15 for lag in lags), (min(lags), max(lags))


# ----------------------------------------------------------------------------- render


def two_ward_cameras(root: Path, *, vitals: bool = True, duration: float = DURATION) -> Path:
    parties = [
        SampleParty("p-ward", "ward", video_offset=0),
        SampleParty("p-ward", "ward", video_offset=SECOND_WARD_OFFSET, camera="cam2"),
        SampleParty("p-expert", "expert", video_offset=EXPERT_OFFSET, start_s=EXPERT_START),
    ]
    return write_sample_recording(root, "rec-two-ward", parties, duration=duration, fps=FPS,
                                  picture=pattern_frame, origin_ms=ORIGIN_MS, vitals=vitals,
                                  pleth_chunks=2)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    directory = two_ward_cameras(tmp_path_factory.mktemp("vodpic"))
    result = render(directory, RenderOptions(), labels=ZH)
    with av.open(str(result.mp4)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    return result.directory, frames


def test_both_ward_cameras_are_visible_in_the_teaching_video(
        rendered: tuple[Path, list[np.ndarray]]) -> None:
    directory, frames = rendered
    layout = json.loads((directory / "render.json").read_text())["layout"]
    main, (ward2, expert) = layout["main"], layout["others"]
    assert (ward2["label"], ward2["number"], expert["label"]) == ("ward", 2, "expert")
    fps = 25
    for t in (0.5, 1.5, 2.5, 3.5):
        index = round(t * fps)
        picture = frames[index]
        shown = (read_code(picture, main["rect"]), read_code(picture, ward2["rect"]))
        expected = (int(t * FPS), SECOND_WARD_OFFSET + int(t * FPS))
        print(f"t={t}: bedside {shown[0]} ({expected[0]}), ward camera 2 {shown[1]} "
              f"({expected[1]})")
        assert abs(shown[0] - expected[0]) <= 1 and abs(shown[1] - expected[1]) <= 1
        if t > EXPERT_START + 0.2:
            code = read_code(picture, expert["rect"])
            assert abs(code - (EXPERT_OFFSET + int((t - EXPERT_START) * FPS))) <= 1


def test_the_rendered_pleth_has_strictly_increasing_time(
        rendered: tuple[Path, list[np.ndarray]]) -> None:
    directory, _ = rendered
    document = json.loads((directory / "vitals.json").read_text())
    wave = document["waves"]["pleth"]
    assert len(wave["chunks"]) == 2 * 4  # two chunks in each of the four events
    times = chunk_times(wave)
    assert np.all(np.diff(times) > 0)
    assert np.allclose(np.diff(times), 0.01, atol=1e-3)  # one sample every 10 ms, no gap
    # What the overlay draws at each frame of the render never goes back either.
    recording = read_recording(directory.parent)  # directory: <recording>/vod
    series = VitalsSeries.from_events(read_timeline(recording.timeline), ORIGIN_MS)
    for t in np.arange(0.0, DURATION, 0.04):
        state = series.state_at(float(t))
        if "pleth" in state.waves:
            for run in wave_runs(Rect(6, 6, 320, 100), state.waves["pleth"], float(t),
                                 0.0, 100.0):
                assert np.all(np.diff(run[:, 0]) > 0), t


def test_hostile_waveform_samples_are_left_out() -> None:
    good = {"vital": "pleth", "values": [1.0, 2.0], "sampleRate": 100,
            "observedAt": iso(ORIGIN_MS)}
    bad: list[object] = [
        {"vital": "pleth", "values": [9.0], "sampleRate": float("inf")},
        {"vital": "pleth", "values": [9.0], "sampleRate": float("nan")},
        {"vital": "pleth", "values": [9.0], "sampleRate": "100"},
        {"vital": "pleth", "values": [9.0], "sampleRate": -5},
        {"vital": "pleth", "values": [9.0], "sampleRate": 1e12},
        {"vital": "pleth", "values": [9.0], "sampleRate": 250},  # not the waveform's rate
        {"vital": "pleth", "values": "9.0", "sampleRate": 100},
        {"vital": "pleth", "values": [True, "x", None], "sampleRate": 100,
         "observedAt": "yesterday"},
        "not an object",
    ]
    event = {"t": ORIGIN_MS + 20, "kind": "vitals", "device": ["not", "a", "string"],
             "samples": [good, *bad]}
    wave = VitalsSeries.from_events([event], ORIGIN_MS).to_json(1.0)["waves"]["pleth"]
    assert wave["sampleRate"] == 100
    # The good chunk, and what the untimed one (no usable values) adds before it: it ends
    # at its event (20 ms), where the good chunk's samples win.
    assert [(c["t"], c["values"], c["gap"]) for c in wave["chunks"]] == [
        (-0.01, [None], True), (0.0, [1.0, 2.0], False)]
    assert np.all(np.diff(chunk_times(wave)) > 0)
