"""Stereo geometry and left-right matching on synthetic rigs with known disparity."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
from stereo_rigs import BASELINE, HEIGHT, RECTIFIED_FOCAL, WIDTH, raw_rig, rectified_rig
from track_sets import track_set

from neuflow_ros.imaging.synthetic_sequence import WaveTexture
from neuflow_ros.tracking.stereo_geometry import StereoCalibrationError, StereoRig
from neuflow_ros.tracking.stereo_matching import (
    StereoMatchConfig,
    StereoTrackMatcher,
    dense_disparity,
    match_points,
)


def scene_points(depth: float) -> np.ndarray:
    """Points in the left rectified frame that both cameras see, at one depth."""
    xs, ys = np.meshgrid(np.linspace(-0.2, 0.1, 5), np.linspace(-0.2, 0.2, 4))
    return np.stack([xs.ravel() * depth, ys.ravel() * depth, np.full(xs.size, depth)], axis=1)


def rig_of(sides) -> StereoRig:
    left, right = sides
    return StereoRig.from_models(left.model(), right.model())


@pytest.mark.parametrize("sides", [rectified_rig(), raw_rig()], ids=["rectified", "raw"])
def test_disparity_and_rows_from_raw_pixels_match_the_known_geometry(sides):
    left, right = sides
    rig = rig_of(sides)
    points = scene_points(2.0)
    disparity, rows = rig.disparity(left.project(points, 0.0), right.project(points, BASELINE))
    np.testing.assert_allclose(disparity, RECTIFIED_FOCAL * BASELINE / 2.0, atol=1e-6)
    np.testing.assert_allclose(rows, 0.0, atol=1e-6)
    assert rig.baseline == pytest.approx(BASELINE)
    assert rig.focal_length == RECTIFIED_FOCAL


def test_a_rig_with_different_image_sizes_is_refused():
    left, right = rectified_rig()
    smaller = dataclasses.replace(right, width=WIDTH // 2, height=HEIGHT // 2)
    with pytest.raises(StereoCalibrationError) as error:
        StereoRig.from_models(left.model(), smaller.model())
    assert error.value.reason == "size_mismatch"


@pytest.mark.parametrize("right_tx", [0.0, 5.0])
def test_a_right_camera_without_a_positive_baseline_is_refused(right_tx):
    left, right = rectified_rig()
    p = right.p.copy()
    p[0, 3] = right_tx
    with pytest.raises(StereoCalibrationError) as error:
        StereoRig.from_models(left.model(), dataclasses.replace(right, p=p).model())
    assert error.value.reason == "zero_baseline"


def test_a_camera_without_a_projection_is_refused():
    left, right = rectified_rig()
    with pytest.raises(StereoCalibrationError) as error:
        StereoRig.from_models(left.model(), dataclasses.replace(right, p=np.zeros((3, 4))).model())
    assert error.value.reason == "missing_projection"


def constant_flows(u: float, v: float, back_u: float, back_v: float):
    forward = np.zeros((HEIGHT, WIDTH, 2), np.float32)
    forward[...] = (u, v)
    backward = np.zeros_like(forward)
    backward[...] = (back_u, back_v)
    return forward, backward


CONFIG = StereoMatchConfig(epipolar_threshold=1.0, consistency_threshold=1.0)
LEFT_POINTS = np.array([[60.0, 40.0], [100.0, 80.0], [30.0, 60.5]])


def test_consistent_matches_on_the_row_give_their_disparity():
    forward, backward = constant_flows(-9.0, 0.0, 9.0, 0.0)
    matches = match_points(LEFT_POINTS, forward, backward, rig_of(rectified_rig()), CONFIG)
    np.testing.assert_allclose(matches.right_positions, LEFT_POINTS - [9.0, 0.0])
    np.testing.assert_allclose(matches.disparities, 9.0)
    assert sum(matches.rejections.values()) == 0


@pytest.mark.parametrize(
    ("flows", "reason"),
    [
        ((-9.0, 0.0, 6.0, 0.0), "consistency"),
        ((-9.0, 2.0, 9.0, -2.0), "epipolar"),
        ((4.0, 0.0, -4.0, 0.0), "disparity"),
        ((-200.0, 0.0, 200.0, 0.0), "outside"),
        ((np.nan, 0.0, 0.0, 0.0), "non_finite"),
    ],
)
def test_each_failed_check_rejects_under_its_reason(flows, reason):
    forward, backward = constant_flows(*flows)
    matches = match_points(LEFT_POINTS, forward, backward, rig_of(rectified_rig()), CONFIG)
    assert not np.any(matches.matched)
    assert np.all(np.isnan(matches.disparities))
    assert matches.rejections[reason] == len(LEFT_POINTS)
    assert sum(matches.rejections.values()) == len(LEFT_POINTS)


def test_right_velocity_comes_from_the_same_ids_previous_right_observation():
    rig = rig_of(rectified_rig())
    matcher = StereoTrackMatcher(CONFIG)
    first = matcher.match(
        track_set([3, 4], [2, 2], LEFT_POINTS[:2], stamp=1.0, previous_stamp=0.9),
        *constant_flows(-9.0, 0.0, 9.0, 0.0), rig,
    )
    np.testing.assert_array_equal(first.velocities, 0.0)
    # Id 4 is gone, id 5 is new; id 3 moved 1.5 px right in both images in 0.1 s.
    moved = np.array([LEFT_POINTS[0] + [1.5, 0.0], LEFT_POINTS[2]])
    second = matcher.match(
        track_set([3, 5], [3, 1], moved, stamp=1.1, previous_stamp=1.0),
        *constant_flows(-9.0, 0.0, 9.0, 0.0), rig,
    )
    np.testing.assert_allclose(second.velocities[0], [1.5 / RECTIFIED_FOCAL / 0.1, 0.0],
                               rtol=1e-5)
    np.testing.assert_array_equal(second.velocities[1], 0.0)
    expected_x = (moved[0, 0] - 9.0 - (WIDTH / 2 - 0.5)) / RECTIFIED_FOCAL
    assert second.normalized[0, 0] == pytest.approx(expected_x, rel=1e-5)


def test_unmatched_tracks_have_nan_positions_and_velocities():
    rig = rig_of(rectified_rig())
    matches = StereoTrackMatcher(CONFIG).match(
        track_set([1], [2], LEFT_POINTS[:1], stamp=1.0, previous_stamp=0.9),
        *constant_flows(-9.0, 0.0, 2.0, 0.0), rig,
    )
    assert not matches.matched[0]
    assert np.all(np.isnan(matches.normalized)) and np.all(np.isnan(matches.velocities))


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf")])
def test_match_config_refuses_thresholds_that_reject_everything_or_nothing(value):
    with pytest.raises(ValueError, match="epipolar_threshold"):
        StereoMatchConfig(epipolar_threshold=value)


def test_dense_disparity_holds_the_known_disparity_and_nan_where_refused():
    forward, backward = constant_flows(-9.0, 0.0, 9.0, 0.0)
    disparity = dense_disparity(forward, backward, rig_of(rectified_rig()), CONFIG)
    assert disparity.shape == (HEIGHT, WIDTH)
    # Pixels whose match falls off the right image's left edge are refused.
    assert np.all(np.isnan(disparity[:, :9]))
    np.testing.assert_allclose(disparity[:, 9:], 9.0)


def test_refinement_corrects_a_flow_that_is_off_by_a_fraction_of_a_pixel():
    texture = WaveTexture.random()
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    left = cv2.cvtColor(texture.sample(np.stack([xs, ys], -1)), cv2.COLOR_RGB2GRAY)
    right = cv2.cvtColor(texture.sample(np.stack([xs + 7.25, ys], -1)), cv2.COLOR_RGB2GRAY)
    forward, backward = constant_flows(-7.25 + 0.4, 0.0, 7.25 - 0.4, 0.0)
    rig = rig_of(rectified_rig())
    plain = match_points(LEFT_POINTS, forward, backward, rig, CONFIG)
    refined = match_points(LEFT_POINTS, forward, backward, rig, CONFIG, (left, right))
    np.testing.assert_allclose(plain.disparities, 7.25 - 0.4)
    np.testing.assert_allclose(refined.disparities, 7.25, atol=0.05)



def test_undistorted_cameras_rotated_off_the_rectified_frame_rectify_as_opencv_does():
    """Zero distortion takes the one-homography path; R and P must still apply."""
    sides = [dataclasses.replace(side, d=np.zeros(5)) for side in raw_rig()]
    rig = rig_of(sides)
    points = scene_points(3.0)
    left, right = sides
    disparity, rows = rig.disparity(left.project(points, 0.0), right.project(points, BASELINE))
    np.testing.assert_allclose(disparity, RECTIFIED_FOCAL * BASELINE / 3.0, atol=1e-6)
    np.testing.assert_allclose(rows, 0.0, atol=1e-6)
