"""The teaching-video render queue: rooms that close queue behind each other, a page
asking moves its recording to the front or joins the render already running, and the
start-up policy picks the recent unrendered recordings. Real sample recordings on disk;
the runner records the order and holds each render until released."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from recorder.http import VodRenderer
from recorder.library import RecordingLibrary
from recorder.vod import render
from recorder.vod_auto import AutoRenderPolicy, AutoRenders
from recorder.vod_input import Recording, read_recording
from tests.test_recorder_vod_fixtures import make_recording

ORIGIN = datetime(2026, 1, 1, tzinfo=UTC)


class GatedRunner:
    """Notes each recording it is asked to render and waits for ``release``."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}

    async def __call__(self, directory: Path) -> None:
        self.started.append(directory.name)
        gate = self.gates.setdefault(directory.name, asyncio.Event())
        await gate.wait()

    def release(self, name: str) -> None:
        self.gates.setdefault(name, asyncio.Event()).set()


def recordings(root: Path, *names: str) -> list[Recording]:
    return [read_recording(make_recording(root, name, duration=3.5)) for name in names]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_asking_moves_a_queued_recording_to_the_front(tmp_path: Path) -> None:
    a, b, c = recordings(tmp_path, "rec-a", "rec-b", "rec-c")
    runner = GatedRunner()
    renderer = VodRenderer(runner=runner)
    assert [renderer.background(r) for r in (a, b, c)] == ["rendering", "queued", "queued"]
    await settle()
    assert runner.started == ["rec-a"] and renderer.queued() == ["rec-b", "rec-c"]
    assert renderer.ensure(c) == "queued"  # asked for: next in line
    assert renderer.queued() == ["rec-c", "rec-b"]
    assert renderer.ensure(a) == "rendering"  # joins the running render
    for name in ("rec-a", "rec-c", "rec-b"):
        runner.release(name)
    await asyncio.wait_for(renderer.wait(b), 10)
    assert runner.started == ["rec-a", "rec-c", "rec-b"]
    assert renderer.queued() == []
    await renderer.close()


async def test_concurrency_runs_that_many_at_once(tmp_path: Path) -> None:
    a, b, c = recordings(tmp_path, "rec-a", "rec-b", "rec-c")
    runner = GatedRunner()
    renderer = VodRenderer(runner=runner, concurrency=2)
    for recording in (a, b, c):
        renderer.background(recording)
    await settle()
    assert runner.started == ["rec-a", "rec-b"]
    assert [renderer.state(r) for r in (a, b, c)] == ["rendering", "rendering", "queued"]
    runner.release("rec-b")
    await asyncio.wait_for(renderer.wait(b), 10)
    await settle()
    assert runner.started == ["rec-a", "rec-b", "rec-c"]
    await renderer.close()  # cancels the held renders
    assert renderer.state(a) == "none"


async def test_a_failed_background_render_is_retried_only_when_asked(tmp_path: Path) -> None:
    (a,) = recordings(tmp_path, "rec-a")

    async def broken(directory: Path) -> None:
        raise RuntimeError("render exited with 2: cannot render")

    renderer = VodRenderer(runner=broken)
    renderer.background(a)
    await asyncio.wait_for(renderer.wait(a), 10)
    assert renderer.state(a) == "failed"
    assert renderer.background(a) == "failed"  # not again by itself
    assert renderer.ensure(a, retry=True) == "rendering"
    await asyncio.wait_for(renderer.wait(a), 10)
    await renderer.close()


def test_startup_queues_recent_unrendered_recordings_newest_first(tmp_path: Path) -> None:
    def at(hours_ago: float) -> int:
        return int((ORIGIN - timedelta(hours=hours_ago)).timestamp() * 1000)

    make_recording(tmp_path, "rec-old", duration=3.5, origin_ms=at(30))
    make_recording(tmp_path, "rec-recent", duration=3.5, origin_ms=at(2))
    make_recording(tmp_path, "rec-newest", duration=3.5, origin_ms=at(1))
    make_recording(tmp_path, "rec-open", duration=3.5, origin_ms=at(1), status="recording")
    render(make_recording(tmp_path, "rec-done", duration=3.5, origin_ms=at(1)))
    summaries = RecordingLibrary(tmp_path).summaries()
    policy = AutoRenderPolicy(startup_hours=24)
    assert policy.at_startup(summaries, ORIGIN) == ["rec-newest", "rec-recent"]
    assert AutoRenderPolicy(startup_hours=0).at_startup(summaries, ORIGIN) == []
    assert AutoRenderPolicy(enabled=False).at_startup(summaries, ORIGIN) == []
    assert AutoRenderPolicy(max_seconds=2.0).at_startup(summaries, ORIGIN) == []


async def test_a_long_recording_is_rendered_only_when_asked(tmp_path: Path) -> None:
    (a,) = recordings(tmp_path, "rec-a")
    runner = GatedRunner()
    renderer = VodRenderer(runner=runner)
    auto = AutoRenders(renderer, RecordingLibrary(tmp_path), AutoRenderPolicy(max_seconds=2.0))
    auto.finished(a.directory)
    await asyncio.sleep(0.2)
    await auto.close()
    assert runner.started == [] and renderer.state(a) == "none"
    auto = AutoRenders(renderer, RecordingLibrary(tmp_path), AutoRenderPolicy())
    auto.finished(a.directory)
    for _ in range(100):
        if runner.started:
            break
        await asyncio.sleep(0.05)
    assert runner.started == ["rec-a"] and renderer.state(a) == "rendering"
    await auto.close()
    await renderer.close()
