"""A VINS-Fusion style KLT front end: the tracker neuflow_ros's tracks must beat.

A VIO/SLAM front end that does not get neuflow_ros tracks runs this instead
(VINS-Fusion's feature_tracker.cpp): pyramidal Lucas-Kanade from the previous
frame, a Lucas-Kanade round trip back as forward-backward check, a
fundamental-matrix RANSAC, then Shi-Tomasi corners wherever the mask around
the surviving tracks (oldest tracks first) leaves room. Written here so that
both trackers are timed on the same frames in one process.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_MIN_RANSAC_TRACKS = 8


@dataclass(frozen=True)
class KltConfig:
    """The settings the issue fixes for the comparison (VINS-Fusion's defaults, 1 px checks)."""

    max_tracks: int = 300
    min_distance: int = 20
    quality_level: float = 0.01
    window: int = 21
    pyramid_levels: int = 3
    fb_threshold: float = 1.0
    ransac_threshold: float = 1.0
    ransac_confidence: float = 0.99
    border: int = 1


class KltFrontEnd:
    """Feature tracks with persistent ids from Lucas-Kanade alone; one camera."""

    def __init__(self, config: KltConfig | None = None) -> None:
        self.config = config or KltConfig()
        self._previous: np.ndarray | None = None
        self._points = np.empty((0, 2), dtype=np.float32)
        self._origins = np.empty((0, 2), dtype=np.float32)
        self._ids = np.empty(0, dtype=np.int64)
        self._ages = np.empty(0, dtype=np.int64)
        self._next_id = 0

    @property
    def ids(self) -> np.ndarray:
        return self._ids

    @property
    def ages(self) -> np.ndarray:
        return self._ages

    @property
    def points(self) -> np.ndarray:
        return self._points

    @property
    def origins(self) -> np.ndarray:
        """Each track's position in the previous frame (its own position when new)."""
        return self._origins

    def update(self, gray: np.ndarray) -> None:
        """Track into `gray`, then replenish."""
        self._origins = self._points
        if self._previous is not None and self._points.shape[0] > 0:
            self._track(self._previous, gray)
        self._detect(gray)
        self._previous = gray

    def _track(self, previous: np.ndarray, gray: np.ndarray) -> None:
        config = self.config
        window = (config.window, config.window)
        start = self._points.reshape(-1, 1, 2)
        moved, status, _ = cv2.calcOpticalFlowPyrLK(
            previous, gray, start, None, winSize=window, maxLevel=config.pyramid_levels
        )
        back, back_status, _ = cv2.calcOpticalFlowPyrLK(
            gray, previous, moved, start.copy(), winSize=window, maxLevel=1,
            flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
        )
        moved = moved.reshape(-1, 2)
        round_trip = np.linalg.norm(back.reshape(-1, 2) - self._points, axis=1)
        height, width = gray.shape
        inside = (
            (moved[:, 0] >= config.border) & (moved[:, 0] < width - config.border)
            & (moved[:, 1] >= config.border) & (moved[:, 1] < height - config.border)
        )
        keep = (
            status.reshape(-1).astype(bool) & back_status.reshape(-1).astype(bool)
            & (round_trip <= config.fb_threshold) & inside
        )
        index = np.flatnonzero(keep)
        if index.size >= _MIN_RANSAC_TRACKS:
            _, mask = cv2.findFundamentalMat(
                self._points[index], moved[index], cv2.FM_RANSAC,
                config.ransac_threshold, config.ransac_confidence,
            )
            if mask is not None:
                index = index[mask.reshape(-1).astype(bool)]
        self._origins = self._points[index]
        self._points = moved[index]
        self._ids = self._ids[index]
        self._ages = self._ages[index] + 1

    def _detect(self, gray: np.ndarray) -> None:
        """VINS-Fusion's setMask + goodFeaturesToTrack: old tracks claim their disc first."""
        config = self.config
        mask = np.full(gray.shape, 255, dtype=np.uint8)
        order = np.argsort(-self._ages, kind="stable")
        pixels = np.rint(self._points).astype(np.int64).tolist()
        kept = []
        for i in order.tolist():
            x, y = pixels[i]
            if mask[y, x] == 255:
                kept.append(i)
                cv2.circle(mask, (x, y), config.min_distance, 0, -1)
        kept = np.asarray(kept, dtype=np.intp)
        self._points, self._origins = self._points[kept], self._origins[kept]
        self._ids, self._ages = self._ids[kept], self._ages[kept]
        missing = config.max_tracks - kept.size
        if missing <= 0:
            return
        corners = cv2.goodFeaturesToTrack(
            gray, missing, config.quality_level, config.min_distance, mask=mask
        )
        if corners is None:
            return
        corners = corners.reshape(-1, 2).astype(np.float32)
        count = corners.shape[0]
        self._points = np.concatenate([self._points, corners])
        self._origins = np.concatenate([self._origins, corners])
        self._ids = np.concatenate([self._ids, np.arange(self._next_id, self._next_id + count)])
        self._ages = np.concatenate([self._ages, np.ones(count, dtype=np.int64)])
        self._next_id += count
