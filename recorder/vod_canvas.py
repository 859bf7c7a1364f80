"""The teaching video's picture, composed directly in I420 (yuv420p) planes.

The encoder takes I420. Composing in BGR cost, per output frame, a scale of every
tile with a YUV -> BGR conversion and a BGR -> I420 conversion of the whole picture:
about half of the render's time. Here each decoded frame is scaled by swscale straight
into yuv420p at its tile's size and its planes are copied in; only the small areas
with drawings (the vitals strip, the tiles' labels) go through BGR, converted there
and back so that the drawing code (OpenCV / Pillow, BGR) stays as it is.

Areas are aligned to even pixels (one chroma sample covers 2x2 pixels).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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

    def blit(self, box: Rect, planes: Planes) -> None:
        """Copy a picture's planes (``box.w`` x ``box.h``, even-aligned) to ``box``."""
        y, u, v = planes
        cx, cy, cw, ch = box.x // 2, box.y // 2, box.w // 2, box.h // 2
        self.y[box.y:box.y + box.h, box.x:box.x + box.w] = y
        self.u[cy:cy + ch, cx:cx + cw] = u
        self.v[cy:cy + ch, cx:cx + cw] = v

    @contextlib.contextmanager
    def bgr(self, rect: Rect) -> Iterator[tuple[np.ndarray, Rect]]:
        """The pixels around ``rect`` as a BGR array to draw on, and ``rect`` in that
        array's coordinates; written back to the planes when the block ends."""
        x0, y0 = max(0, rect.x) & ~1, max(0, rect.y) & ~1
        x1 = min(self.width, rect.x + rect.w + 1) & ~1
        y1 = min(self.height, rect.y + rect.h + 1) & ~1
        w, h = x1 - x0, y1 - y0
        if w <= 0 or h <= 0:
            yield np.zeros((2, 2, 3), dtype=np.uint8), Rect(rect.x - x0, rect.y - y0,
                                                             rect.w, rect.h)
            return
        luma, chroma = w * h, w * h // 4
        packed = np.empty(luma + 2 * chroma, dtype=np.uint8)
        cx0, cy0, cx1, cy1 = x0 // 2, y0 // 2, x1 // 2, y1 // 2
        packed[:luma].reshape(h, w)[:] = self.y[y0:y1, x0:x1]
        packed[luma:luma + chroma].reshape(h // 2, w // 2)[:] = self.u[cy0:cy1, cx0:cx1]
        packed[luma + chroma:].reshape(h // 2, w // 2)[:] = self.v[cy0:cy1, cx0:cx1]
        image = cv2.cvtColor(packed.reshape(h * 3 // 2, w), cv2.COLOR_YUV2BGR_I420)
        yield image, Rect(rect.x - x0, rect.y - y0, rect.w, rect.h)
        back = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420).reshape(-1)
        self.y[y0:y1, x0:x1] = back[:luma].reshape(h, w)
        self.u[cy0:cy1, cx0:cx1] = back[luma:luma + chroma].reshape(h // 2, w // 2)
        self.v[cy0:cy1, cx0:cx1] = back[luma + chroma:].reshape(h // 2, w // 2)

    def to_bgr(self) -> np.ndarray:
        return self.frame.to_ndarray(format="bgr24")
