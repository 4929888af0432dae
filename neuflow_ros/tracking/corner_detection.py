"""Shi-Tomasi corner detection that only fills the gaps between live tracks.

A tracker keeps its old features as long as they survive (long tracks are
what make visual odometry accurate), so new corners are only wanted where the
image has no feature yet: a disc of `min_distance` around every live track
and a band of `border_margin` along the edges are masked out before
detecting.

Detection runs tile by tile (`tile_size`) and skips tiles with no free
pixel. Besides not looking where tracks already are, this is much faster
than one call on the whole image: OpenCV's corner response of a 752x480
image works on float buffers of several MB, which miss the cache and which
glibc hands back to the OS after each call, so every call page-faults them
afresh (with glibc's trim and mmap thresholds raised, one whole-image call
took 1.0 ms instead of 3.9-7.6 ms here); measured per pixel, the whole image
was 5-12x slower than 188x160 tiles. Tiles overlap by the response's
support, so every pixel's response is the one the whole image would give;
corners found in one tile mask their disc before the next tile is searched,
so `min_distance` holds across tile seams.
"""

from __future__ import annotations

import itertools
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
    tile_size: int


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


def detection_tiles(shape: tuple[int, int], tile_size: int) -> list[tuple[slice, slice]]:
    """(rows, cols) slices of a grid of about `tile_size` pixel tiles covering the image."""
    height, width = shape
    row_edges = np.linspace(0, height, max(round(height / tile_size), 1) + 1).astype(int)
    col_edges = np.linspace(0, width, max(round(width / tile_size), 1) + 1).astype(int)
    return [
        (slice(top, bottom), slice(left, right))
        for top, bottom in itertools.pairwise(row_edges.tolist())
        for left, right in itertools.pairwise(col_edges.tolist())
    ]


def detect_corners(
    gray: np.ndarray, max_corners: int, existing: np.ndarray, config: CornerDetectorConfig
) -> np.ndarray:
    """Up to `max_corners` new corners (N, 2) float64 away from `existing` (M, 2) positions.

    The strongest corners of each tile win, and new corners keep
    `min_distance` from each other and from existing tracks, which spreads
    features over the image. Each tile takes a share of the corners still
    missing in proportion to its free area, the freest tiles first; a share
    that rounds to zero skips the tile (a few missing corners cost a few tile
    searches, not all of them), and what a tile could not fill passes on to
    the next.
    """
    if max_corners <= 0:
        return np.empty((0, 2), dtype=np.float64)
    mask = detection_mask(gray.shape, existing, config.min_distance, config.border_margin)
    tiles = detection_tiles(gray.shape, config.tile_size)
    free = [cv2.countNonZero(mask[rows, cols]) for rows, cols in tiles]
    free_left = sum(free)
    radius = max(math.ceil(config.min_distance), 1)
    found = [np.empty((0, 2), dtype=np.float64)]
    missing = max_corners
    for index in np.argsort(free, kind="stable")[::-1].tolist():
        if missing <= 0 or free[index] == 0:
            break
        share = round(missing * free[index] / free_left)
        free_left -= free[index]
        if share == 0:
            continue
        corners = _detect_in_tile(gray, mask, tiles[index], share, config)
        for x, y in np.rint(corners).astype(np.int64).tolist():
            cv2.circle(mask, (x, y), radius, 0, thickness=-1)
        found.append(corners)
        missing -= corners.shape[0]
    return np.concatenate(found)


def _detect_in_tile(
    gray: np.ndarray, mask: np.ndarray, tile: tuple[slice, slice], max_corners: int,
    config: CornerDetectorConfig,
) -> np.ndarray:
    """goodFeaturesToTrack on one tile, computed on the tile plus the response's support."""
    rows, cols = tile
    height, width = gray.shape
    # Sobel aperture 3 plus the block: beyond this the response ignores the pixels.
    support = config.block_size // 2 + 2
    top, left = max(rows.start - support, 0), max(cols.start - support, 0)
    bottom, right = min(rows.stop + support, height), min(cols.stop + support, width)
    tile_mask = np.zeros((bottom - top, right - left), dtype=np.uint8)
    tile_mask[rows.start - top : rows.stop - top, cols.start - left : cols.stop - left] = mask[
        rows, cols
    ]
    corners = cv2.goodFeaturesToTrack(
        gray[top:bottom, left:right],
        maxCorners=max_corners,
        qualityLevel=config.quality_level,
        minDistance=config.min_distance,
        mask=tile_mask,
        blockSize=config.block_size,
    )
    if corners is None:
        return np.empty((0, 2), dtype=np.float64)
    return corners.reshape(-1, 2).astype(np.float64) + np.array([left, top], dtype=np.float64)
