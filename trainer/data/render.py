"""Drawing scenes into pixels and per-pixel label maps, vectorised with numpy.

All objects of one shape and one layer (k-th object of its scene) are drawn in one array
operation, so a few thousand 32 px images take a fraction of a second. Shapes are
anti-aliased by 2x2 supersampling, which keeps a 8 px triangle distinguishable from a diamond;
label maps mark a pixel with an object when it covers at least half of that pixel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from trainer.data.scenes import COLOUR_RGB, COLOURS, EXTENT, RADIUS, RADIUS_JITTER, SHAPES, Scene

SUPERSAMPLE = 2
IMAGE_CHUNK = 2048
"""Images rendered at once (bounds the float32 working buffer)."""
BACKGROUND_MAX = 40
COLOUR_JITTER = 14

MaskFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _circle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u * u + v * v <= 1.0


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8)


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Apex up: zero width at v = -0.9, full width 1.0 at v = +0.8 (image y grows downwards).
    return (v >= -0.9) & (v <= 0.8) & (np.abs(u) <= (v + 0.9) / 1.7)


def _diamond(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.abs(u) + np.abs(v) <= 1.0


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    au, av = np.abs(u), np.abs(v)
    return ((au <= 0.32) & (av <= 1.0)) | ((av <= 0.32) & (au <= 1.0))


def _ring(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    d = u * u + v * v
    return (d <= 1.0) & (d >= 0.5 * 0.5)


MASKS: dict[str, MaskFn] = {
    "circle": _circle, "square": _square, "triangle": _triangle,
    "diamond": _diamond, "cross": _cross, "ring": _ring,
}
assert tuple(MASKS) == SHAPES
RGB = np.array([COLOUR_RGB[c] for c in COLOURS], dtype=np.float32)


def render(
    scenes: Sequence[Scene], size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, 3, size, size]`` uint8 and label maps ``[N, 2, size, size]`` uint8.

    Label channel 0 is shape index + 1 and channel 1 colour index + 1 (0 = background).
    ``rng`` draws the background shade and a small per-object colour jitter; it is consumed
    in image order, so the first k images do not depend on how many follow.
    """
    n = len(scenes)
    # Two sub-streams, each consumed in image order, keep the first k images independent of n.
    jitter_rng = np.random.default_rng(int(rng.integers(2**62)))
    shade = rng.integers(0, BACKGROUND_MAX + 1, size=n).astype(np.float32)
    counts = np.array([len(s) for s in scenes], dtype=np.int64)
    jitter = jitter_rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=(int(counts.sum()), 3))
    images = np.empty((n, 3, size, size), dtype=np.uint8)
    labels = np.zeros((n, 2, size, size), dtype=np.uint8)
    rows = [(i, k, o) for i, s in enumerate(scenes) for k, o in enumerate(s)]
    table = np.array(
        [(i, k, o.shape, o.colour, o.x, o.y, o.r) for i, k, o in rows], dtype=np.float64
    ).reshape(-1, 7)
    # Each object is drawn inside a square window just big enough for the largest object,
    # which is 3-4x fewer pixels than the whole image.
    win = min(size, int(np.ceil(2 * EXTENT * max(RADIUS) * (1 + RADIUS_JITTER) * size)) + 2)
    sub = (np.arange(win * SUPERSAMPLE, dtype=np.float32) + 0.5) / SUPERSAMPLE  # window px
    ar = np.arange(win)
    for lo in range(0, n, IMAGE_CHUNK):
        hi = min(n, lo + IMAGE_CHUNK)
        canvas = np.empty((hi - lo, size, size, 3), dtype=np.float32)
        canvas[:] = shade[lo:hi, None, None, None]
        lab = np.zeros((hi - lo, 2, size, size), dtype=np.uint8)
        sel = (table[:, 0] >= lo) & (table[:, 0] < hi)
        for shape_id, shape in enumerate(SHAPES):
            for layer in range(int(counts.max(initial=0))):
                pick = np.nonzero(sel & (table[:, 2] == shape_id) & (table[:, 1] == layer))[0]
                if len(pick) == 0:
                    continue
                t = table[pick]
                img = t[:, 0].astype(np.int64) - lo
                x, y, r = (t[:, k] * size for k in (4, 5, 6))  # in pixels
                x0 = np.clip(np.floor(x - win / 2).astype(np.int64), 0, size - win)
                y0 = np.clip(np.floor(y - win / 2).astype(np.int64), 0, size - win)
                rr = r.astype(np.float32)[:, None, None]
                u = (sub[None, None, :] + x0[:, None, None] - x[:, None, None]) / rr
                v = (sub[None, :, None] + y0[:, None, None] - y[:, None, None]) / rr
                m = MASKS[shape](u.astype(np.float32), v.astype(np.float32))
                cover = np.zeros((len(pick), win, win), dtype=np.float32)
                for dy in range(SUPERSAMPLE):
                    for dx in range(SUPERSAMPLE):
                        cover += m[:, dy::SUPERSAMPLE, dx::SUPERSAMPLE]
                cover *= 1.0 / SUPERSAMPLE**2
                colour = t[:, 3].astype(np.int64)
                rgb = np.clip(RGB[colour] + jitter[pick], 0, 255)[:, None, None, :]
                ii = img[:, None, None]
                yy = y0[:, None, None] + ar[None, :, None]
                xx = x0[:, None, None] + ar[None, None, :]
                c = cover[..., None]
                canvas[ii, yy, xx] = canvas[ii, yy, xx] * (1.0 - c) + rgb * c
                on = cover >= 0.5
                lab[ii, 0, yy, xx] = np.where(on, shape_id + 1, lab[ii, 0, yy, xx])
                lab[ii, 1, yy, xx] = np.where(on, colour[:, None, None] + 1, lab[ii, 1, yy, xx])
        images[lo:hi] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8).transpose(0, 3, 1, 2)
        labels[lo:hi] = lab
    return images, labels
