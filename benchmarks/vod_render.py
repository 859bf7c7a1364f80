"""Teaching-video render speed, as a multiple of real time, with baselines from the same run.

    python -m benchmarks.vod_render [--seconds 30] [--rounds 3] [--presets veryfast]

Generates a two-party recording (``--seconds`` long, 640x480 VP8 at 30 fps and an Opus
tone per party, the expert joining 5 s in (a third in, if shorter), vitals every second
with a 100 Hz pleth), then measures, each on the same input in this process:

- ``decode``: decoding every track (video and audio) with PyAV, nothing else;
- ``encode (rendered)``, the baseline: encoding the render's own output pictures (all
  of them, decoded into memory beforehand) and the same seconds of audio with the
  render's H.264 + AAC settings, nothing else: what the teaching video costs to encode;
- ``encode (still)``: the same number of 1280x720 frames of one fixed picture: x264
  skips nearly every block of a still picture, so this is faster than encoding any
  video (printed to show how much of a gap is x264's own work on the pictures);
- ``compose``: the render's decoding, compositing, overlays and audio mix, the
  pictures handed to an encoder that drops them: what the render adds to encoding;
- ``render``: the real render (``recorder.vod.render``): decode, composite, draw the
  vitals, encode, write HLS segments, remux to MP4, write vitals.json.

From the encoder's and the composing's CPU seconds it prints the best a render could
do on this machine's cores: both perfectly overlapped, ``max(encode wall, (encode CPU +
compose CPU) / cores)``, and how much more CPU the render took than the two apart.

The measurements run in ``--rounds`` rounds, each round every measurement once in turn,
so that a burst of other work on a shared machine hits all of them alike; the fastest
run of each is compared (and each round's ratio printed). Printed: wall and CPU
seconds, speed = recording seconds / wall seconds, the render's speed against the
encoder's alone (target >= 0.8), and the render's CPU against decode + encode (the
compositing and overlay overhead). A report: it never asserts.
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
import cv2
import numpy as np

from huizhen.testpattern import pattern_frame
from recorder.vod import AUDIO_RATE, Mp4Encoder, RenderOptions, compose, render
from recorder.vod_input import read_recording
from recorder.vod_sample import SampleParty, write_sample_recording

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
                pictures: list[av.VideoFrame] | None = None) -> None:
    """Encode ``seconds`` of video and silence; the video is one still test picture, or
    ``pictures`` (yuv420p frames of the output's size), in a loop if too few."""
    encoder = Mp4Encoder(out, options, has_audio=True)
    i420 = np.asarray(cv2.cvtColor(pattern_frame(0, options.width, options.height),
                                   cv2.COLOR_BGR2YUV_I420), dtype=np.uint8)
    still = av.VideoFrame.from_ndarray(i420, format="yuv420p")
    frames = round(seconds * options.fps)
    for index in range(frames):
        encoder.picture_frame(index, pictures[index % len(pictures)] if pictures else still)
    silence = np.zeros(1024, dtype=np.float32)
    for start in range(1024, round(seconds * AUDIO_RATE), 1024):
        encoder.sound(start, silence)
    encoder.close()


class DroppingEncoder:
    """Takes the render's pictures and sound and does nothing with them."""

    def __init__(self, path: Path, options: RenderOptions, has_audio: bool) -> None:
        pass

    def picture_frame(self, index: int, frame: av.VideoFrame) -> None:
        pass

    def sound(self, start: int, samples: np.ndarray) -> None:
        pass

    def close(self) -> None:
        pass


def compose_only(directory: Path, options: RenderOptions) -> None:
    compose(read_recording(directory), directory / "compose-only.m3u8", options,
            make_encoder=DroppingEncoder)


def rendered_pictures(mp4: Path) -> list[av.VideoFrame]:
    """Every picture of the render's output (1.4 MB each at 1280x720)."""
    with av.open(str(mp4)) as container:
        return [frame.reformat(format="yuv420p") for frame in container.decode(video=0)]


def best(runs: list[Measurement]) -> Measurement:
    return min(runs, key=lambda m: m.wall)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--preset", default="veryfast", help="the x264 preset to render with")
    parser.add_argument("--threads", type=int, default=RenderOptions.threads,
                        help="x264 threads for the render and the baselines (0: x264 chooses)")
    parser.add_argument("--keep", action="store_true", help="keep the generated recording")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vod-bench-"))
    try:
        print(f"generating a {args.seconds:g} s two-party recording in {root} ...",
              file=sys.stderr)
        started = time.perf_counter()
        expert_s = min(5.0, args.seconds / 3)  # the expert joins (a short run: sooner)
        directory = write_sample_recording(root, "bench", [
            SampleParty("p-ward", "ward", tone_hz=440.0),
            SampleParty("p-expert", "expert", video_offset=round(expert_s * 1000),
                        start_s=expert_s, tone_hz=660.0),
        ], duration=args.seconds, width=640, height=480, fps=30, picture=pattern_frame)
        print(f"generated in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        options = RenderOptions(preset=args.preset, threads=args.threads)
        decode = measure("decode (inputs)", args.seconds, lambda: decode_all(directory))
        render_once = functools.partial(render, directory, options)
        render_once()  # the baseline's pictures (and a warm-up)
        pictures = rendered_pictures(directory / "vod" / "teaching.mp4")
        runs: dict[str, list[Measurement]] = {"encode": [], "still": [], "render": [],
                                              "compose": []}
        for number in range(args.rounds):
            runs["encode"].append(measure("encode (rendered)", args.seconds, lambda: encode_only(
                root / "encode-rendered.mp4", args.seconds, options, pictures)))
            runs["render"].append(measure(f"render ({args.preset})", args.seconds, render_once))
            runs["still"].append(measure("encode (still)", args.seconds, lambda: encode_only(
                root / "encode-still.mp4", args.seconds, options)))
            runs["compose"].append(measure("compose (no encoding)", args.seconds,
                                           lambda: compose_only(directory, options)))
            print(f"round {number + 1}: render {runs['render'][-1].wall:.2f} s, encode "
                  f"{runs['encode'][-1].wall:.2f} s, ratio "
                  f"{runs['encode'][-1].wall / runs['render'][-1].wall:.2f}", file=sys.stderr)
        encode, still, first = best(runs["encode"]), best(runs["still"]), best(runs["render"])
        composing = best(runs["compose"])
        info = json.loads((directory / "vod" / "render.json").read_text())
        size = (directory / "vod" / "teaching.mp4").stat().st_size
        print(f"\nVOD render: {args.seconds:g} s recording, 2 parties (640x480 VP8 30 fps + "
              f"Opus each), output {options.width}x{options.height} {options.fps} fps "
              f"H.264 + AAC ({len(pictures)} pictures), {os.cpu_count()} CPUs, "
              f"fastest of {args.rounds} rounds")
        for result in (decode, encode, still, composing, first):
            print(result.line())
        ratio = first.speed / encode.speed
        print(f"\nrender speed: {first.speed:.2f}x real time ({args.preset})")
        print(f"render speed / encode-only speed: {ratio:.2f} "
              f"(target >= {TARGET_ENCODE_RATIO:.1f}: "
              f"{'PASS' if ratio >= TARGET_ENCODE_RATIO else 'FAIL'}); each round: " + ", ".join(
                  f"{e.wall / r.wall:.2f}" for e, r in zip(runs["encode"], runs["render"],
                                                           strict=True)))
        print(f"render speed / encode-only speed of a still picture: "
              f"{first.speed / still.speed:.2f} (encoding the rendered pictures alone: "
              f"{encode.speed / still.speed:.2f} of the still picture's speed)")
        print(f"render CPU / (decode + encode) CPU: {first.cpu / (decode.cpu + encode.cpu):.2f}"
              f"  (compositing, overlay, audio mix, HLS and MP4 files on top)")
        cores = os.cpu_count() or 1
        ideal = max(encode.wall, (encode.cpu + composing.cpu) / cores)
        print(f"render CPU {first.cpu:.2f} s = encode {encode.cpu:.2f} + compose "
              f"{composing.cpu:.2f} + {first.cpu - encode.cpu - composing.cpu:.2f} s more "
              f"when they run side by side; the render used {first.cpu / first.wall:.2f} "
              f"of {cores} cores, the encoder alone {encode.cpu / encode.wall:.2f}")
        print(f"the best a render could do here (the two perfectly overlapped on {cores} "
              f"cores): {ideal:.2f} s, {encode.wall / ideal:.2f} of the encoder's speed")
        print(f"output: {size / 1e6:.1f} MB teaching.mp4 "
              f"({size * 8 / args.seconds / 1e6:.2f} Mbit/s), render.json speed "
              f"{info['speed']}x")
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

