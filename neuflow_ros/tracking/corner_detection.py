"""Shi-Tomasi corner detection that only fills the gaps between live tracks.

A tracker keeps its old features as long as they survive (long tracks are
what make visual odometry accurate), so new corners are only wanted where the
image has no feature yet: a disc of `min_distance` around every live track
and a band of `border_margin` along the edges are masked out before
detecting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class CornerDetectorConfig:
    """Parameters of cv2.goodFeaturesToTrack plus the masking rules."""

    quality_level: float
    min_distance: float
    block_size: int
    border_margin: float


def detection_mask(
    shape: tuple[int, int], existing: np.ndarray, min_distance: float, border_margin: float
) -> np.ndarray:
    """uint8 mask (255 = may detect) that excludes the border band and live-track discs."""
    height, width = shape
    mask = np.zeros((height, width), dtype=np.uint8)
    first = math.ceil(border_margin)
    last_x = math.floor(width - 1 - border_margin)
    last_y = math.floor(height - 1 - border_margin)
    if last_x < first or last_y < first:
        return mask
    mask[first : last_y + 1, first : last_x + 1] = 255
    radius = max(math.ceil(min_distance), 1)
    for x, y in np.rint(existing).astype(np.int64):
        cv2.circle(mask, (int(x), int(y)), radius, 0, thickness=-1)
    return mask


def detect_corners(
    gray: np.ndarray, max_corners: int, existing: np.ndarray, config: CornerDetectorConfig
) -> np.ndarray:
    """Up to `max_corners` new corners (N, 2) float64 away from `existing` (M, 2) positions.

    The strongest corners win, and new corners keep `min_distance` from each
    other and from existing tracks, which spreads features over the image.
    """
    if max_corners <= 0:
        return np.empty((0, 2), dtype=np.float64)
    mask = detection_mask(gray.shape, existing, config.min_distance, config.border_margin)
    if not mask.any():
        return np.empty((0, 2), dtype=np.float64)
    corners = cv2.goodFeaturesToTrack(
        gray,
        maxCorners=max_corners,
        qualityLevel=config.quality_level,
        minDistance=config.min_distance,
        mask=mask,
        blockSize=config.block_size,
    )
    if corners is None:
        return np.empty((0, 2), dtype=np.float64)
    return corners.reshape(-1, 2).astype(np.float64)
