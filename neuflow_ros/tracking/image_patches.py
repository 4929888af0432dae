"""Small square patches of an image around many points at once, and bilinear samples.

The tracker looks at a few hundred small windows per frame (Lucas-Kanade
corrections, photometric residuals, corner placement). One flat `take` per
call gathers them all: with precomputed flat indices it is about 5x faster
than numpy's broadcast fancy indexing on 300 13x13 patches, and a Python loop
over points would cost more than the arithmetic.
"""

from __future__ import annotations

import numpy as np


def gather_patches(image: np.ndarray, origins: np.ndarray, span: np.ndarray) -> np.ndarray:
    """Pixels at `origins` (N, 2) integer x, y plus `span` (S,) along each axis -> (N, S, S).

    Rows and columns beyond the image repeat its edge.
    """
    height, width = image.shape[:2]
    rows = (origins[:, 1, None] + span).clip(0, height - 1)
    cols = (origins[:, 0, None] + span).clip(0, width - 1)
    flat = image.reshape(height * width)
    return flat.take(rows[:, :, None] * width + cols[:, None, :])


def bilinear_patches(image: np.ndarray, corners: np.ndarray, window: int) -> np.ndarray:
    """`window`-square float32 patches whose top-left sample sits at sub-pixel `corners` (N, 2).

    All samples of a patch share one sub-pixel fraction, so one gather of a
    (window+1)-square integer patch and four weights per patch interpolate
    it; pixel centres are at integer coordinates.
    """
    origin = np.floor(corners)
    fraction = (corners - origin).astype(np.float32)
    grid = gather_patches(image, origin.astype(np.intp), np.arange(window + 1)).astype(np.float32)
    fx = fraction[:, 0, None, None]
    fy = fraction[:, 1, None, None]
    left, right = grid[:, :, :-1], grid[:, :, 1:]
    across = left + (right - left) * fx
    return across[:, :-1] + (across[:, 1:] - across[:, :-1]) * fy


def sample_bilinear(field: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinearly interpolate an (H, W, C) field at sub-pixel (x, y) points -> (N, C) float64.

    Pixel centres sit at integer coordinates (the OpenCV convention). Written
    in numpy rather than cv2.remap because remap quantises sub-pixel weights
    to 1/32 px, which would bias long tracks. Points beyond the last pixel
    pair extrapolate from it.
    """
    height, width = field.shape[:2]
    flat = np.ascontiguousarray(field).reshape(height * width, -1)
    channels = flat.shape[1]
    x = points[:, 0]
    y = points[:, 1]
    x0 = np.clip(np.floor(x), 0, width - 2)
    y0 = np.clip(np.floor(y), 0, height - 2)
    wx = (x - x0)[:, None]
    wy = (y - y0)[:, None]
    index = (y0 * width + x0).astype(np.intp)
    corners = np.stack([index, index + 1, index + width, index + width + 1])
    # Each pixel's channels as one opaque item, so one flat `take` gathers
    # whole pixels (about 2x faster than indexing rows of the 2-D view).
    pixels = flat.view(np.dtype((np.void, flat.dtype.itemsize * channels))).reshape(-1)
    values = pixels.take(corners).view(flat.dtype).reshape(4, -1, channels).astype(np.float64)
    top = values[0] + (values[1] - values[0]) * wx
    bottom = values[2] + (values[3] - values[2]) * wx
    return top + (bottom - top) * wy
