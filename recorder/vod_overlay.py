"""Drawing the vitals over the teaching video's picture (numpy/OpenCV, pure).

A translucent monitor strip: an optional waveform trace (pleth) on the left, then
HR, SpO2, RR, Temp and NIBP tiles in the live panel's colours (web_client/vitals.js).
Stale values are drawn grey, missing ones as a dash.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from recorder.vod_vitals import WAVE_WINDOW_S, VitalsState

BGR = tuple[int, int, int]
STALE: BGR = (132, 120, 107)
LABEL: BGR = (200, 190, 180)
FONT = cv2.FONT_HERSHEY_DUPLEX
WAVE_PREFERENCE = ("pleth", "ecg", "resp", "co2")


@dataclass(frozen=True)
class Tile:
    label: str
    keys: tuple[str, ...]
    """Vitals shown, joined with "/" (NIBP: systolic/diastolic)."""
    digits: int
    colour: BGR


TILES = (
    Tile("HR", ("hr",), 0, (132, 220, 61)),
    Tile("SpO2 %", ("spo2",), 0, (240, 197, 54)),
    Tile("RR", ("rr",), 0, (71, 213, 245)),
    Tile("Temp C", ("temp",), 1, (243, 238, 232)),
    Tile("NIBP", ("nibp_sys", "nibp_dia"), 0, (128, 138, 255)),
)
WAVE_COLOURS: dict[str, BGR] = {"pleth": (240, 197, 54), "ecg": (132, 220, 61)}


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


def draw_vitals(frame: np.ndarray, area: Rect, state: VitalsState, now: float) -> None:
    """Draw the strip into ``frame`` (BGR, modified in place) over ``area``; ``now`` in s."""
    x, y, w, h = area.x, area.y, area.w, area.h
    roi = frame[y:y + h, x:x + w]
    roi[:] = cv2.convertScaleAbs(roi, alpha=0.25)
    wave_key = next((k for k in WAVE_PREFERENCE if k in state.waves), None)
    if wave_key is None and state.waves:
        wave_key = next(iter(state.waves))
    tiles_x = x
    if wave_key is not None:
        wave_w = w * 26 // 100
        _draw_wave(frame, Rect(x + 6, y + 6, wave_w - 12, h - 12), wave_key,
                   state.waves[wave_key], now)
        tiles_x = x + wave_w
    tile_w = (x + w - tiles_x) // len(TILES)
    label_scale = max(0.35, h / 240)
    value_scale = max(0.6, h / 85)
    thickness = max(1, round(h / 60))
    for i, tile in enumerate(TILES):
        left = tiles_x + i * tile_w + 6
        text, stale = tile_text(tile, state)
        colour = STALE if stale else tile.colour
        cv2.putText(frame, tile.label, (left, y + int(h * 0.24)), FONT, label_scale,
                    LABEL, 1, cv2.LINE_AA)
        scale = value_scale
        (text_w, _), _ = cv2.getTextSize(text, FONT, scale, thickness)
        if text_w > tile_w - 10:  # "120/80" in a narrow tile
            scale *= (tile_w - 10) / text_w
        cv2.putText(frame, text, (left, y + int(h * 0.78)), FONT, scale, colour, thickness,
                    cv2.LINE_AA)


def _draw_wave(frame: np.ndarray, area: Rect, key: str, samples: np.ndarray,
               now: float) -> None:
    colour = WAVE_COLOURS.get(key, (255, 182, 201))
    cv2.putText(frame, key.upper(), (area.x, area.y + 14), FONT, 0.45, LABEL, 1, cv2.LINE_AA)
    values = samples[:, 1]
    finite = np.isfinite(values)
    if finite.sum() < 2:
        return
    lo = float(values[finite].min())
    hi = float(values[finite].max())
    if hi - lo < 1e-9:
        lo, hi = lo - 1.0, hi + 1.0
    top = area.y + 18
    height = area.h - 20
    xs = area.x + (samples[:, 0] - (now - WAVE_WINDOW_S)) / WAVE_WINDOW_S * area.w
    ys = top + (1.0 - (values - lo) / (hi - lo)) * height
    points = np.stack([xs, ys], axis=1)
    # NaN (a gap in the waveform) breaks the line into runs.
    breaks = np.flatnonzero(~finite)
    for run in np.split(points, breaks):
        run = run[np.isfinite(run).all(axis=1)]
        if len(run) >= 2:
            cv2.polylines(frame, [np.round(run).astype(np.int32)], False, colour, 2, cv2.LINE_AA)
