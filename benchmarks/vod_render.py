"""Teaching-video render speed, as a multiple of real time, with baselines from the same run.

    python -m benchmarks.vod_render [--seconds 60] [--presets veryfast,ultrafast]

Generates a two-party recording (``--seconds`` long, 640x480 VP8 at 30 fps and an Opus
tone per party, the expert joining 5 s in, vitals every second with a 100 Hz pleth),
then measures, each on the same input in this process:

- ``decode``: decoding every track (video and audio) with PyAV, nothing else;
- ``encode``: encoding the same number of 1280x720 frames (one fixed picture) and the
  same seconds of audio with the render's H.264 + AAC settings, nothing else;
- ``encode (rendered)``: the same with the render's own first 4 s of pictures, looped
  (measured after the render): x264 spends more on them (upscaled VP8 with its noise)
  than on the still picture, whatever the compositing costs;
- ``render``: the real render (``recorder.vod.render``): decode, composite, draw the
  vitals, encode to fragmented MP4, remux to HLS, write vitals.json.

Printed: wall and CPU seconds, speed = recording seconds / wall seconds, the render's
speed against the encoder's alone (target >= 0.8), and the render against decode +
encode (the compositing and overlay overhead). CPU seconds matter where other work
shares the machine. A report: it never asserts. The issue's baseline is the still
picture; the rendered one shows how much of the gap is x264's own work on the picture.
``benchmarks.vod_live_impact`` measures what a render costs live rooms.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from huizhen.testpattern import pattern_frame
from recorder.vod import AUDIO_RATE, Mp4Encoder, RenderOptions, render
from recorder.vod_input import read_recording
from recorder.vod_sample import SampleParty, write_sample_recording

RENDERED_FRAMES = 100
"""Pictures of the render's output encoded again, looped (4 s: 140 MB at 1280x720)."""
TARGET_ENCODE_RATIO = 0.8
"""The render's speed against the encoder's alone (reported, never asserted)."""


@dataclass(frozen=True)
class Measurement:
    name: str
    wall: float
    cpu: float
    media_seconds: float

    @property
    def speed(self) -> float:
        return self.media_seconds / self.wall

    def line(self) -> str:
        return (f"{self.name:<22} {self.wall:8.2f} s wall {self.cpu:8.2f} s CPU "
                f"{self.speed:7.2f}x real time")


def measure(name: str, media_seconds: float, work: Callable[[], object]) -> Measurement:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return Measurement(name, time.perf_counter() - wall, time.process_time() - cpu,
                       media_seconds)


def decode_all(directory: Path) -> None:
    for track in read_recording(directory).tracks:
        with av.open(str(track.file)) as container:
            if container.streams.video:
                container.streams.video[0].thread_type = "AUTO"
            for _ in container.decode(container.streams[0]):
                pass


def encode_only(out: Path, seconds: float, options: RenderOptions,
                pictures: list[np.ndarray] | None = None) -> None:
    """Encode ``seconds`` of video and silence; the video is one still test picture, or
    ``pictures`` (I420) in a loop."""
    encoder = Mp4Encoder(out, options, has_audio=True)
    still = pattern_frame(0, options.width, options.height)
    frames = round(seconds * options.fps)
    for index in range(frames):
        if pictures:
            encoder.picture_i420(index, pictures[index % len(pictures)])
        else:
            encoder.picture(index, still)
    silence = np.zeros(1024, dtype=np.float32)
    for start in range(1024, round(seconds * AUDIO_RATE), 1024):
        encoder.sound(start, silence)
    encoder.close()


def rendered_pictures(mp4: Path, count: int) -> list[np.ndarray]:
    """The first ``count`` pictures of the render's output, as I420 arrays."""
    with av.open(str(mp4)) as container:
        return [frame.to_ndarray(format="yuv420p")
                for _, frame in zip(range(count), container.decode(video=0), strict=False)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--presets", default="veryfast",
                        help="comma-separated x264 presets to render with")
    parser.add_argument("--keep", action="store_true", help="keep the generated recording")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vod-bench-"))
    try:
        print(f"generating a {args.seconds:g} s two-party recording in {root} ...",
              file=sys.stderr)
        started = time.perf_counter()
        directory = write_sample_recording(root, "bench", [
            SampleParty("p-ward", "ward", tone_hz=440.0),
            SampleParty("p-expert", "expert", video_offset=5000, start_s=5.0, tone_hz=660.0),
        ], duration=args.seconds, width=640, height=480, fps=30, picture=pattern_frame)
        print(f"generated in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        presets = [p.strip() for p in args.presets.split(",") if p.strip()]
        base = RenderOptions(preset=presets[0])
        results = [
            measure("decode (inputs)", args.seconds, lambda: decode_all(directory)),
            measure(f"encode ({base.preset})", args.seconds,
                    lambda: encode_only(root / "encode-only.mp4", args.seconds, base)),
        ]
        for preset in presets:
            results.append(measure(f"render ({preset})", args.seconds,
                                   functools.partial(render, directory,
                                                     RenderOptions(preset=preset))))
        rendered = rendered_pictures(directory / "vod" / "teaching.mp4", RENDERED_FRAMES)
        results.insert(2, measure("encode (rendered)", args.seconds, lambda: encode_only(
            root / "encode-rendered.mp4", args.seconds, base, rendered)))
        info = json.loads((directory / "vod" / "render.json").read_text())
        size = (directory / "vod" / "teaching.mp4").stat().st_size
        print(f"\nVOD render: {args.seconds:g} s recording, 2 parties (640x480 VP8 30 fps + "
              f"Opus each), output {base.width}x{base.height} {base.fps} fps H.264 + AAC, "
              f"{os.cpu_count()} CPUs")
        for result in results:
            print(result.line())
        decode, encode, again, first = results[0], results[1], results[2], results[3]
        print(f"\nrender speed: {first.speed:.2f}x real time ({presets[0]})")
        print(f"render speed / encode-only speed: {first.speed / encode.speed:.2f} "
              f"(target >= {TARGET_ENCODE_RATIO:.1f}: "
              f"{'PASS' if first.speed / encode.speed >= TARGET_ENCODE_RATIO else 'FAIL'})")
        print(f"render speed / encode-only speed of the rendered pictures: "
              f"{first.speed / again.speed:.2f} (x264 on them costs "
              f"{again.cpu / encode.cpu:.2f}x the still picture's CPU)")
        print(f"render CPU / (decode + encode) CPU: {first.cpu / (decode.cpu + encode.cpu):.2f}"
              f" with the still picture, {first.cpu / (decode.cpu + again.cpu):.2f} with the "
              f"rendered ones")
        print(f"render / (decode + encode): wall {first.wall / (decode.wall + encode.wall):.2f}, "
              f"CPU {first.cpu / (decode.cpu + encode.cpu):.2f}  "
              f"(compositing, overlay, HLS remux and vitals.json on top)")
        print(f"output: {size / 1e6:.1f} MB teaching.mp4 "
              f"({size * 8 / args.seconds / 1e6:.2f} Mbit/s), render.json speed "
              f"{info['speed']}x (last preset)")
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

