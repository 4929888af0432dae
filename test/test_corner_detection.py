"""The corner search: candidates from the half-resolution image, placed on full-resolution pixels.

The expected responses come from OpenCV's own cv2.cornerMinEigenVal on the
whole image, computed in the test; the distances are measured exactly.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from neuflow_ros.tracking.corner_detection import (
    CornerDetectorConfig,
    detect_corners,
    place_on_full_resolution,
)

WIDTH, HEIGHT = 752, 480


def texture(shape: tuple[int, int], seed: int = 2, sigma: float = 1.5) -> np.ndarray:
    noise = np.random.default_rng(seed).random(shape).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), sigma)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (smooth * 255.0).astype(np.uint8)


def config(**overrides: float) -> CornerDetectorConfig:
    values = {"quality_level": 0.01, "min_distance": 20.0, "block_size": 3,
              "border_margin": 4.0, "tile_size": 192}
    return CornerDetectorConfig(**{**values, **overrides})


def distances(points: np.ndarray, others: np.ndarray) -> np.ndarray:
    return np.linalg.norm(points[:, None, :] - others[None, :, :], axis=2)


@pytest.mark.parametrize("block_size", [3, 5])
def test_placement_picks_opencvs_strongest_pixel_of_each_3x3_neighbourhood(block_size: int) -> None:
    gray = texture((HEIGHT, WIDTH))
    response = cv2.cornerMinEigenVal(gray, block_size, 3)
    rng = np.random.default_rng(0)
    centres = np.column_stack(
        [rng.integers(10, WIDTH - 10, 200), rng.integers(10, HEIGHT - 10, 200)]
    )
    positions, responses = place_on_full_resolution(gray, centres, block_size)
    for (x, y), (px, py), value in zip(centres, positions, responses, strict=True):
        window = response[y - 1 : y + 2, x - 1 : x + 2]
        assert abs(px - x) <= 1 and abs(py - y) <= 1
        assert response[py, px] == window.max()
        assert value == pytest.approx(response[py, px], rel=1e-5)


def test_new_corners_are_exactly_min_distance_apart_and_off_live_tracks() -> None:
    gray = texture((HEIGHT, WIDTH))
    rng = np.random.default_rng(3)
    existing = np.column_stack([rng.uniform(0, WIDTH, 150), rng.uniform(0, HEIGHT, 150)])
    settings = config()
    corners = detect_corners(gray, 200, existing, settings)
    assert corners.shape[0] > 100
    assert distances(corners, existing).min() >= settings.min_distance
    between = distances(corners, corners)[np.triu_indices(corners.shape[0], k=1)]
    assert between.min() >= settings.min_distance
    margin = settings.border_margin
    assert corners[:, 0].min() >= margin and corners[:, 0].max() <= WIDTH - 1 - margin
    assert corners[:, 1].min() >= margin and corners[:, 1].max() <= HEIGHT - 1 - margin


def test_a_small_image_is_searched_at_full_resolution_for_local_maxima() -> None:
    gray = texture((240, 320))
    response = cv2.cornerMinEigenVal(gray, 3, 3)
    corners = detect_corners(gray, 300, np.empty((0, 2)), config()).astype(int)
    assert corners.shape[0] > 0
    for x, y in corners:
        assert response[y, x] == response[y - 1 : y + 2, x - 1 : x + 2].max()


def test_fills_the_request_on_texture_and_returns_nothing_on_a_flat_image() -> None:
    corners = detect_corners(texture((HEIGHT, WIDTH)), 300, np.empty((0, 2)), config())
    assert corners.shape[0] == 300
    flat = np.full((HEIGHT, WIDTH), 128, dtype=np.uint8)
    assert detect_corners(flat, 300, np.empty((0, 2)), config()).shape == (0, 2)
