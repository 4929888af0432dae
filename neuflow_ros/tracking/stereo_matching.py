"""Right-image matches for left feature tracks, from one left->right flow and its reverse.

A stereo VIO back end (VINS-Fusion's stereo configurations) wants, for each
left feature id, the same feature's observation in the right camera. The
flow network already gives a dense left->right correspondence for the
pair's stamp; a match is trusted only when the right->left flow leads back
to the left track (an occluded or textureless point rarely does) and when,
in the rectified geometry, it lies on the left point's row at a positive
disparity. ROS-free; the node only turns the arrays into messages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from neuflow_ros.tracking.image_patches import sample_bilinear
from neuflow_ros.tracking.stereo_geometry import StereoRig
from neuflow_ros.tracking.tracker import TrackSet, lucas_kanade

STEREO_REJECTION_REASONS = ("non_finite", "outside", "consistency", "epipolar", "disparity")

# One coarser level lets LK recover from a left-right prediction a few pixels
# off. The stereo numbers in the README were measured with it; the tracker
# dropped its coarser level for speed, the stereo matching was not re-measured.
_MATCH_PYRAMID_LEVELS = 1


@dataclass(frozen=True)
class StereoMatchConfig:
    """Thresholds of the two checks, in pixels (raw pixels for consistency, rectified for rows).

    ``refine``: polish each flow match with Lucas-Kanade on the left feature's
    ``refine_window`` patch in the right image, as the tracker does in time:
    dense flow is smoothed across the patch and off by tenths of a pixel,
    which a disparity (depth) cannot afford. A correction above
    ``refine_max_correction`` keeps the flow's match.
    """

    epipolar_threshold: float = 1.0
    consistency_threshold: float = 1.0
    refine: bool = True
    refine_window: int = 15
    refine_max_correction: float = 2.0

    def __post_init__(self) -> None:
        for name in ("epipolar_threshold", "consistency_threshold", "refine_max_correction"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name} must be finite and > 0, got {value!r}")


@dataclass(frozen=True)
class PointMatches:
    """Right positions of N left points; NaN rows where no trustworthy match exists."""

    right_positions: np.ndarray  # (N, 2) float64 raw right pixels
    disparities: np.ndarray  # (N,) float64 rectified x_left - x_right
    rejections: dict[str, int]  # points rejected per reason

    @property
    def matched(self) -> np.ndarray:
        return np.all(np.isfinite(self.right_positions), axis=1)


def match_points(
    left_positions: np.ndarray,
    left_to_right: np.ndarray,
    right_to_left: np.ndarray,
    rig: StereoRig,
    config: StereoMatchConfig,
    images: tuple[np.ndarray, np.ndarray] | None = None,
) -> PointMatches:
    """Follow the left->right flow from each left point and keep the matches that pass.

    Both flows are (H, W, 2) on the image grid, vectors in pixels. With
    ``images`` (left, right uint8 gray) and ``config.refine`` each match is
    refined by Lucas-Kanade; the consistency check then judges the flow's
    own round trip, as the tracker's forward-backward check does. Checks,
    in order, each counted under its reason: finite flow; the right position
    inside the right image (by half a refinement window when refining);
    right->left flow returning within ``consistency_threshold`` of the left
    point; rows within ``epipolar_threshold`` after rectification; positive
    disparity.
    """
    points = np.asarray(left_positions, dtype=np.float64).reshape(-1, 2)
    count = points.shape[0]
    rejections = dict.fromkeys(STEREO_REJECTION_REASONS, 0)
    predicted = points + sample_bilinear(left_to_right, points) if count else points.copy()
    alive = np.all(np.isfinite(predicted), axis=1)
    rejections["non_finite"] += int(np.count_nonzero(~alive))

    # A refinement window reaching past the border sees padding, not texture, and
    # locks onto it: refined matches keep the window inside the right image.
    refine = images is not None and config.refine
    margin = config.refine_window // 2 + 1 if refine else 0
    height, width = left_to_right.shape[:2]
    inside = np.zeros(count, dtype=bool)
    inside[alive] = (
        (predicted[alive, 0] >= margin) & (predicted[alive, 0] <= width - 1 - margin)
        & (predicted[alive, 1] >= margin) & (predicted[alive, 1] <= height - 1 - margin)
    )
    rejections["outside"] += int(np.count_nonzero(alive & ~inside))
    alive &= inside
    right = predicted.copy()
    if refine and np.any(alive):
        right[alive] = _refine(images, points[alive], predicted[alive], config)

    candidates = np.flatnonzero(alive)
    # The flow's own round trip (forward vector at the left point, backward at the
    # refined match): a refinement that fixes a smoothed flow is no inconsistency.
    returned = predicted[candidates] + sample_bilinear(right_to_left, right[candidates])
    consistent = np.linalg.norm(returned - points[candidates], axis=1) <= (
        config.consistency_threshold
    )
    rejections["consistency"] += int(np.count_nonzero(~consistent))
    alive[candidates[~consistent]] = False

    disparities = np.full(count, np.nan)
    candidates = np.flatnonzero(alive)
    disparity, row_difference = rig.disparity(points[candidates], right[candidates])
    on_row = row_difference <= config.epipolar_threshold
    positive = disparity > 0.0
    rejections["epipolar"] += int(np.count_nonzero(~on_row))
    rejections["disparity"] += int(np.count_nonzero(on_row & ~positive))
    alive[candidates[~(on_row & positive)]] = False
    disparities[candidates] = disparity

    right[~alive] = np.nan
    disparities[~alive] = np.nan
    return PointMatches(right, disparities, rejections)


def _refine(
    images: tuple[np.ndarray, np.ndarray], points: np.ndarray, predicted: np.ndarray,
    config: StereoMatchConfig,
) -> np.ndarray:
    """Lucas-Kanade matches started at ``predicted``; the prediction where LK fails or jumps."""
    left, right = images
    tracked, found, _ = lucas_kanade(
        left, right, points, predicted, config.refine_window, _MATCH_PYRAMID_LEVELS
    )
    accepted = found & (
        np.linalg.norm(tracked - predicted, axis=1) <= config.refine_max_correction
    )
    return np.where(accepted[:, None], tracked, predicted)


def dense_disparity(
    left_to_right: np.ndarray, right_to_left: np.ndarray, rig: StereoRig,
    config: StereoMatchConfig,
) -> np.ndarray:
    """Rectified disparity for every left-image pixel, (H, W) float32, NaN where refused.

    The grid is the LEFT RAW image's (what the flow is on), not the rectified
    image's: each pixel holds x_left - x_right of its match after both ends are
    rectified, so raw and rectified inputs give depth = f * baseline / value
    alike. Every pixel passes the checks of match_points (without the
    Lucas-Kanade step); the flow is read at whole pixels and the reverse flow
    with cv2.remap (1/32 px steps, far below the consistency threshold), which
    keeps a 640x480 image to a few tens of milliseconds.
    """
    height, width = left_to_right.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    right_x = xs + left_to_right[..., 0]
    right_y = ys + left_to_right[..., 1]
    # Replicated border: a match on the last row or column still reads its own values
    # (positions outside the image are refused by ``inside``).
    returned = cv2.remap(right_to_left.astype(np.float32), right_x, right_y, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    inside = (right_x >= 0) & (right_x <= width - 1) & (right_y >= 0) & (right_y <= height - 1)
    error = np.hypot(left_to_right[..., 0] + returned[..., 0],
                     left_to_right[..., 1] + returned[..., 1])
    keep = inside & (error <= config.consistency_threshold)
    left = np.stack([xs[keep], ys[keep]], axis=1)
    right = np.stack([right_x[keep], right_y[keep]], axis=1)
    disparity, row_difference = rig.disparity(left, right)
    valid = (row_difference <= config.epipolar_threshold) & (disparity > 0.0)
    result = np.full((height, width), np.nan, dtype=np.float32)
    result[keep] = np.where(valid, disparity, np.nan)
    return result


@dataclass(frozen=True)
class TrackMatches:
    """The right observation of each track of a TrackSet, row for row; NaN = no match."""

    positions: np.ndarray  # (N, 2) float32 raw right pixels
    normalized: np.ndarray  # (N, 2) float32 undistorted right (x/z, y/z), unrectified
    velocities: np.ndarray  # (N, 2) float32 normalized units per second; 0 when first matched
    disparities: np.ndarray  # (N,) float32 rectified pixels
    rejections: dict[str, int]

    @property
    def matched(self) -> np.ndarray:
        return np.all(np.isfinite(self.positions), axis=1)

    @classmethod
    def unmatched(cls, count: int) -> TrackMatches:
        """No match for any of ``count`` tracks (stereo off for this frame)."""
        nan2 = np.full((count, 2), np.nan, dtype=np.float32)
        return cls(nan2, nan2.copy(), nan2.copy(), np.full(count, np.nan, dtype=np.float32),
                   dict.fromkeys(STEREO_REJECTION_REASONS, 0))


class StereoTrackMatcher:
    """Right matches for one left camera's tracks, frame by frame.

    Keeps each id's last right observation so that the right velocity comes
    from the same feature's previous right position, as VINS-Fusion computes
    it for its own stereo tracks; a track seen in the right image for the
    first time (or again after a gap) gets velocity 0.
    """

    def __init__(self, config: StereoMatchConfig) -> None:
        self._config = config
        self.reset()

    def reset(self) -> None:
        """Forget previous right observations (a stream restart, a calibration change)."""
        self._ids = np.empty(0, dtype=np.uint64)
        self._normalized = np.empty((0, 2), dtype=np.float64)
        self._stamp: float | None = None

    def match(
        self, tracks: TrackSet, left_to_right: np.ndarray, right_to_left: np.ndarray,
        rig: StereoRig, images: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> TrackMatches:
        """``images``: (left, right) uint8 gray of the pair, for the Lucas-Kanade refinement."""
        points = match_points(
            tracks.positions, left_to_right, right_to_left, rig, self._config, images
        )
        matched = points.matched
        normalized = np.full((len(tracks), 2), np.nan)
        normalized[matched] = rig.right.undistort_normalized(points.right_positions[matched])
        velocities = np.zeros((len(tracks), 2))
        velocities[~matched] = np.nan
        seen_before = matched & np.isin(tracks.ids, self._ids)
        if np.any(seen_before) and self._stamp is not None and tracks.stamp > self._stamp:
            order = np.argsort(self._ids)
            rows = order[np.searchsorted(self._ids, tracks.ids[seen_before], sorter=order)]
            velocities[seen_before] = (
                (normalized[seen_before] - self._normalized[rows]) / (tracks.stamp - self._stamp)
            )
        self._ids = tracks.ids[matched].copy()
        self._normalized = normalized[matched]
        self._stamp = tracks.stamp
        return TrackMatches(
            points.right_positions.astype(np.float32), normalized.astype(np.float32),
            velocities.astype(np.float32), points.disparities.astype(np.float32),
            points.rejections,
        )
