"""Drawing the vitals over the teaching video's picture (numpy/OpenCV/Pillow, pure).

A translucent monitor strip: an optional waveform trace (pleth) on the left, then
HR, SpO2, RR, Temp and NIBP tiles in the live panel's colours (web_client/vitals.js).
Stale values are drawn grey, missing ones as a dash.

Text is drawn with Pillow and a CJK font (Noto Sans CJK, Debian's ``fonts-noto-cjk``):
OpenCV's Hershey fonts cannot draw Chinese. Each distinct string is rasterised once
into an alpha patch (a bounded LRU: the numbers change every frame) and blended onto
the frame. The labels' words come from the caller (``labels``: the message catalogue's
``vod.*`` entries in the video's language, passed in by the composition root; the
recorder does not read the catalogue itself); ``DEFAULT_LABELS`` is the English fallback.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from recorder.vod_vitals import WAVE_WINDOW_S, VitalsState

logger = logging.getLogger(__name__)

BGR = tuple[int, int, int]
STALE: BGR = (132, 120, 107)
LABEL: BGR = (200, 190, 180)
WAVE_PREFERENCE = ("pleth", "ecg", "resp", "co2")


@dataclass(frozen=True)
class Tile:
    label: str
    """The key of the tile's label in ``labels`` (e.g. "hr")."""
    keys: tuple[str, ...]
    """Vitals shown, joined with "/" (NIBP: systolic/diastolic)."""
    digits: int
    colour: BGR


TILES = (
    Tile("hr", ("hr",), 0, (132, 220, 61)),
    Tile("spo2", ("spo2",), 0, (240, 197, 54)),
    Tile("rr", ("rr",), 0, (71, 213, 245)),
    Tile("temp", ("temp",), 1, (243, 238, 232)),
    Tile("nibp", ("nibp_sys", "nibp_dia"), 0, (128, 138, 255)),
)
WAVE_COLOURS: dict[str, BGR] = {"pleth": (240, 197, 54), "ecg": (132, 220, 61)}

DEFAULT_LABELS: Mapping[str, str] = {
    "hr": "HR", "spo2": "SpO2 %", "rr": "RR", "temp": "Temp °C", "nibp": "NIBP",
    "wave.pleth": "Pleth", "wave.ecg": "ECG", "wave.resp": "Resp", "wave.co2": "CO2",
    "role.ward": "Bedside", "role.expert": "Specialist", "role.observer": "Observer",
    "role.participant": "Participant", "role.main": "Bedside",
    "camera.ward": "Bedside camera {n}", "camera.other": "{role} {n}",
}
"""The overlay's words when the caller passes none (English); keys as the catalogue's
``vod.*`` entries without the prefix; ``camera.<role>`` (else ``camera.other``) names
one of several cameras of a role, ``{n}`` its number, ``{role}`` the role's label.
SpO2 and CO2, not SpO₂: Noto Sans CJK has no subscript digits."""


def label_text(labels: Mapping[str, str], key: str, fallback: str) -> str:
    """``labels[key]``, else the English default, else ``fallback``."""
    return labels.get(key) or DEFAULT_LABELS.get(key) or fallback


# ----------------------------------------------------------------------------- text

CJK_FONT_PATHS = (
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJKsc-Regular.otf"),
    Path("/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc"),
)
CJK_FAMILY = "Noto Sans CJK SC"
PATCH_CACHE = 512
"""Rasterised strings kept (labels, and the numbers of the last few seconds)."""


def find_cjk_font() -> Path | None:
    """Noto Sans CJK (Debian's fonts-noto-cjk) at a known path, else as fontconfig finds
    it; None when the machine has no CJK font."""
    for path in CJK_FONT_PATHS:
        if path.is_file():
            return path
    fc_match = shutil.which("fc-match")
    if fc_match is None:
        return None
    try:
        found = subprocess.run([fc_match, "-f", "%{file}\n%{family}", CJK_FAMILY],
                               capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    file, _, family = found.stdout.partition("\n")
    # fc-match always answers: a fallback such as DejaVu Sans has no Chinese glyphs.
    if found.returncode == 0 and "CJK" in family and Path(file).is_file():
        return Path(file)
    return None


@dataclass(frozen=True)
class TextPatch:
    """One string rasterised: alpha masks (0..1) and their offset from the anchor point."""

    fill: np.ndarray
    outline: np.ndarray | None
    dx: int
    dy: int

    @property
    def width(self) -> int:
        return int(self.fill.shape[1])


class TextPainter:
    """Draws text onto BGR frames with Pillow; each (text, size, outline) is rasterised
    once and kept in a bounded LRU cache."""

    def __init__(self, font_path: Path | None = None, *, find: bool = True,
                 cache_size: int = PATCH_CACHE) -> None:
        if font_path is None and find:
            font_path = find_cjk_font()
            if font_path is None:
                logger.warning("no CJK font (install Debian's fonts-noto-cjk): the teaching "
                               "video's labels use Pillow's default font, without Chinese")
        self.font_path = font_path
        self._face = _simplified_chinese_face(font_path) if font_path is not None else 0
        self._fonts: dict[int, ImageFont.FreeTypeFont | ImageFont.ImageFont] = {}
        self._patches: OrderedDict[tuple[str, int, int], TextPatch] = OrderedDict()
        self._inks: OrderedDict[tuple[str, int, int, BGR, BGR], tuple[Ink, ...]] = (
            OrderedDict())
        self._cache_size = cache_size

    def font(self, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        font = self._fonts.get(size)
        if font is None:
            if self.font_path is not None:
                font = ImageFont.truetype(str(self.font_path), size, index=self._face)
            else:
                font = ImageFont.load_default(size)
            self._fonts[size] = font
        return font

    def patch(self, text: str, size: int, outline: int = 0) -> TextPatch:
        """``text`` rasterised at ``size`` px (left end of the baseline at 0, 0)."""
        key = (text, size, outline)
        found = self._patches.get(key)
        if found is not None:
            self._patches.move_to_end(key)
            return found
        font = self.font(size)
        probe = ImageDraw.Draw(Image.new("L", (1, 1)))
        left, top, right, bottom = (int(v) for v in probe.textbbox(
            (0, 0), text, font=font, anchor="ls", stroke_width=outline))
        width, height = max(1, right - left), max(1, bottom - top)

        def mask(stroke: int) -> np.ndarray:
            image = Image.new("L", (width, height), 0)
            ImageDraw.Draw(image).text((-left, -top), text, fill=255, font=font, anchor="ls",
                                       stroke_width=stroke, stroke_fill=255)
            return np.asarray(image, dtype=np.float32)[..., None] / 255.0

        made = TextPatch(mask(0), mask(outline) if outline else None, left, top)
        self._patches[key] = made
        if len(self._patches) > self._cache_size:
            self._patches.popitem(last=False)
        return made

    @property
    def cached(self) -> int:
        return len(self._patches)

    def width(self, text: str, size: int) -> int:
        return self.patch(text, size).width

    def draw(self, frame: np.ndarray, text: str, origin: tuple[int, int], size: int,
             colour: BGR, *, outline: int = 0, outline_colour: BGR = (0, 0, 0)) -> None:
        """Blend ``text`` onto ``frame`` (BGR, in place) with its baseline starting at
        ``origin``; clipped at the frame's edges."""
        if not text:
            return
        x, y = origin
        for ink in self._ink(text, size, outline, colour, outline_colour):
            ink.apply(frame, x + ink.dx, y + ink.dy)

    def _ink(self, text: str, size: int, outline: int, colour: BGR,
             outline_colour: BGR) -> tuple[Ink, ...]:
        """The blends that draw ``text`` in these colours (cached like the patches:
        the numbers change once a second, the picture 25 times)."""
        key = (text, size, outline, colour, outline_colour)
        found = self._inks.get(key)
        if found is not None:
            self._inks.move_to_end(key)
            return found
        patch = self.patch(text, size, outline)
        if patch.outline is None:
            made: tuple[Ink, ...] = (Ink.of(patch.fill, colour, patch.dx, patch.dy),)
        elif outline_colour == colour:  # a stroke in the text's own colour: one blend
            both = 1.0 - (1.0 - patch.outline) * (1.0 - patch.fill)
            made = (Ink.of(both, colour, patch.dx, patch.dy),)
        else:
            made = (Ink.of(patch.outline, outline_colour, patch.dx, patch.dy),
                    Ink.of(patch.fill, colour, patch.dx, patch.dy))
        self._inks[key] = made
        if len(self._inks) > self._cache_size:
            self._inks.popitem(last=False)
        return made


@dataclass(frozen=True)
class Ink:
    """One alpha mask in one colour, ready to blend: ``frame * keep + add``."""

    keep: np.ndarray
    """1 - alpha, (h, w, 1) float32."""
    add: np.ndarray
    """colour * alpha + 0.5 (the 0.5 rounds when the sum is truncated), (h, w, 3)."""
    dx: int
    dy: int

    @classmethod
    def of(cls, alpha: np.ndarray, colour: BGR, dx: int, dy: int) -> Ink:
        add = alpha * np.asarray(colour, dtype=np.float32) + np.float32(0.5)
        return cls((1.0 - alpha).astype(np.float32), add.astype(np.float32), dx, dy)

    def apply(self, frame: np.ndarray, x: int, y: int) -> None:
        """Blend onto ``frame`` (BGR, in place) at ``x``, ``y``; clipped at its edges."""
        height, width = self.keep.shape[:2]
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(frame.shape[1], x + width), min(frame.shape[0], y + height)
        if x0 >= x1 or y0 >= y1:
            return
        roi = frame[y0:y1, x0:x1]
        mixed = roi * self.keep[y0 - y:y1 - y, x0 - x:x1 - x]
        mixed += self.add[y0 - y:y1 - y, x0 - x:x1 - x]
        np.copyto(roi, mixed, casting="unsafe")


def _simplified_chinese_face(path: Path) -> int:
    """The index of the Simplified Chinese face in a font collection (.ttc), else 0."""
    if path.suffix.lower() != ".ttc":
        return 0
    for index in range(16):
        try:
            family, _ = ImageFont.truetype(str(path), 12, index=index).getname()
        except OSError:
            break
        if family == CJK_FAMILY:
            return index
    return 0


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    w: int
    h: int

    def to_json(self) -> dict[str, int]:
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h}


def tile_text(tile: Tile, state: VitalsState) -> tuple[str, bool]:
    """(text, stale) of one tile: "72", "120/80", "-" when nothing is known."""
    keys = tile.keys
    if keys == ("hr",) and "hr" not in state.values and "hr" not in state.stale:
        keys = ("pr",)  # monitors that send pulse rate only
    parts: list[str] = []
    stale = False
    for key in keys:
        if key in state.values:
            parts.append(f"{state.values[key]:.{tile.digits}f}")
        elif key in state.stale:
            parts.append(f"{state.stale[key]:.{tile.digits}f}")
            stale = True
        else:
            parts.append("-")
    if all(p == "-" for p in parts):
        return "-", True
    return "/".join(parts), stale


def draw_vitals(frame: np.ndarray, area: Rect, state: VitalsState, now: float,
                painter: TextPainter, labels: Mapping[str, str] = DEFAULT_LABELS, *,
                traces: bool = True) -> None:
    """Draw the strip into ``frame`` (BGR, modified in place) over ``area``; ``now`` in s.

    ``traces=False`` draws everything but the waveform's line: what depends on the
    picture under the strip and on the numbers only (``vitals_look``), which the render
    keeps from one picture to the next (see ``recorder.vod_canvas.Overlay``); the line,
    which moves every picture, is ``vitals_traces``."""
    x, y, w, h = area.x, area.y, area.w, area.h
    roi = frame[y:y + h, x:x + w]
    roi[:] = cv2.convertScaleAbs(roi, alpha=0.25)
    wave_key, wave_area, tiles_x = _strip_parts(area, state)
    if wave_key is not None and wave_area is not None:
        painter.draw(frame, label_text(labels, f"wave.{wave_key}", wave_key.upper()),
                     (wave_area.x, wave_area.y + 14), 14, LABEL)
        if traces:
            for points, colour in vitals_traces(area, state, now):
                cv2.polylines(frame, [points], False, colour, 2, cv2.LINE_AA)
    tile_w = (x + w - tiles_x) // len(TILES)
    label_px = max(12, round(h * 0.15))
    value_px = max(18, round(h * 0.40))
    for i, tile in enumerate(TILES):
        left = tiles_x + i * tile_w + 6
        text, stale = tile_text(tile, state)
        colour = STALE if stale else tile.colour
        label = label_text(labels, tile.label, tile.label)
        size = label_px
        if painter.width(label, size) > tile_w - 10:  # a long label in a narrow tile
            size = max(8, size * (tile_w - 10) // painter.width(label, size))
        painter.draw(frame, label, (left, y + int(h * 0.26)), size, LABEL)
        size = value_px
        if painter.width(text, size) > tile_w - 14:  # "120/80" in a narrow tile
            size = max(8, size * (tile_w - 14) // painter.width(text, size))
        # Bold numbers, as on a monitor: a stroke in the digits' own colour.
        painter.draw(frame, text, (left, y + int(h * 0.80)), size, colour,
                     outline=max(1, size // 30), outline_colour=colour)


def vitals_look(state: VitalsState) -> tuple[object, ...]:
    """What the strip shows apart from the waveform's line (``draw_vitals`` with
    ``traces=False``, for given labels and area): equal looks draw equal pixels."""
    wave_key = _wave_key(state)
    return (wave_key, *(tile_text(tile, state) for tile in TILES))


def vitals_traces(area: Rect, state: VitalsState, now: float) -> list[tuple[np.ndarray, BGR]]:
    """The waveform's polylines at ``now`` (pixel points as int32 (n, 2), in the
    coordinates ``area`` is given in) with their colour; empty without a waveform."""
    wave_key, wave_area, _ = _strip_parts(area, state)
    if wave_key is None or wave_area is None:
        return []
    samples = state.waves[wave_key]
    colour = WAVE_COLOURS.get(wave_key, (255, 182, 201))
    values = samples[:, 1]
    finite = np.isfinite(values)
    if finite.sum() < 2:
        return []
    lo = float(values[finite].min())
    hi = float(values[finite].max())
    if hi - lo < 1e-9:
        lo, hi = lo - 1.0, hi + 1.0
    plot = Rect(wave_area.x, wave_area.y + 18, wave_area.w, wave_area.h - 20)
    return [(np.round(run).astype(np.int32), colour)
            for run in wave_runs(plot, samples, now, lo, hi)]


def _wave_key(state: VitalsState) -> str | None:
    wave_key = next((k for k in WAVE_PREFERENCE if k in state.waves), None)
    if wave_key is None and state.waves:
        wave_key = next(iter(state.waves))
    return wave_key


def _strip_parts(area: Rect, state: VitalsState) -> tuple[str | None, Rect | None, int]:
    """(the waveform shown, its area, the left edge of the number tiles)."""
    wave_key = _wave_key(state)
    if wave_key is None:
        return None, None, area.x
    wave_w = area.w * 26 // 100
    return wave_key, Rect(area.x + 6, area.y + 6, wave_w - 12, area.h - 12), area.x + wave_w


def wave_runs(area: Rect, samples: np.ndarray, now: float, lo: float,
              hi: float) -> list[np.ndarray]:
    """The polylines (pixel (x, y) as float, (n, 2)) that draw ``samples`` ((n, 2)
    [t, value], t in s, ending at ``now``) over ``area``, values ``lo``..``hi`` bottom to
    top. A NaN value (a gap in the waveform) ends a run: no line crosses a gap. x grows
    with t, so with strictly increasing times no run loops back."""
    values = samples[:, 1]
    xs = area.x + (samples[:, 0] - (now - WAVE_WINDOW_S)) / WAVE_WINDOW_S * area.w
    ys = area.y + (1.0 - (values - lo) / (hi - lo)) * area.h
    points = np.stack([xs, ys], axis=1)
    runs = []
    for run in np.split(points, np.flatnonzero(~np.isfinite(values))):
        run = run[np.isfinite(run).all(axis=1)]
        if len(run) >= 2:
            runs.append(run)
    return runs
