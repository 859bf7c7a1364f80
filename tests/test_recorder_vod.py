"""recorder.vod: a fixture recording composed and encoded, then decoded with PyAV.

Rendered once per module (~3 s); each test checks one property of the output.
"""

from __future__ import annotations

import fractions
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import msgpack
import numpy as np
import pytest

from huizhen.testpattern import dominant_frequency
from recorder.vod import (
    AUDIO_RATE,
    AudioCursor,
    RenderError,
    RenderOptions,
    RenderResult,
    fit,
    media_span,
    plan_layout,
    render,
)
from recorder.vod_input import MediaClock, Track, media_clocks, read_recording, read_timeline
from recorder.vod_overlay import Rect
from tests.test_recorder_vod_fixtures import (
    DURATION,
    EXPERT_START,
    TONE_HZ,
    bedside_index,
    expert_index,
    make_recording,
    read_code,
)


@dataclass
class Rendered:
    result: RenderResult
    info: dict[str, Any]
    frames: list[np.ndarray]
    """Every output picture, BGR."""
    audio: np.ndarray
    """Mono samples at AUDIO_RATE."""


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    directory = make_recording(tmp_path_factory.mktemp("vod"))
    result = render(directory)
    print(f"\nrendered {result.duration:.1f} s ({result.frames} frames) in "
          f"{result.render_seconds:.2f} s: {result.speed:.1f}x real time")
    info = json.loads((result.directory / "render.json").read_text())
    frames: list[np.ndarray] = []
    chunks: list[np.ndarray] = []
    with av.open(str(result.mp4)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="bgr24"))
    with av.open(str(result.mp4)) as container:
        for aframe in container.decode(audio=0):
            chunks.append(aframe.to_ndarray().reshape(-1))
    return Rendered(result, info, frames, np.concatenate(chunks))


def test_teaching_video_is_h264_and_aac_in_fragmented_mp4(rendered: Rendered) -> None:
    with av.open(str(rendered.result.mp4)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264"
        assert audio.codec_context.name == "aac"
        assert audio.codec_context.sample_rate == AUDIO_RATE
        assert (video.codec_context.width, video.codec_context.height) == (1280, 720)
        assert container.duration is not None
        duration = container.duration / av.time_base
    assert abs(duration - DURATION) <= 0.05 * DURATION, duration
    assert abs(len(rendered.frames) / 25 - DURATION) <= 0.05 * DURATION
    head = rendered.result.mp4.read_bytes()[:4096]
    assert b"mvex" in head, "no movie extends box: not a fragmented MP4"
    assert b"moof" in rendered.result.mp4.read_bytes()


@pytest.mark.parametrize("t", [0.0, 1.0, 2.52, 4.0, 6.2, 7.92])
def test_bedside_picture_shows_the_frame_of_its_time(rendered: Rendered, t: float) -> None:
    index = round(t * 25)
    main = rendered.info["layout"]["main"]["rect"]
    assert abs(read_code(rendered.frames[index], main) - bedside_index(index / 25)) <= 1


def test_expert_tile_starts_when_the_expert_joined(rendered: Rendered) -> None:
    tile = rendered.info["layout"]["others"][0]
    assert tile["label"] == "expert"
    rect = tile["rect"]
    before = rendered.frames[round(1.0 * 25)]
    crop = before[rect["y"]:rect["y"] + rect["h"], rect["x"]:rect["x"] + rect["w"]]
    assert float(crop.std()) < 20, "the expert tile shows a picture before the expert joined"
    for t in (2.0, 3.0, 5.5, 7.5):
        index = round(t * 25)
        assert abs(read_code(rendered.frames[index], rect) - expert_index(index / 25)) <= 1


def test_vitals_overlay_changes_when_the_vitals_change(rendered: Rendered) -> None:
    strip = rendered.info["layout"]["vitals"]
    # The HR tile (after the 26 % pleth area): its number changes at 0.5 s + k s only.
    tiles_x = strip["x"] + strip["w"] * 26 // 100
    tile_w = (strip["x"] + strip["w"] - tiles_x) // 5
    y0, y1 = strip["y"] + strip["h"] // 3, strip["y"] + strip["h"]

    def hr_text(t: float) -> np.ndarray:
        """The HR digits: bright green pixels (the picture under the strip is darkened)."""
        tile = rendered.frames[round(t * 25)][y0:y1, tiles_x:tiles_x + tile_w].astype(np.int16)
        b, g, r = tile[..., 0], tile[..., 1], tile[..., 2]
        return (g > 140) & (g - r > 60) & (g - b > 30)

    def changed(a: float, b: float) -> float:
        """Share of the digits' pixels that differ between two times."""
        one, two = hr_text(a), hr_text(b)
        return float((one ^ two).sum() / max(1, (one | two).sum()))

    same = max(changed(1.6, 2.4), changed(3.6, 4.4))  # hr 71 both times, then 73
    different = min(changed(1.4, 1.6), changed(2.4, 2.6), changed(3.4, 3.6))
    print(f"\nHR digits changed: same value {same:.2f}, new value {different:.2f}")
    assert hr_text(1.0).sum() > 100, "no HR digits drawn"
    assert same < 0.06  # compression noise only
    assert different > 2 * same and different > 0.12  # one digit of two changed
    assert not hr_text(0.2).any(), "an HR value shown before the first vitals arrived"


def test_mixed_audio_follows_the_wall_clock(rendered: Rendered) -> None:
    audio = rendered.audio
    before = audio[int(0.1 * AUDIO_RATE):int((EXPERT_START - 0.1) * AUDIO_RATE)]
    during = audio[int((EXPERT_START + 0.2) * AUDIO_RATE):int((EXPERT_START + 1.2) * AUDIO_RATE)]
    assert float(np.sqrt(np.mean(before ** 2))) < 0.01, "sound before the expert's track starts"
    assert float(np.sqrt(np.mean(during ** 2))) > 0.1
    assert abs(dominant_frequency(during, AUDIO_RATE) - TONE_HZ) < 5
    # The tone starts within 40 ms of the track's start_ms.
    envelope = np.abs(audio[: int(3 * AUDIO_RATE)]) > 0.05
    onset = int(np.argmax(envelope)) / AUDIO_RATE
    assert abs(onset - EXPERT_START) < 0.04, onset
    assert abs(len(audio) / AUDIO_RATE - DURATION) < 0.05 * DURATION


def test_hls_playlist_lists_segments_that_exist_and_play(rendered: Rendered) -> None:
    playlist = rendered.result.playlist
    lines = playlist.read_text().splitlines()
    assert lines[0] == "#EXTM3U" and "#EXT-X-ENDLIST" in lines
    assert '#EXT-X-MAP:URI="init.mp4"' in lines
    segments = [line for line in lines if line and not line.startswith("#")]
    assert len(segments) >= 2
    for name in ["init.mp4", *segments]:
        assert (playlist.parent / name).stat().st_size > 0, name
    total = sum(float(line.split(":")[1].rstrip(",")) for line in lines
                if line.startswith("#EXTINF:"))
    assert abs(total - DURATION) <= 0.05 * DURATION
    with av.open(str(playlist)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == len(rendered.frames)


def test_vitals_json_is_a_time_series_on_the_video_clock(rendered: Rendered) -> None:
    document = json.loads((rendered.result.directory / "vitals.json").read_text())
    hr = document["vitals"]["hr"]
    assert hr["unit"] == "/min"
    assert hr["t"][:3] == [0.5, 1.5, 2.5]
    assert hr["v"][:3] == [70.0, 71.0, 72.0]
    assert document["waves"]["pleth"]["sampleRate"] == 100
    assert document["duration"] == DURATION
    assert "observedAt" not in json.dumps(document)


def test_render_report(rendered: Rendered) -> None:
    info = rendered.info
    assert info["frames"] == len(rendered.frames)
    assert info["speed"] > 0
    print(f"\nrender speed {info['speed']}x real time ({info['renderSeconds']} s)")


def test_layout_bedside_large_others_beside(tmp_path: Path) -> None:
    recording = read_recording(make_recording(tmp_path, duration=2.5))
    layout = plan_layout(recording, 1280, 720)
    assert [t.role for t in layout.main.tracks] == ["ward"]
    assert layout.main.rect == Rect(0, 0, 960, 720)
    assert [s.rect for s in layout.others] == [Rect(960, 0, 320, 240)]
    assert layout.vitals.y + layout.vitals.h == 720 and layout.vitals.w == 960
    assert fit(640, 360, Rect(0, 0, 960, 720)) == Rect(0, 90, 960, 540)
    start, end = media_span(recording)
    assert end - start == 2500


def test_an_unfinished_recording_is_not_rendered(tmp_path: Path) -> None:
    directory = make_recording(tmp_path, duration=2.5, status="recording")
    with pytest.raises(RenderError, match="not finished"):
        render(directory)
    assert not (directory / "vod").exists()
    assert not [p for p in directory.iterdir() if p.name.startswith(".vod")]


def test_a_second_render_replaces_the_first(tmp_path: Path) -> None:
    directory = make_recording(tmp_path, duration=2.5)
    first = render(directory)
    marker = first.directory / "stale.txt"
    marker.write_text("old")
    second = render(directory)
    assert second.directory == first.directory
    assert not marker.exists()
    assert math.isclose(second.duration, 2.5, abs_tol=1 / 25)
    assert sorted(p.name for p in directory.iterdir()) == [
        "manifest.json", "timeline.msgpack", "tracks", "vod"]


def write_tone_with_gap(path: Path, gap_s: float) -> None:
    """1 s of 440 Hz, nothing for ``gap_s`` (no packets: a muted sender), 1 s of 440 Hz."""
    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libopus", rate=AUDIO_RATE, layout="mono")
        step = 960
        for part in range(2):
            offset = part * round((1 + gap_s) * AUDIO_RATE)
            for start in range(0, AUDIO_RATE, step):
                t = (np.arange(start, start + step) / AUDIO_RATE)
                wave = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
                frame = av.AudioFrame.from_ndarray(wave.reshape(1, -1), format="s16",
                                                   layout="mono")
                frame.sample_rate = AUDIO_RATE
                frame.pts = offset + start
                frame.time_base = fractions.Fraction(1, AUDIO_RATE)
                container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def test_an_audio_gap_is_silence_and_later_sound_keeps_its_place(tmp_path: Path) -> None:
    path = tmp_path / "gap.webm"
    write_tone_with_gap(path, gap_s=30.0)
    track = Track(id="a", kind="audio", codec="opus", file=path, start_ms=10_500.0,
                  duration=32.0, participant="p", role="expert")
    cursor = AudioCursor(track, origin_ms=10_000.0)
    chunk = AUDIO_RATE // 10
    rms = []
    for start in range(0, 34 * AUDIO_RATE, chunk):
        samples = cursor.read(start, chunk)
        rms.append(0.0 if samples is None else float(np.sqrt(np.mean(samples ** 2))))
    loud = [i / 10 for i, value in enumerate(rms) if value > 0.1]
    # Sound 0.5-1.5 s and 31.5-32.5 s on the output clock (start_ms 500 ms after the origin).
    assert loud[0] == pytest.approx(0.5, abs=0.11) and loud[-1] == pytest.approx(32.4, abs=0.11)
    assert all(rms[i] < 0.01 for i in range(17, 314)), "sound inside the gap"


def test_media_clock_follows_sender_reports() -> None:
    assert MediaClock(1000.0).wall_ms(2.5) == 3500.0
    clock = MediaClock(1000.0, ((0.0, 1000.0), (10.0, 11_010.0), (20.0, 21_020.0)))
    assert clock.wall_ms(5.0) == pytest.approx(6005.0)
    assert clock.wall_ms(15.0) == pytest.approx(16_015.0)
    assert clock.wall_ms(25.0) == pytest.approx(26_020.0)  # after the last report: nominal
    assert clock.wall_ms(-1.0) == pytest.approx(0.0)


def test_track_sync_events_correct_the_drift(tmp_path: Path) -> None:
    """The bedside sender's clock runs 5 % fast: media time 4.0 s was wall time 4.2 s."""
    directory = make_recording(tmp_path, duration=7.0)
    recording = read_recording(directory)
    origin = recording.video_tracks[0].start_ms
    with (directory / "timeline.msgpack").open("ab") as timeline:
        for media_time, wall in [(0.0, origin), (4.0, origin + 4200), (4.0, origin + 4300),
                                 (3.0, origin + 5000)]:  # a repeat and a reversal: ignored
            timeline.write(msgpack.packb({"t": wall, "kind": "track-sync",
                                          "track": "p-ward-video", "media_time": media_time,
                                          "clock": "sender-report"}))
    clocks = media_clocks(recording, read_timeline(recording.timeline))
    assert clocks["p-ward-video"].points == ((0.0, origin), (4.0, origin + 4200))
    assert clocks["p-expert-video"].points == ()
    result = render(directory, RenderOptions(width=640, height=360))  # main tile 480x360
    info = json.loads((result.directory / "render.json").read_text())
    main = info["layout"]["main"]["rect"]
    pictures = {}
    with av.open(str(result.mp4)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in (round(2.1 * 25), round(6.0 * 25)):
                pictures[index] = frame.to_ndarray(format="bgr24")
    # 2.1 s of wall time is 2.0 s of media (interpolated); 6.0 s is 5.8 s (nominal after).
    assert abs(read_code(pictures[round(2.1 * 25)], main) - 60) <= 1
    assert abs(read_code(pictures[round(6.0 * 25)], main) - 174) <= 1


def test_damaged_track_files_render_what_is_readable(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """A stranger's bytes in the recording: the expert's video has its last 30 % replaced
    by random bytes, its audio file is random bytes from the start. The render finishes,
    the bedside camera is right throughout, the expert's tile right before the damage,
    and the sound is silence (the one audio track cannot be read): never a crash."""
    directory = make_recording(tmp_path, duration=4.0)
    rng = np.random.default_rng(12)
    video = directory / "tracks" / "p-expert-video.webm"
    data = bytearray(video.read_bytes())
    cut = len(data) * 7 // 10
    data[cut:] = rng.integers(0, 256, len(data) - cut, dtype=np.uint8).tobytes()
    video.write_bytes(bytes(data))
    audio = directory / "tracks" / "p-expert-audio.webm"
    audio.write_bytes(rng.integers(0, 256, audio.stat().st_size, dtype=np.uint8).tobytes())
    result = render(directory)
    assert math.isclose(result.duration, 4.0, abs_tol=1 / 25)
    info = json.loads((result.directory / "render.json").read_text())
    main, tile = info["layout"]["main"]["rect"], info["layout"]["others"][0]["rect"]
    with av.open(str(result.mp4)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    with av.open(str(result.mp4)) as container:
        sound = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    assert len(frames) == 100
    for t in (0.5, 2.0, 3.5):
        index = round(t * 25)
        assert abs(read_code(frames[index], main) - bedside_index(index / 25)) <= 1
    index = round(2.0 * 25)
    assert abs(read_code(frames[index], tile) - expert_index(index / 25)) <= 1
    assert float(np.abs(sound).max()) < 0.01
    assert any("cannot open audio track p-expert-audio" in r.getMessage()
               for r in caplog.records)
