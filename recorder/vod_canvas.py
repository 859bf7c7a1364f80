"""The teaching video's picture, composed directly in I420 (yuv420p) planes.

The encoder takes I420. Composing in BGR cost, per output frame, a scale of every
tile with a YUV -> BGR conversion and a BGR -> I420 conversion of the whole picture:
about half of the render's time. Here each decoded frame's planes are scaled straight
into the picture's planes (``scale_into``); the background is painted only where no
camera's picture goes (``rect_minus``).

Drawings over the picture (the vitals strip, the tiles' labels) are made by the BGR
drawing code (OpenCV / Pillow) once per look, not once per picture: an ``Overlay`` is
the drawing as a per-pixel affine map of each plane (``out = in * k + a``: blending
with an alpha and darkening are both affine in the pixel under them, in RGB and so in
YUV), found by drawing once on black and once on white. Applying it is one multiply
and one add per plane; only what moves every picture (the waveform's line) is drawn
on the planes each time.

Areas are aligned to even pixels (one chroma sample covers 2x2 pixels).
"""

from __future__ import annotations

from collections.abc import Callable

import av
import cv2
import numpy as np

from recorder.vod_overlay import Rect

BGR = tuple[int, int, int]
Planes = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Y, U and V of one picture."""


def yuv_of(colour: BGR) -> tuple[int, int, int]:
    """(Y, U, V) of a BGR colour, as OpenCV's BGR -> I420 (BT.601, limited range) gives."""
    block = np.empty((2, 2, 3), dtype=np.uint8)
    block[:] = colour
    packed = cv2.cvtColor(block, cv2.COLOR_BGR2YUV_I420).reshape(-1)
    return int(packed[0]), int(packed[4]), int(packed[5])


def even_box(box: Rect, bound_w: int, bound_h: int) -> Rect:
    """``box`` moved and shrunk to even x, y, w, h, at least 2x2, inside the bounds."""
    x, y = box.x & ~1, box.y & ~1
    w = max(2, (box.w + (box.x - x)) & ~1)
    h = max(2, (box.h + (box.y - y)) & ~1)
    return Rect(x, y, min(w, bound_w - x), min(h, bound_h - y))


def plane_arrays(frame: av.VideoFrame) -> Planes:
    """Views of a yuv420p frame's Y, U and V planes (without the lines' padding)."""
    arrays = []
    for plane in frame.planes:
        rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(-1, plane.line_size)
        arrays.append(rows[:plane.height, :plane.width])
    y, u, v = arrays
    return y, u, v


def even_cover(rect: Rect, width: int, height: int) -> Rect:
    """The smallest even-aligned box covering ``rect``, inside the picture (a drawing that
    reaches an odd edge is kept whole)."""
    x0, y0 = max(0, rect.x) & ~1, max(0, rect.y) & ~1
    x1 = min(width, (rect.x + rect.w + 1) & ~1)
    y1 = min(height, (rect.y + rect.h + 1) & ~1)
    return Rect(x0, y0, max(2, x1 - x0), max(2, y1 - y0))


def rect_minus(area: Rect, hole: Rect) -> list[Rect]:
    """``area`` without ``hole``: up to four rectangles (bands above and below the hole,
    then the parts left and right of it), none empty."""
    x0, y0 = max(area.x, hole.x), max(area.y, hole.y)
    x1 = min(area.x + area.w, hole.x + hole.w)
    y1 = min(area.y + area.h, hole.y + hole.h)
    if x0 >= x1 or y0 >= y1:
        return [area] if area.w > 0 and area.h > 0 else []
    parts = [Rect(area.x, area.y, area.w, y0 - area.y),
             Rect(area.x, y1, area.w, area.y + area.h - y1),
             Rect(area.x, y0, x0 - area.x, y1 - y0),
             Rect(x1, y0, area.x + area.w - x1, y1 - y0)]
    return [r for r in parts if r.w > 0 and r.h > 0]


def rects_minus(areas: list[Rect], holes: list[Rect]) -> list[Rect]:
    """What of ``areas`` no hole covers, as rectangles that do not overlap."""
    for hole in holes:
        areas = [part for area in areas for part in rect_minus(area, hole)]
    return areas


def scale_into(target: Planes, source: Planes) -> None:
    """Scale a picture's planes onto ``target`` (views of the picture's planes, of the
    box the picture goes to): bilinear when enlarging, by area when shrinking (no
    aliasing), a copy when the sizes match."""
    for into, plane in zip(target, source, strict=True):
        if into.shape == plane.shape:
            into[:] = plane
            continue
        shrink = into.shape[0] < plane.shape[0] and into.shape[1] < plane.shape[1]
        cv2.resize(plane, (into.shape[1], into.shape[0]), dst=into,
                   interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


class Overlay:
    """A drawing over ``box`` of the picture that depends on nothing under it but by
    blending: per plane, ``out = in * k + a`` (see the module's docstring).

    ``Overlay.of(box, draw)``: ``draw(image)`` draws on a BGR image of ``box``'s size.
    """

    def __init__(self, box: Rect, k: Planes, a: Planes) -> None:
        self.box, self.k, self.a = box, k, a

    @classmethod
    def of(cls, box: Rect, draw: Callable[[np.ndarray], None]) -> Overlay:
        if box.x % 2 or box.y % 2 or box.w % 2 or box.h % 2:
            raise ValueError(f"an overlay needs an even box, not {box}")
        black = np.zeros((box.h, box.w, 3), dtype=np.uint8)
        white = np.full((box.h, box.w, 3), 255, dtype=np.uint8)
        draw(black)
        draw(white)
        # How much of the pixel under it shows through: the same for the three colours
        # (a blend's alpha), up to rounding: their mean.
        k = ((white.astype(np.float32) - black).mean(axis=2) / 255.0).clip(0.0, 1.0)
        k_c = cv2.resize(k, (box.w // 2, box.h // 2), interpolation=cv2.INTER_AREA)
        packed = cv2.cvtColor(black, cv2.COLOR_BGR2YUV_I420).reshape(-1)
        luma, chroma = box.w * box.h, box.w * box.h // 4
        y0 = packed[:luma].reshape(box.h, box.w).astype(np.float32)
        u0 = packed[luma:luma + chroma].reshape(box.h // 2, box.w // 2).astype(np.float32)
        v0 = packed[luma + chroma:].reshape(box.h // 2, box.w // 2).astype(np.float32)
        by, bu, bv = yuv_of((0, 0, 0))
        # Drawn on black, the picture is a + k * black's YUV: take that part out.
        return cls(box, (k, k_c, k_c), (y0 - k * by, u0 - k_c * bu, v0 - k_c * bv))

    def apply(self, planes: Planes) -> None:
        """Draw onto the picture's ``planes`` (in place)."""
        box = self.box
        cx, cy, cw, ch = box.x // 2, box.y // 2, box.w // 2, box.h // 2
        areas = (planes[0][box.y:box.y + box.h, box.x:box.x + box.w],
                 planes[1][cy:cy + ch, cx:cx + cw], planes[2][cy:cy + ch, cx:cx + cw])
        for area, k, a in zip(areas, self.k, self.a, strict=True):
            product = cv2.multiply(area, k, dtype=cv2.CV_32F)
            cv2.add(product, a, dst=area, dtype=cv2.CV_8U)  # rounds and saturates


class I420Canvas:
    """A ``width`` x ``height`` picture in I420 planes.

    ``next_frame()`` starts a new picture in a new ``av.VideoFrame`` and composes
    straight into its planes: the encoder takes that frame as it is (no copy of the
    picture to hand it over, none to make a frame of it)."""

    def __init__(self, width: int, height: int) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"I420 needs an even size, not {width}x{height}")
        self.width, self.height = width, height
        self._colours: dict[BGR, tuple[int, int, int]] = {}
        self.frame = self.next_frame()

    def next_frame(self) -> av.VideoFrame:
        """A new, uninitialised picture to draw on (fill it first); returned, and kept
        as ``frame``."""
        self.frame = av.VideoFrame(self.width, self.height, "yuv420p")
        self.y, self.u, self.v = plane_arrays(self.frame)
        return self.frame

    def _yuv(self, colour: BGR) -> tuple[int, int, int]:
        found = self._colours.get(colour)
        if found is None:
            found = self._colours[colour] = yuv_of(colour)
        return found

    def fill(self, colour: BGR, rect: Rect | None = None) -> None:
        """Paint ``rect`` (even-aligned; default the whole picture) in a flat colour."""
        y, u, v = self._yuv(colour)
        if rect is None:
            self.y.fill(y)
            self.u.fill(u)
            self.v.fill(v)
            return
        box = even_box(rect, self.width, self.height)
        cx, cy, cw, ch = box.x // 2, box.y // 2, box.w // 2, box.h // 2
        self.y[box.y:box.y + box.h, box.x:box.x + box.w] = y
        self.u[cy:cy + ch, cx:cx + cw] = u
        self.v[cy:cy + ch, cx:cx + cw] = v

    @property
    def planes(self) -> Planes:
        return self.y, self.u, self.v

    def box_planes(self, box: Rect) -> Planes:
        """Views of ``box`` (even-aligned) in the picture's three planes."""
        cx, cy, cw, ch = box.x // 2, box.y // 2, box.w // 2, box.h // 2
        return (self.y[box.y:box.y + box.h, box.x:box.x + box.w],
                self.u[cy:cy + ch, cx:cx + cw], self.v[cy:cy + ch, cx:cx + cw])

    def polyline(self, points: np.ndarray, colour: BGR, thickness: int = 2) -> None:
        """An anti-aliased line through ``points`` (int (n, 2), picture pixels), about
        ``thickness`` pixels wide: drawn on the luma plane at full size, on the chroma
        planes at half (with sub-pixel precision, thinner).

        On the luma plane a wide line is several one-pixel anti-aliased lines, each moved
        by a pixel right or down: OpenCV draws a wider anti-aliased line as a polygon per
        segment, six times slower (0.33 ms against 0.05 ms for a 500-point trace)."""
        y, u, v = self._yuv(colour)
        width = max(1, thickness)
        curves = [points + np.array([dx, dy], dtype=points.dtype)
                  for dx in range(width) for dy in range(width - dx)]
        cv2.polylines(self.y, curves, False, y, 1, cv2.LINE_AA)
        half = (points * 8).astype(np.int32)  # 3 fractional bits: points / 2
        cv2.polylines(self.u, [half], False, u, max(1, thickness // 2), cv2.LINE_AA, 4)
        cv2.polylines(self.v, [half], False, v, max(1, thickness // 2), cv2.LINE_AA, 4)

    def to_bgr(self) -> np.ndarray:
        return self.frame.to_ndarray(format="bgr24")
