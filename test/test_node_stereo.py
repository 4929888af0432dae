"""Stereo matches and disparity from the real node over DDS, on scenes with known disparity.

The scene is a plane at a known rectified disparity, moving by a known step
per frame. Each raw pixel of each camera is rendered from the wave texture
where OpenCV's own lens and rectification model says it looks, so every
expected right position, normalized coordinate and disparity follows from
the calibration written in stereo_rigs, never from the node's output. Two
rigs: already rectified images, and raw images (distorted lenses, both
cameras rotated off the rectified frame, different intrinsics).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import cv2
import numpy as np
import pytest
from neuflow_ros.msg import TrackArray
from ros_test_support import DiagnosticsWatcher, NodeProcess, rgb_msg, send_processed, stamp_ns
from sensor_msgs.msg import CameraInfo, Image, PointCloud
from stereo_msgs.msg import DisparityImage
from stereo_rigs import (
    BASELINE,
    RECTIFIED_FOCAL,
    camera_info_fields,
    raw_from_rectified,
    raw_rig,
    rectified_rig,
    rectified_view,
)

from neuflow_ros.imaging.synthetic_sequence import WaveTexture, interior_margin

DISPARITY = 6.4
STEP = (1.25, -0.5)
PERIOD_NS = 50_000_000
FRAMES = 8
RIGS = {"rectified": rectified_rig, "raw": raw_rig}
TOLERANCE_PX = 0.2


def camera_info(side) -> CameraInfo:
    fields = camera_info_fields(side)
    info = CameraInfo(width=fields["width"], height=fields["height"],
                      distortion_model=fields["distortion_model"])
    info.d, info.k, info.r, info.p = fields["d"], fields["k"], fields["r"], fields["p"]
    return info


class StereoScene:
    """Left and right frames of a plane at DISPARITY (rectified px) moving by STEP per frame."""

    def __init__(self, left, right) -> None:
        self.left, self.right = left, right
        self._texture = WaveTexture.random()
        self._left_view = rectified_view(left)
        self._right_view = rectified_view(right) + np.array([DISPARITY, 0.0])

    def frames(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        shift = np.array(STEP) * index
        return (self._texture.sample(self._left_view - shift),
                self._texture.sample(self._right_view - shift))

    def right_of(self, left_pixels: np.ndarray) -> np.ndarray:
        """Raw right pixels showing the same scene points as raw left pixels (N, 2)."""
        rectified = cv2.undistortPoints(
            left_pixels.reshape(-1, 1, 2).astype(np.float64), self.left.k, self.left.d,
            R=self.left.r, P=self.left.p,
        ).reshape(-1, 2)
        return raw_from_rectified(self.right, rectified - np.array([DISPARITY, 0.0]))


class StereoRun(NamedTuple):
    rig: str
    scene: StereoScene
    clouds: list[PointCloud]
    track_arrays: list[TrackArray]
    disparity_images: list[DisparityImage]
    status: Any
    node: NodeProcess


@pytest.fixture(scope="module", params=list(RIGS))
def run(request, harness, tmp_path_factory):
    left, right = RIGS[request.param]()
    scene = StereoScene(left, right)
    node = NodeProcess(
        tmp_path_factory.mktemp(f"stereo_{request.param}"),
        {"cameras": ["left", "right"], "stereo.pair": ["left", "right"],
         "diagnostic_period": 0.2, "drop_frames": False, "tracking.vins_features": True,
         "tracking.min_distance": 8.0},
    )
    try:
        watcher = DiagnosticsWatcher(harness, node.fqn)
        assert watcher.wait_engine_ready(), node.output()
        features = harness.collect(PointCloud, node.topic("features"))
        tracks = harness.collect(TrackArray, node.topic("left/tracks"))
        disparities = harness.collect(DisparityImage, node.topic("disparity"))
        images = {side: harness.publisher(Image, node.input_topic(f"{side}/image"), reliable=True)
                  for side in ("left", "right")}
        infos = {side: harness.publisher(CameraInfo, node.input_topic(f"{side}/camera_info"),
                                         reliable=True)
                 for side in ("left", "right")}
        for publisher in [*images.values(), *infos.values()]:
            assert harness.wait_for_subscribers(publisher), node.output()
        for topic in ("features", "left/tracks", "disparity"):
            assert harness.wait_for_publishers(node.topic(topic)), node.output()
        messages = {"left": camera_info(left), "right": camera_info(right)}
        for k in range(FRAMES):
            stamp = 7_000_000_000 + k * PERIOD_NS
            for side in ("left", "right"):
                infos[side].publish(messages[side])
            left_frame, right_frame = scene.frames(k)
            images["left"].publish(rgb_msg(left_frame, stamp, "left"))
            send_processed(images["right"], watcher, rgb_msg(right_frame, stamp, "right"),
                           camera="right")
        clouds = features.wait_count(FRAMES - 1, 20.0)
        track_arrays = tracks.wait_count(FRAMES - 1, 20.0)
        disparity_images = disparities.wait_count(FRAMES - 1, 20.0)
        stereo_status = f"{node.fqn.lstrip('/')}: stereo left/right"
        report = watcher.wait_until(
            lambda r: r.get(stereo_status, (0, "", {}))[2].get("frames matched")
            == str(FRAMES - 1), 5.0,
        )
        yield StereoRun(request.param, scene, clouds, track_arrays, disparity_images,
                        report.get(stereo_status), node)
    finally:
        node.close()


def entries(cloud: PointCloud) -> dict[str, np.ndarray]:
    channels = {channel.name: np.asarray(channel.values, dtype=np.float64)
                for channel in cloud.channels}
    channels["x"] = np.array([point.x for point in cloud.points])
    channels["y"] = np.array([point.y for point in cloud.points])
    return channels


def split_by_camera(cloud: PointCloud) -> tuple[dict, dict]:
    values = entries(cloud)
    left = values["camera_id"] == 0
    right = values["camera_id"] == 1
    assert np.all(left | right)
    return ({name: column[left] for name, column in values.items()},
            {name: column[right] for name, column in values.items()})


def test_every_right_entry_has_a_left_entry_with_the_same_id(run):
    assert len(run.clouds) == FRAMES - 1, run.node.output()
    for cloud in run.clouds:
        left, right = split_by_camera(cloud)
        assert set(right["feature_id"]) <= set(left["feature_id"])
        assert len(set(right["feature_id"])) == right["feature_id"].size
    # Nearly every left feature whose right position lies where the node can verify
    # it (8 px, half its refinement window, inside the right image) is matched.
    left, right = split_by_camera(run.clouds[-1])
    truth = run.scene.right_of(np.stack([left["u"], left["v"]], axis=1))
    margin = 8
    verifiable = (
        (truth[:, 0] >= margin) & (truth[:, 0] <= run.scene.right.width - 1 - margin)
        & (truth[:, 1] >= margin) & (truth[:, 1] <= run.scene.right.height - 1 - margin)
    )
    matched = np.isin(left["feature_id"], right["feature_id"])
    assert np.count_nonzero(matched & verifiable) >= 0.95 * np.count_nonzero(verifiable)
    assert np.count_nonzero(verifiable) >= 30


def test_right_positions_follow_the_known_disparity(run):
    errors = []
    for cloud in run.clouds:
        left, right = split_by_camera(cloud)
        by_id = {feature: index for index, feature in enumerate(left["feature_id"])}
        rows = [by_id[feature] for feature in right["feature_id"]]
        left_pixels = np.stack([left["u"][rows], left["v"][rows]], axis=1)
        truth = run.scene.right_of(left_pixels)
        errors.append(np.hypot(right["u"] - truth[:, 0], right["v"] - truth[:, 1]))
    errors = np.concatenate(errors)
    assert errors.size > 0
    assert errors.max() <= TOLERANCE_PX, f"largest error {errors.max():.3f} px"


def test_right_normalized_coordinates_follow_the_right_camera_info(run):
    for cloud in run.clouds:
        _, right = split_by_camera(cloud)
        pixels = np.stack([right["u"], right["v"]], axis=1).reshape(-1, 1, 2)
        expected = cv2.undistortPoints(pixels, run.scene.right.k, run.scene.right.d).reshape(-1, 2)
        np.testing.assert_allclose(right["x"], expected[:, 0], atol=2e-5)
        np.testing.assert_allclose(right["y"], expected[:, 1], atol=2e-5)


def test_right_velocity_follows_the_motion_of_the_right_observations(run):
    # The first cloud's features were matched on their first frame (not sent, age 1)
    # already, so from the first cloud on most right velocities are the motion.
    velocities = np.concatenate([
        np.stack([right["velocity_x"], right["velocity_y"]], axis=1)
        for _, right in map(split_by_camera, run.clouds)
    ])
    moving = velocities[np.any(velocities != 0.0, axis=1)]
    assert len(moving) >= 0.8 * len(velocities)
    if run.rig == "rectified":
        # The scene moves STEP px per 50 ms on a 150 px focal length.
        expected = np.array(STEP) / RECTIFIED_FOCAL / (PERIOD_NS / 1e9)
        np.testing.assert_allclose(np.median(moving, axis=0), expected, rtol=0.02)


def test_tracks_carry_the_right_match_and_its_disparity(run):
    assert len(run.track_arrays) == FRAMES - 1
    matched = [track for array in run.track_arrays for track in array.tracks
               if np.isfinite(track.right_x)]
    assert len(matched) >= 0.5 * sum(len(array.tracks) for array in run.track_arrays)
    left = np.array([[track.x, track.y] for track in matched])
    right = np.array([[track.right_x, track.right_y] for track in matched])
    truth = run.scene.right_of(left)
    assert np.abs(right - truth).max() <= TOLERANCE_PX
    disparity = np.array([track.disparity for track in matched])
    assert np.abs(disparity - DISPARITY).max() <= TOLERANCE_PX
    unmatched = [track for array in run.track_arrays for track in array.tracks
                 if not np.isfinite(track.right_x)]
    assert all(np.isnan(track.disparity) for track in unmatched)


def test_disparity_image_holds_the_known_disparity_in_the_interior(run):
    assert len(run.disparity_images) == FRAMES - 1
    for message in run.disparity_images:
        assert message.image.encoding == "32FC1"
        assert message.f == pytest.approx(RECTIFIED_FOCAL)
        assert message.t == pytest.approx(BASELINE)
        assert message.header.frame_id == "left"
        image = message.image
        values = np.frombuffer(bytes(image.data), dtype="<f4").reshape(image.height, image.width)
        margin = interior_margin(image.width, image.height) + int(np.ceil(DISPARITY))
        interior = values[margin:-margin, margin:-margin]
        valid = interior >= message.min_disparity
        assert valid.mean() >= 0.95
        assert np.abs(interior[valid] - DISPARITY).max() <= 0.5


def test_diagnostics_count_pairs_and_matches(run):
    assert run.status is not None, run.node.output()
    level, _, values = run.status
    assert level == 0
    assert values["stereo pairs"] == str(FRAMES)
    assert values["unpaired frames: left"] == "0"
    assert values["unpaired frames: right"] == "0"
    assert float(values["matches per frame p50"]) >= 10


def test_stamps_of_the_outputs_are_the_left_frames(run):
    for cloud, array in zip(run.clouds, run.track_arrays, strict=True):
        assert stamp_ns(cloud.header.stamp) == stamp_ns(array.header.stamp)
        assert cloud.header.frame_id == "left"
