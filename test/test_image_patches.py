"""Patch gathering and bilinear sampling against per-point definitions written out in the test.

The tracker's patch helpers gather hundreds of windows with one flat index;
each expectation here is computed point by point from the pixel definition
(nearest pixel inside the image, bilinear weights of the four neighbours),
so an indexing slip in the vectorised code shows as a mismatch.
"""

from __future__ import annotations

import numpy as np
import pytest

from neuflow_ros.tracking.image_patches import bilinear_patches, gather_patches, sample_bilinear

HEIGHT, WIDTH = 23, 31


def ramp_image(channels: int | None = None) -> np.ndarray:
    """Distinct values everywhere, so a pixel read from the wrong place shows."""
    rng = np.random.default_rng(5)
    shape = (HEIGHT, WIDTH) if channels is None else (HEIGHT, WIDTH, channels)
    return rng.uniform(0.0, 255.0, shape).astype(np.float32)


def bilinear_at(image: np.ndarray, x: float, y: float) -> np.ndarray:
    """Written out for one point: the four neighbours of (x, y), clamped to the last pixel pair."""
    x0 = min(max(int(np.floor(x)), 0), image.shape[1] - 2)
    y0 = min(max(int(np.floor(y)), 0), image.shape[0] - 2)
    fx, fy = x - x0, y - y0
    return ((1 - fx) * (1 - fy) * image[y0, x0].astype(np.float64)
            + fx * (1 - fy) * image[y0, x0 + 1] + (1 - fx) * fy * image[y0 + 1, x0]
            + fx * fy * image[y0 + 1, x0 + 1])


def test_gather_patches_reads_each_pixel_and_repeats_the_edge_outside() -> None:
    image = ramp_image()
    origins = np.array([[5, 7], [0, 0], [WIDTH - 1, HEIGHT - 1], [12, 3]])
    span = np.arange(-2, 3)
    patches = gather_patches(image, origins, span)
    assert patches.shape == (4, 5, 5)
    for patch, (x, y) in zip(patches, origins, strict=True):
        for i, dy in enumerate(span):
            for j, dx in enumerate(span):
                row = min(max(y + dy, 0), HEIGHT - 1)
                col = min(max(x + dx, 0), WIDTH - 1)
                assert patch[i, j] == image[row, col]


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_sample_bilinear_matches_the_four_neighbour_formula(channels: int) -> None:
    field = ramp_image(channels)
    rng = np.random.default_rng(1)
    points = np.column_stack(
        [rng.uniform(0.0, WIDTH - 1.0, 50), rng.uniform(0.0, HEIGHT - 1.0, 50)]
    )
    # Whole pixels, the last row and column, and a point beyond them.
    points = np.vstack([points, [[3.0, 4.0], [WIDTH - 1.0, HEIGHT - 1.0], [WIDTH - 0.5, 2.25]]])
    sampled = sample_bilinear(field, points)
    expected = np.array([bilinear_at(field, x, y) for x, y in points])
    np.testing.assert_allclose(sampled, expected, rtol=1e-12, atol=1e-9)


def test_sample_bilinear_reads_a_non_contiguous_field() -> None:
    both = ramp_image(4)
    field = both[:, :, 1:3]
    points = np.array([[2.5, 3.25], [10.75, 20.5]])
    expected = np.array([bilinear_at(field, x, y) for x, y in points])
    np.testing.assert_allclose(sample_bilinear(field, points), expected, rtol=1e-12)


def test_bilinear_patches_sample_every_window_pixel_at_the_shared_fraction() -> None:
    image = ramp_image()
    corners = np.array([[3.25, 4.5], [10.0, 2.75], [20.6, 12.1]])
    window = 4
    patches = bilinear_patches(image, corners, window)
    assert patches.shape == (3, window, window)
    for patch, (x, y) in zip(patches, corners, strict=True):
        for i in range(window):
            for j in range(window):
                np.testing.assert_allclose(patch[i, j], bilinear_at(image, x + j, y + i),
                                           rtol=1e-5)
