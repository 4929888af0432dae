"""VINS-Fusion feature layout: expectations from a forward lens model written in the test."""

from __future__ import annotations

import numpy as np
import pytest
from track_sets import track_set

from neuflow_ros.tracking.camera_model import CameraModel
from neuflow_ros.tracking.stereo_matching import TrackMatches
from neuflow_ros.tracking.tracker import TrackSet
from neuflow_ros.tracking.vins_features import (
    MissingCalibrationError,
    StampOrderError,
    right_camera_features,
    vins_feature_arrays,
)

WIDTH, HEIGHT = 128, 96
FX, FY, CX, CY = 110.0, 105.0, 63.0, 47.5
DISTORTION = [-0.3, 0.08, 0.0, 0.0, 0.0]


def model() -> CameraModel:
    k = [FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0]
    return CameraModel.from_camera_info("plumb_bob", DISTORTION, k, WIDTH, HEIGHT)


def to_pixels(normalized: np.ndarray) -> np.ndarray:
    """Radial Brown-Conrady distortion then K, as published."""
    k1, k2 = DISTORTION[:2]
    r2 = np.sum(normalized**2, axis=1, keepdims=True)
    distorted = normalized * (1.0 + k1 * r2 + k2 * r2**2)
    return distorted * [FX, FY] + [CX, CY]


def moved_tracks(ids, ages, now, before, stamp=2.5, previous_stamp=2.45) -> TrackSet:
    """Tracks that moved from ``before`` to ``now`` between two frames 50 ms apart."""
    return track_set(ids, ages, now, before, stamp, previous_stamp)


def test_layout_coordinates_and_normalized_velocity() -> None:
    normalized_before = np.array([[-0.3, -0.2], [0.1, 0.25], [0.35, -0.1], [0.0, 0.0]])
    motion = np.array([[0.01, -0.02], [0.0, 0.015], [-0.02, 0.0], [0.0, 0.0]])
    normalized_now = normalized_before + motion
    now, before = to_pixels(normalized_now), to_pixels(normalized_before)
    # The last track is new (age 1): it has no velocity and must be left out.
    tracks = moved_tracks([7, 12, 2**24 - 1, 99], [2, 5, 3, 1], now, before)

    features = vins_feature_arrays(tracks, model(), camera_id=1)

    assert len(features) == 3
    names = [name for name, _ in features.channels]
    assert names[:6] == ["feature_id", "camera_id", "u", "v", "velocity_x", "velocity_y"]
    assert len(names) == 9
    values = [v for _, v in features.channels]
    assert all(v.dtype == np.float32 and v.shape == (3,) for v in values)
    np.testing.assert_array_equal(values[0].astype(np.int64), [7, 12, 2**24 - 1])
    np.testing.assert_array_equal(values[1], [1, 1, 1])
    np.testing.assert_allclose(np.stack([values[2], values[3]], 1), now[:3], atol=1e-4)
    expected_velocity = (normalized_now[:3] - normalized_before[:3]) / 0.05
    np.testing.assert_allclose(np.stack([values[4], values[5]], 1), expected_velocity, atol=2e-3)
    for zeros in values[6:]:
        np.testing.assert_array_equal(zeros, 0.0)
    assert features.points.dtype == np.float32
    np.testing.assert_allclose(features.points[:, :2], normalized_now[:3], atol=1e-5)
    np.testing.assert_array_equal(features.points[:, 2], 1.0)


def test_only_new_tracks_give_empty_layout() -> None:
    tracks = moved_tracks([0, 1], [1, 1], [[10, 10], [20, 20]], [[10, 10], [20, 20]], 1.0, None)
    features = vins_feature_arrays(tracks, model())
    assert features.points.shape == (0, 3)
    assert len(features.channels) == 9
    assert all(values.size == 0 for _, values in features.channels)


def test_needs_calibration() -> None:
    tracks = moved_tracks([0], [2], [[10, 10]], [[9, 10]])
    with pytest.raises(MissingCalibrationError, match="camera_info"):
        vins_feature_arrays(tracks, None)


def test_refuses_ids_float32_cannot_carry() -> None:
    tracks = moved_tracks([5, 2**24], [2, 2], [[10, 10], [20, 20]], [[9, 10], [19, 20]])
    with pytest.raises(ValueError, match="id_limit"):
        vins_feature_arrays(tracks, model())


@pytest.mark.parametrize("previous_stamp", [2.5, 2.6])
def test_refuses_non_increasing_stamps(previous_stamp: float) -> None:
    tracks = moved_tracks([0], [2], [[10, 10]], [[9, 10]], 2.5, previous_stamp)
    with pytest.raises(StampOrderError, match="stamps must increase"):
        vins_feature_arrays(tracks, model())


def test_refuses_model_of_another_image_size() -> None:
    tracks = moved_tracks([0], [2], [[200, 10]], [[199, 10]])
    with pytest.raises(ValueError, match="camera_info for this image size"):
        vins_feature_arrays(tracks, model())


@pytest.mark.parametrize("camera_id", [-1, 2**24, 1.0, True])
def test_refuses_bad_camera_id(camera_id: object) -> None:
    tracks = moved_tracks([0], [2], [[10, 10]], [[9, 10]])
    with pytest.raises(ValueError, match="camera_id"):
        vins_feature_arrays(tracks, model(), camera_id=camera_id)


def test_right_entries_follow_the_left_ones_with_the_same_ids_for_matched_carried_tracks() -> None:
    now = np.array([[40.0, 30.0], [60.0, 50.0], [80.0, 40.0]])
    tracks = moved_tracks([4, 5, 6], [3, 2, 1], now, now - [1.0, 0.0])
    left = vins_feature_arrays(tracks, model(), camera_id=0)
    nan = np.nan
    matches = TrackMatches(
        positions=np.array([[33.5, 30.25], [nan, nan], [70.0, 40.0]], np.float32),
        normalized=np.array([[-0.27, -0.16], [nan, nan], [0.06, -0.07]], np.float32),
        velocities=np.array([[0.1, 0.0], [nan, nan], [0.0, 0.0]], np.float32),
        disparities=np.array([6.5, nan, 10.0], np.float32),
        rejections={},
    )
    both = right_camera_features(left, tracks, matches)
    values = dict(both.channels)
    # Track 5 has no match, track 6 is new (no left entry): one right entry, for 4.
    np.testing.assert_array_equal(values["feature_id"], [4, 5, 4])
    np.testing.assert_array_equal(values["camera_id"], [0, 0, 1])
    np.testing.assert_allclose([values["u"][2], values["v"][2]], [33.5, 30.25])
    np.testing.assert_allclose(both.points[2], [-0.27, -0.16, 1.0], rtol=1e-6)
    np.testing.assert_allclose([values["velocity_x"][2], values["velocity_y"][2]], [0.1, 0.0])
    assert right_camera_features(left, tracks, None) is left
