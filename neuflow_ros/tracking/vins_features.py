"""A TrackSet in the layout of VINS-Fusion's feature topic, as plain arrays.

VINS-Fusion's estimator can take features from an external front end on a
sensor_msgs/PointCloud: one point per feature holding its undistorted
normalized coordinates (x/z, y/z, 1), and parallel float32 channels in a fixed
order (feature id, camera id, pixel u, pixel v, normalized velocity x and y).
Its callback reads three more channels (a debug ground-truth point) whenever
more than five are present, so they are sent as zeros to keep it in bounds.
Building the arrays here, without ROS, keeps the layout testable; the node
only copies them into the message.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neuflow_ros.tracking.camera_model import CameraModel
from neuflow_ros.tracking.stereo_matching import TrackMatches
from neuflow_ros.tracking.tracker import TrackSet

VINS_CHANNEL_NAMES = (
    "feature_id",
    "camera_id",
    "u",
    "v",
    "velocity_x",
    "velocity_y",
    "ground_truth_x",
    "ground_truth_y",
    "ground_truth_z",
)

FLOAT32_EXACT_INTEGER_LIMIT = 2**24
"""float32 channels represent every integer below this exactly, none above all."""


class MissingCalibrationError(ValueError):
    """VINS-Fusion needs normalized coordinates, which need the camera's CameraInfo."""


class StampOrderError(ValueError):
    """VINS-Fusion needs velocities, which need time between the frames (e.g. unset stamps)."""


@dataclass(frozen=True)
class VinsFeatures:
    """The contents of one VINS-Fusion feature PointCloud, N features.

    `points` is (N, 3) float32 [x_norm, y_norm, 1]; `channels` holds the nine
    (name, (N,) float32) pairs in the order VINS-Fusion reads them.
    """

    points: np.ndarray
    channels: tuple[tuple[str, np.ndarray], ...]

    def __len__(self) -> int:
        return int(self.points.shape[0])


def vins_feature_arrays(
    tracks: TrackSet, camera_model: CameraModel | None, camera_id: int = 0
) -> VinsFeatures:
    """Pack the tracks seen at least twice into VINS-Fusion's feature layout.

    Tracks born in this frame are left out: they have no velocity yet, and
    VINS-Fusion gains nothing from a single observation it cannot triangulate.
    Velocities are those of the undistorted normalized coordinates (both ends
    undistorted with `camera_model`), per second, because VINS-Fusion uses
    them to estimate the camera-IMU time offset in those units.

    Raises MissingCalibrationError without a camera model, StampOrderError for
    non-increasing stamps with carried tracks, and ValueError for a model of
    another image size or an id or camera id that float32 cannot carry exactly.
    """
    if camera_model is None:
        raise MissingCalibrationError(
            "VINS-Fusion features need undistorted normalized coordinates: waiting for "
            "camera_info (a calibrated CameraInfo) before publishing them"
        )
    if isinstance(camera_id, bool) or not isinstance(camera_id, (int, np.integer)):
        raise ValueError(f"camera_id must be an integer, got {camera_id!r}")
    if not 0 <= camera_id < FLOAT32_EXACT_INTEGER_LIMIT:
        raise ValueError(f"camera_id must be in [0, 2**24), got {camera_id}")

    carried = np.flatnonzero(tracks.ages >= 2)
    ids = tracks.ids[carried]
    if ids.size and int(ids.max()) >= FLOAT32_EXACT_INTEGER_LIMIT:
        raise ValueError(
            f"track id {int(ids.max())} does not fit a float32 channel exactly (limit 2**24); "
            "create the FeatureTracker with TrackerConfig(id_limit=2**24) for VINS-Fusion output"
        )
    normalized = np.empty((0, 2))
    velocities = np.empty((0, 2))
    positions = tracks.positions[carried].astype(np.float64)
    if carried.size:
        _check_model_size(tracks, camera_model)
        if tracks.previous_stamp is None or not tracks.stamp > tracks.previous_stamp:
            raise StampOrderError(
                f"stamps must increase for velocities, got previous {tracks.previous_stamp} "
                f"and current {tracks.stamp}"
            )
        normalized = camera_model.undistort_normalized(positions)
        previous = camera_model.undistort_normalized(
            tracks.previous_positions[carried].astype(np.float64)
        )
        velocities = (normalized - previous) / (tracks.stamp - tracks.previous_stamp)
        if not (np.all(np.isfinite(normalized)) and np.all(np.isfinite(velocities))):
            raise ValueError("undistortion gave non-finite normalized coordinates for some tracks")

    points = np.empty((carried.size, 3), dtype=np.float32)
    points[:, :2] = normalized
    points[:, 2] = 1.0
    zeros = np.zeros(carried.size, dtype=np.float32)
    values = (
        ids.astype(np.float32),
        np.full(carried.size, camera_id, dtype=np.float32),
        positions[:, 0].astype(np.float32),
        positions[:, 1].astype(np.float32),
        velocities[:, 0].astype(np.float32),
        velocities[:, 1].astype(np.float32),
        zeros,
        zeros.copy(),
        zeros.copy(),
    )
    return VinsFeatures(points=points, channels=tuple(zip(VINS_CHANNEL_NAMES, values, strict=True)))


RIGHT_CAMERA_ID = 1
"""VINS-Fusion's stereo configurations read the right camera's observations as camera 1."""


def right_camera_features(
    left: VinsFeatures, tracks: TrackSet, matches: TrackMatches | None
) -> VinsFeatures:
    """``left`` (camera 0, from ``tracks``) plus a camera 1 entry for each of its matched tracks.

    The right entries carry the same feature id, the raw right pixel, the
    undistorted normalized right coordinates and their velocity from the
    feature's previous right observation; only tracks ``left`` holds (seen at
    least twice) get one, so every right entry has its left partner.
    """
    if matches is None:
        return left
    chosen = np.flatnonzero((tracks.ages >= 2) & matches.matched)
    count = chosen.size
    points = np.empty((count, 3), dtype=np.float32)
    points[:, :2] = matches.normalized[chosen]
    points[:, 2] = 1.0
    zeros = np.zeros(count, dtype=np.float32)
    values = (
        tracks.ids[chosen].astype(np.float32),
        np.full(count, RIGHT_CAMERA_ID, dtype=np.float32),
        matches.positions[chosen, 0],
        matches.positions[chosen, 1],
        matches.velocities[chosen, 0],
        matches.velocities[chosen, 1],
        zeros,
        zeros.copy(),
        zeros.copy(),
    )
    return VinsFeatures(
        points=np.vstack([left.points, points]),
        channels=tuple(
            (name, np.concatenate([left_values, right_values]))
            for (name, left_values), right_values in zip(left.channels, values, strict=True)
        ),
    )


def _check_model_size(tracks: TrackSet, camera_model: CameraModel) -> None:
    """Catch a CameraInfo of another resolution, which would give wrong coordinates silently."""
    inside = np.all(tracks.positions >= 0.0) and np.all(
        tracks.positions < np.array([camera_model.width, camera_model.height])
    )
    if not inside:
        raise ValueError(
            f"track positions fall outside the camera model's {camera_model.width}x"
            f"{camera_model.height} image: is camera_info for this image size?"
        )
