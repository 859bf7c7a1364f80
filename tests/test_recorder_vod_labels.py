"""The teaching video's labels in Chinese: Pillow + Noto Sans CJK instead of Hershey fonts.

Pure drawing checks on numpy frames (no video), and one render through the same
subprocess the server uses, with the catalogue's zh-CN words.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from contracts.catalogue import Catalogue
from huizhen.app import create_app
from recorder import vod_overlay
from recorder.http import RECORDINGS, SubprocessRunner, subprocess_runner
from recorder.vod import RENDER_JSON, VOD_DIR
from recorder.vod_overlay import (
    DEFAULT_LABELS,
    TILES,
    Rect,
    TextPainter,
    draw_vitals,
    find_cjk_font,
)
from recorder.vod_vitals import VitalsState
from tests.conftest import make_settings
from tests.test_recorder_vod_fixtures import make_recording

ZH = Catalogue.load().labels("vod", "zh-CN")
EN = Catalogue.load().labels("vod", "en")
STRIP = Rect(0, 0, 960, 120)


@pytest.fixture(scope="module")
def painter() -> TextPainter:
    font = find_cjk_font()
    if font is None:
        pytest.fail("no CJK font: ./scripts/ensure-system-packages installs Debian's "
                    "fonts-noto-cjk", pytrace=False)
    return TextPainter(font)


def drawn(painter: TextPainter, text: str, size: int = 24) -> np.ndarray:
    frame = np.zeros((48, 200, 3), dtype=np.uint8)
    painter.draw(frame, text, (4, 36), size, (255, 255, 255))
    return frame[..., 0]


def test_the_font_is_noto_sans_cjk_sc(painter: TextPainter) -> None:
    assert painter.font_path is not None and "CJK" in painter.font_path.name
    assert painter.font(20).getname() == ("Noto Sans CJK SC", "Regular")  # type: ignore[union-attr]


def test_chinese_labels_have_their_own_glyphs(painter: TextPainter) -> None:
    heart, temperature = drawn(painter, "心率"), drawn(painter, "体温")
    assert (heart > 128).sum() > 60 and (temperature > 128).sum() > 60
    # A font without Chinese draws the same empty boxes for every character.
    differ = (heart > 128) ^ (temperature > 128)
    assert differ.sum() > 0.3 * max((heart > 128).sum(), (temperature > 128).sum())
    # What Pillow itself draws with the font: the same glyph pixels, blended in place.
    font = painter.font(24)
    image = Image.new("L", (200, 48), 0)
    ImageDraw.Draw(image).text((4, 36), "心率", fill=255, font=font, anchor="ls")
    reference = np.asarray(image)
    assert np.abs(reference.astype(int) - heart.astype(int)).max() <= 1


def test_the_vitals_strip_draws_the_labels_it_is_given(painter: TextPainter) -> None:
    state = VitalsState({"hr": 72.0, "spo2": 97.0, "rr": 16.0, "temp": 36.8,
                         "nibp_sys": 121.0, "nibp_dia": 79.0}, {}, {})

    def strip(labels: dict[str, str]) -> np.ndarray:
        frame = np.full((120, 960, 3), 90, dtype=np.uint8)
        draw_vitals(frame, STRIP, state, 10.0, painter, labels)
        return frame

    chinese, english = strip(ZH), strip(EN)
    other = strip({**ZH, "hr": "脉率"})
    tile_w = STRIP.w // len(TILES)
    label_rows = slice(0, int(STRIP.h * 0.26) + 4)
    hr_label = (label_rows, slice(0, tile_w))
    # The HR tile's label: glyph pixels (LABEL colour on the darkened picture) ...
    assert (chinese[hr_label][..., 2] > 150).sum() > 40
    # ... that differ between 心率 and 脉率 and HR, while the numbers are the same.
    assert (chinese[hr_label] != other[hr_label]).any()
    assert (chinese[hr_label] != english[hr_label]).any()
    value_rows = slice(int(STRIP.h * 0.4), STRIP.h)
    assert np.array_equal(chinese[value_rows], english[value_rows])
    assert np.array_equal(chinese[:, tile_w:], other[:, tile_w:])


def test_each_string_is_rasterised_once_in_a_bounded_cache(painter: TextPainter) -> None:
    small = TextPainter(painter.font_path, cache_size=3)
    first = small.patch("心率", 20)
    assert small.patch("心率", 20) is first  # cached
    for value in range(60, 70):  # numbers change every frame
        small.patch(str(value), 40)
    assert small.cached == 3
    assert small.patch("心率", 20) is not first  # evicted, drawn again


def test_without_a_cjk_font_it_says_so_once_and_still_draws(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(vod_overlay, "find_cjk_font", lambda: None)
    with caplog.at_level(logging.WARNING, logger="recorder.vod_overlay"):
        fallback = TextPainter()
    assert fallback.font_path is None
    assert [r.getMessage() for r in caplog.records] == [
        "no CJK font (install Debian's fonts-noto-cjk): the teaching video's labels use "
        "Pillow's default font, without Chinese"]
    assert (drawn(fallback, "HR 72") > 128).sum() > 20


def test_the_catalogue_has_every_overlay_word_in_both_languages() -> None:
    assert set(ZH) == set(EN) == set(DEFAULT_LABELS)
    assert ZH["hr"] == "心率" and ZH["role.expert"] == "会诊专家"
    assert EN["hr"] == DEFAULT_LABELS["hr"] == "HR"


def test_the_server_renders_with_the_chinese_labels() -> None:
    app = create_app(make_settings())
    runner = app[RECORDINGS].renderer.runner
    assert isinstance(runner, SubprocessRunner)
    assert runner.labels == ZH


async def test_a_render_in_the_subprocess_draws_the_words_it_was_given(tmp_path: Path) -> None:
    directory = make_recording(tmp_path, duration=2.0)
    await subprocess_runner(ZH)(directory)
    info = json.loads((directory / VOD_DIR / RENDER_JSON).read_text(encoding="utf-8"))
    assert info["labels"] == ZH
    assert info["frames"] == 50
