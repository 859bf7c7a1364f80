"""TrackRecorder + TrackWriter: real encoded packets in, files PyAV decodes out, no codec."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import av
import msgpack
import numpy as np
import pytest

from huizhen.testpattern import dominant_frequency, pattern_difference, read_frame_number
from recorder.track_recorder import TrackRecorder, TrackSpec
from tests.recorder_child import opus_packets, video_packets
from tests.test_recorder_timeline import ntp

ARRIVAL0 = 1_700_000_000.0


class Run:
    def __init__(self, directory: Path, codec: str, kind: str) -> None:
        self.events: list[dict] = []
        self.requests = 0
        self.recorder = TrackRecorder(TrackSpec("s-1-0", "s-1", "p-1", "ward", kind, codec),
                                      directory, self.events.append, self.request)
        self.path = directory / self.recorder.file

    def request(self) -> None:
        self.requests += 1

    def feed(self, packets, arrival: float) -> None:  # type: ignore[no-untyped-def]
        for seq, timestamp, marker, payload in packets:
            self.recorder.packet(seq, timestamp, marker, payload, arrival)


def decode_video(path: Path) -> list[tuple[float, int, float]]:
    """(time, frame number, difference to the pattern) of every decoded picture."""
    out = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            image = frame.to_ndarray(format="bgr24")
            number = read_frame_number(image)
            out.append((float(frame.time), number, pattern_difference(image, number)))
    return out


@pytest.mark.parametrize("codec", ["VP8", "H264"])
def test_video_starts_at_a_keyframe_and_skips_to_the_next_after_a_loss(tmp_path, codec):
    frames = video_packets(codec, 90, keyframe_every=30)
    run = Run(tmp_path, codec, "video")
    # The recorder joins mid-stream: the first packets it sees are of frame 5 (no keyframe).
    for index, packets in enumerate(frames):
        if index < 5 or index == 40:  # frame 40 is lost on the way
            continue
        run.feed(packets, ARRIVAL0 + index / 30)
    summary = run.recorder.close()
    assert summary is not None and summary.width == 320 and summary.height == 240
    assert run.path.suffix == (".webm" if codec == "VP8" else ".mkv")
    decoded = decode_video(run.path)
    numbers = [n for _, n, _ in decoded]
    # Frames 5..29 precede the first keyframe; 41..59 follow the loss until the next one.
    assert numbers == [*range(30, 40), *range(60, 90)], numbers
    assert max(d for _, _, d in decoded) < 12  # every picture written is whole
    # Media time 0 is the first keyframe; gaps keep their length.
    times = dict((n, t) for t, n, _ in decoded)
    assert times[30] == 0 and times[60] == pytest.approx(1.0, abs=0.002)
    assert run.requests >= 2  # at the start and after the loss
    start = next(e for e in run.events if e["kind"] == "track-start")
    assert start["t"] == round((ARRIVAL0 + 30 / 30) * 1000)
    assert start["file"] == run.recorder.file and start["clock"] == "arrival"
    end = next(e for e in run.events if e["kind"] == "track-end")
    assert end["frames"] == 40 and end["duration"] == pytest.approx(59 / 30, abs=0.002)
    with av.open(str(run.path)) as container:
        assert container.streams.video[0].codec_context.name == codec.lower()


def test_opus_is_remuxed_with_an_opus_head(tmp_path):
    packets = opus_packets(100)
    run = Run(tmp_path, "opus", "audio")
    for index, packet in enumerate(packets):
        run.feed([packet], ARRIVAL0 + index * 0.02)
    summary = run.recorder.close()
    assert summary is not None and summary.frames == 100
    assert summary.duration == pytest.approx(2.0)
    with av.open(str(run.path)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "opus"
        assert stream.codec_context.extradata[:8] == b"OpusHead"
        assert container.duration == pytest.approx(2_000_000, abs=25_000)
        samples = np.concatenate([f.to_ndarray()[0] for f in container.decode(stream)])
    assert abs(dominant_frequency(samples[-48000:], 48000) - 440) < 10


def audio_steps(path: Path) -> list[float]:
    """Seconds from each audio frame of a file to the next."""
    with av.open(str(path)) as container:
        times = [float(p.pts * p.time_base) for p in container.demux(audio=0) if p.pts is not None]
    return [round(b - a, 3) for a, b in itertools.pairwise(times)]


def test_audio_the_publisher_lost_is_a_gap_where_its_sender_report_says(tmp_path):
    """A browser under load drops captured audio: its RTP timestamps count only the samples
    it sent, its sender reports keep to the wall clock. Here 65 ms are lost at 1 s. The
    report at 1.5 s says so, but half of the last second's packets came before the loss;
    the report at 2 s says so and every packet of the last second agrees: from there on
    the samples are written after a 65 ms gap. Reports stamped late with packets on time
    (aiortc stamps a report when it sends, and its event loop can lag) move nothing: 30 ms
    at 0.5 s, 8 ms at 2.5 s."""
    packets = opus_packets(150)
    first = packets[0][1]
    run = Run(tmp_path, "opus", "audio")
    reported = {25: 0.030, 75: 0.065, 100: 0.065, 125: 0.073}
    for index, packet in enumerate(packets):
        lost = 0.065 if index >= 50 else 0.0
        if index in reported:
            run.recorder.sender_report(ntp(ARRIVAL0 + index * 0.02 + reported[index]),
                                       (first + index * 960) & 0xFFFFFFFF)
        run.feed([packet], ARRIVAL0 + index * 0.02 + lost + 0.001)
        if index == 0:  # the first report comes after the first frame
            run.recorder.sender_report(ntp(ARRIVAL0), first)
    summary = run.recorder.close()
    assert summary is not None and summary.clock == "sender-report"
    steps = audio_steps(run.path)
    print("gaps between frames (s):", sorted({s for s in steps if s != 0.02}))
    assert steps[:99] == [0.02] * 99 and steps[100:] == [0.02] * (len(steps) - 100), steps
    assert steps[99] == pytest.approx(0.02 + 0.065, abs=0.001)  # written after a 65 ms gap
    assert summary.duration == pytest.approx(3.0 + 0.065, abs=0.001)
    syncs = [e for e in run.events if e["kind"] == "track-sync"]
    assert [e["media_time"] for e in syncs] == [0.0, pytest.approx(2.0 + 0.065)]
    assert syncs[1]["t"] - syncs[0]["t"] == 2065


def test_audio_losses_add_up_past_the_sender_report_check(tmp_path):
    """Three losses of 100 ms, each confirmed by a report: three gaps. Without moving the
    arrival estimate along, the third report (300 ms later than the earliest arrivals)
    would be taken for a publisher clock running ahead, and refused."""
    packets = opus_packets(200)
    first = packets[0][1]
    run = Run(tmp_path, "opus", "audio")
    for index, packet in enumerate(packets):
        lost = 0.1 * ((index + 40) // 60)  # at frames 20, 80 and 140
        if index in (75, 135, 195):
            run.recorder.sender_report(ntp(ARRIVAL0 + index * 0.02 + lost),
                                       (first + index * 960) & 0xFFFFFFFF)
        run.feed([packet], ARRIVAL0 + index * 0.02 + lost + 0.001)
        if index == 0:
            run.recorder.sender_report(ntp(ARRIVAL0), first)
    run.recorder.close()
    gaps = [round(step - 0.02, 3) for step in audio_steps(run.path) if step > 0.02]
    assert gaps == [0.1, 0.1, 0.1], gaps


def test_clusters_reach_the_disk_at_least_every_second(tmp_path):
    """What is on disk at any moment decodes up to about 1 s before the last frame muxed."""
    frames = video_packets("VP8", 150, keyframe_every=45)
    run = Run(tmp_path, "VP8", "video")
    lags = []
    for index, packets in enumerate(frames):
        run.feed(packets, ARRIVAL0 + index / 30)
        if index % 20 == 19:
            snapshot = tmp_path / f"snapshot-{index}.webm"
            snapshot.write_bytes(run.path.read_bytes())  # what a kill -9 would leave
            try:
                decoded = decode_video(snapshot)
            except av.error.EOFError:  # no cluster on disk yet, only the header
                decoded = []
            assert all(d < 12 for _, _, d in decoded)
            last = decoded[-1][0] if decoded else -1 / 30
            lags.append(index / 30 - last)
    run.recorder.close()
    print("on-disk lag behind the muxer (s):", [round(x, 3) for x in lags])
    assert max(lags) <= 1.1, lags


CHILD = """
import json, sys
import msgpack
import tests.codec_spy as codec_spy
counts = codec_spy.install()
from pathlib import Path
from recorder.track_recorder import TrackRecorder, TrackSpec

data = msgpack.unpackb(Path(sys.argv[1]).read_bytes())
opened = []
for codec, kind, frames in data:
    recorder = TrackRecorder(TrackSpec("t-" + codec, "s", "p", "ward", kind, codec),
                             Path(sys.argv[2]), lambda event: None, lambda: None)
    for index, packets in enumerate(frames):
        for seq, ts, marker, payload in packets:
            recorder.packet(seq, ts, marker, payload, 1000.0 + index / 30)
    opened.append(recorder.writer.codec_opened())
    recorder.close()
print(json.dumps({"counts": dict(counts), "opened": opened}))
"""


def test_no_decoder_or_encoder_on_the_recording_path(tmp_path):
    """In a process that counts every codec created, recording creates none."""
    tracks = [("VP8", "video", video_packets("VP8", 60)),
              ("H264", "video", video_packets("H264", 60)),
              ("opus", "audio", [[p] for p in opus_packets(100)])]
    fixture = tmp_path / "packets.msgpack"
    fixture.write_bytes(msgpack.packb(tracks))
    out = subprocess.run([sys.executable, "-c", CHILD, str(fixture), str(tmp_path)],
                         capture_output=True, text=True, timeout=120, check=True,
                         cwd=Path(__file__).resolve().parent.parent).stdout
    report = json.loads(out.strip().splitlines()[-1])
    assert report["counts"] == {} and report["opened"] == [False, False, False]
    assert [n for _, n, _ in decode_video(tmp_path / "tracks" / "t-VP8.webm")] == list(range(60))
    assert [n for _, n, _ in decode_video(tmp_path / "tracks" / "t-H264.mkv")] == list(range(60))
