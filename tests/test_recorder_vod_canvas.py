"""The teaching video's I420 canvas: background only where no camera goes, tiles scaled
into the planes, and drawings made once as per-plane affine maps that give the same
pixels as drawing on the picture itself (in BGR, then converted to I420)."""

from __future__ import annotations

import random

import cv2
import numpy as np

from recorder.vod_canvas import I420Canvas, Overlay, rect_minus, rects_minus, scale_into
from recorder.vod_overlay import Rect, TextPainter, draw_vitals
from recorder.vod_vitals import VitalsState

WIDTH, HEIGHT = 320, 240


def mask_of(rects: list[Rect], width: int = 100, height: int = 80) -> np.ndarray:
    """How many of ``rects`` cover each pixel."""
    count = np.zeros((height, width), dtype=np.int32)
    for r in rects:
        count[r.y:r.y + r.h, r.x:r.x + r.w] += 1
    return count


def test_an_area_minus_holes_is_exactly_what_no_hole_covers_without_overlaps() -> None:
    rng = random.Random(7)
    for _ in range(300):
        area = Rect(0, 0, 100, 80)
        holes = [Rect(rng.randrange(-20, 100), rng.randrange(-20, 80), rng.randrange(1, 60),
                      rng.randrange(1, 60)) for _ in range(rng.randrange(0, 4))]
        parts = rects_minus([area], holes)
        covered = mask_of(parts)
        holed = mask_of([Rect(max(0, h.x), max(0, h.y), h.w + min(0, h.x), h.h + min(0, h.y))
                         for h in holes if h.w + min(0, h.x) > 0 and h.h + min(0, h.y) > 0])
        assert covered.max() <= 1  # no pixel painted twice
        assert np.array_equal(covered == 1, holed == 0)
        assert all(p.w > 0 and p.h > 0 for p in parts)
    assert rect_minus(Rect(0, 0, 10, 10), Rect(20, 20, 5, 5)) == [Rect(0, 0, 10, 10)]
    assert rect_minus(Rect(0, 0, 10, 10), Rect(-1, -1, 12, 12)) == []


def background() -> np.ndarray:
    """A picture with smooth gradients and hard edges, as a camera's."""
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    picture = np.stack([(xs * 255 // WIDTH), (ys * 255 // HEIGHT),
                        ((xs + ys) * 255 // (WIDTH + HEIGHT))], axis=2).astype(np.uint8)
    picture[40:120, 60:200] = (20, 200, 240)
    picture[150:230, 180:300] = (250, 250, 250)
    return picture


def i420_planes(bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h, w = bgr.shape[:2]
    packed = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).reshape(-1)
    return (packed[:h * w].reshape(h, w).copy(),
            packed[h * w:h * w * 5 // 4].reshape(h // 2, w // 2).copy(),
            packed[h * w * 5 // 4:].reshape(h // 2, w // 2).copy())


def compare(drawn_bgr: np.ndarray, planes: tuple[np.ndarray, ...]) -> list[tuple[float, int]]:
    """(mean, 99th percentile) absolute difference per plane."""
    reference = i420_planes(drawn_bgr)
    out = []
    for want, got in zip(reference, planes, strict=True):
        diff = np.abs(want.astype(np.int16) - got.astype(np.int16))
        out.append((float(diff.mean()), int(np.percentile(diff, 99))))
    return out


def test_the_vitals_strip_as_an_overlay_gives_the_pixels_of_drawing_it_on_the_picture() -> None:
    state = VitalsState({"hr": 72.0, "spo2": 97.0, "rr": 16.0, "temp": 36.8,
                         "nibp_sys": 121.0, "nibp_dia": 79.0}, {"rr": 18.0}, {})
    painter = TextPainter()
    strip = Rect(0, 160, WIDTH, 80)
    local = Rect(0, 0, strip.w, strip.h)
    overlay = Overlay.of(strip, lambda image: draw_vitals(
        image, local, state, 2.0, painter, traces=False))

    picture = background()
    drawn = picture.copy()
    draw_vitals(drawn, strip, state, 2.0, painter, traces=False)
    planes = i420_planes(picture)
    overlay.apply(planes)

    (y_mean, y_p99), (u_mean, u_p99), (v_mean, v_p99) = compare(drawn, planes)
    print(f"strip overlay against drawing in BGR: Y mean {y_mean:.2f} p99 {y_p99}, "
          f"U {u_mean:.2f}/{u_p99}, V {v_mean:.2f}/{v_p99}")
    assert y_mean < 0.5 and y_p99 <= 2
    assert u_mean < 1.0 and u_p99 <= 6 and v_mean < 1.0 and v_p99 <= 6
    # It did draw: the strip is darker than the picture, the numbers are bright.
    before = i420_planes(picture)[0][strip.y:, :]
    after = planes[0][strip.y:, :]
    assert after.mean() < before.mean() * 0.6
    assert (after > 150).sum() > 200


def test_a_label_overlay_leaves_the_picture_around_the_text_untouched() -> None:
    painter = TextPainter()
    box = Rect(10, 20, 120, 30)

    def label(image: np.ndarray) -> None:
        painter.draw(image, "会诊专家", (4, 24), 18, (255, 255, 255), outline=2)

    overlay = Overlay.of(box, label)
    picture = background()
    planes = i420_planes(picture)
    overlay.apply(planes)
    untouched = i420_planes(picture)
    inside = np.zeros((HEIGHT, WIDTH), dtype=bool)
    inside[box.y:box.y + box.h, box.x:box.x + box.w] = True
    assert np.array_equal(planes[0][~inside], untouched[0][~inside])
    drawn = picture.copy()
    roi = drawn[box.y:box.y + box.h, box.x:box.x + box.w]
    label(roi)
    (y_mean, y_p99), _, _ = compare(drawn, planes)
    assert y_mean < 0.5 and y_p99 <= 2
    assert (planes[0][inside] > 200).sum() > 50  # white ink
    assert (planes[0][inside] < 40).sum() > 50  # its black outline


def test_tiles_are_scaled_into_the_planes_and_the_rest_of_the_picture_is_left_alone() -> None:
    canvas = I420Canvas(WIDTH, HEIGHT)
    canvas.fill((18, 18, 18))
    source = i420_planes(background())
    box = Rect(0, 0, 160, 120)  # a half-size tile: shrunk by area
    scale_into(canvas.box_planes(box), source)
    want = cv2.resize(source[0], (160, 120), interpolation=cv2.INTER_AREA)
    assert np.array_equal(canvas.y[:120, :160], want)
    assert (canvas.y[:, 160:] == canvas.y[0, 200]).all()  # untouched background
    big = Rect(0, 0, WIDTH, HEIGHT)
    scale_into(canvas.box_planes(big), source)  # the same size: copied
    assert np.array_equal(canvas.y, source[0]) and np.array_equal(canvas.v, source[2])
    y, u, v = (np.asarray(cv2.resize(p, (p.shape[1] // 4, p.shape[0] // 4)), dtype=np.uint8)
               for p in source)
    small = (y, u, v)
    scale_into(canvas.box_planes(big), small)  # enlarged: bilinear
    assert np.array_equal(canvas.y, cv2.resize(small[0], (WIDTH, HEIGHT),
                                               interpolation=cv2.INTER_LINEAR))


def test_a_trace_is_drawn_in_its_colour_on_all_three_planes() -> None:
    canvas = I420Canvas(WIDTH, HEIGHT)
    canvas.fill((0, 0, 0))
    points = np.array([[10, 100], [100, 20], [200, 200]], dtype=np.int32)
    canvas.polyline(points, (240, 197, 54))
    bgr = canvas.to_bgr()
    drawn = bgr[np.abs(bgr.astype(int) - (240, 197, 54)).sum(axis=2) < 60]
    assert len(drawn) > 200  # the line's pixels come out in the trace's colour
    assert bgr[230, 20].sum() < 30  # away from it: still black


def test_a_wide_trace_is_as_wide_as_opencvs_own_wide_line_in_every_direction() -> None:
    """The luma line is one-pixel anti-aliased lines moved a pixel right and down (see
    ``I420Canvas.polyline``): as many pixels lit as OpenCV's own 2-pixel line, within a
    quarter, flat, steep and diagonal."""
    for points in ([[20, 120], [300, 120]], [[160, 10], [160, 230]], [[20, 10], [240, 230]]):
        line = np.array(points, dtype=np.int32)
        canvas = I420Canvas(WIDTH, HEIGHT)
        canvas.fill((0, 0, 0))
        black_y = int(canvas.y[0, 0])
        canvas.polyline(line, (255, 255, 255), thickness=2)
        ours = int((canvas.y.astype(int) - black_y > 60).sum())
        reference = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
        cv2.polylines(reference, [line], False, 255, 2, cv2.LINE_AA)
        theirs = int((reference > 60).sum())
        assert 0.75 * theirs <= ours <= 1.25 * theirs, (points, ours, theirs)
