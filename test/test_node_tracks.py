"""Feature tracks from the real node over DDS: ~/tracks and the VINS ~/features layout.

The camera sees a texture translating by a known sub-pixel step per frame, so
every expected position, velocity and normalized coordinate follows from the
motion and the calibration written here, never from the node's own output.
"""

from __future__ import annotations

import numpy as np
import pytest
from neuflow_ros.msg import TrackArray
from ros_test_support import (
    DiagnosticsWatcher,
    NodeProcess,
    rgb_msg,
    send_processed,
    stamp_ns,
    textured_image,
)
from sensor_msgs.msg import CameraInfo, Image, PointCloud

WIDTH, HEIGHT = 160, 120
STEP = (1.5, -0.75)
PERIOD_NS = 50_000_000
FX, FY, CX, CY = 120.0, 110.0, 80.0, 60.0
FRAMES = 10


@pytest.fixture(scope="module")
def run(harness, tmp_path_factory):
    node = NodeProcess(
        tmp_path_factory.mktemp("node_tracks"),
        {"diagnostic_period": 0.2, "drop_frames": False, "tracking.vins_features": True,
         "tracking.min_distance": 10.0},
    )
    try:
        watcher = DiagnosticsWatcher(harness, node.fqn)
        assert watcher.wait_engine_ready(), node.output()
        tracks = harness.collect(TrackArray, node.topic("tracks"))
        features = harness.collect(PointCloud, node.topic("features"))
        camera = harness.publisher(Image, node.input_topic("image"), reliable=True)
        info_publisher = harness.publisher(CameraInfo, node.input_topic("camera_info"),
                                           reliable=True)
        assert harness.wait_for_subscribers(camera), node.output()
        assert harness.wait_for_subscribers(info_publisher), node.output()
        assert harness.wait_for_publishers(node.topic("features")), node.output()
        info = CameraInfo(width=WIDTH, height=HEIGHT, distortion_model="plumb_bob")
        info.d = [0.0] * 5
        info.k = [FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0]
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [FX, 0.0, CX, 0.0, 0.0, FY, CY, 0.0, 0.0, 0.0, 1.0, 0.0]
        stamps = [5_000_000_000 + k * PERIOD_NS for k in range(FRAMES)]
        for k, stamp in enumerate(stamps):
            info_publisher.publish(info)
            shift = (STEP[0] * k, STEP[1] * k)
            send_processed(camera, watcher, rgb_msg(textured_image(WIDTH, HEIGHT, shift), stamp))
        received = tracks.wait_count(FRAMES - 1, 15.0)
        clouds = features.wait_count(FRAMES - 1, 15.0)
        watcher.wait_until(
            lambda _: watcher.camera()[2].get("flows published") == str(FRAMES - 1), 5.0
        )
        yield stamps, received, clouds, watcher.camera()[2]
    finally:
        node.close()


def test_one_track_array_per_frame_pair_with_stamps(run):
    stamps, tracks, _, _ = run
    assert len(tracks) == FRAMES - 1
    for message, previous, current in zip(tracks, stamps[:-1], stamps[1:], strict=True):
        assert stamp_ns(message.header.stamp) == current
        assert stamp_ns(message.previous_stamp) == previous
        assert message.header.frame_id == "camera"


def test_tracks_follow_the_known_motion_with_persistent_ids(run):
    _, tracks, _, _ = run
    # Tracks detected on frame 0 (age 2 in the first pair); the rest were replenished later.
    first_ids = {track.id for track in tracks[0].tracks if track.age == 2}
    last = tracks[-1].tracks
    assert len(last) >= 10
    survivors = [track for track in last if track.id in first_ids]
    assert len(survivors) >= 0.5 * len(first_ids)
    # The first message covers frames 0->1 (detected on frame 0), so age == FRAMES.
    assert sorted({track.age for track in survivors}) == [FRAMES], [t.age for t in survivors]
    moves = np.array([[t.x - t.previous_x, t.y - t.previous_y] for t in survivors])
    assert np.median(np.abs(moves - np.array(STEP)), axis=0).max() < 0.2
    velocities = np.array([[t.velocity_x, t.velocity_y] for t in survivors])
    expected_velocity = np.array(STEP) / (PERIOD_NS / 1e9)
    assert np.allclose(np.median(velocities, axis=0), expected_velocity, rtol=0.1)
    normalized = np.array([[t.normalized_x, t.normalized_y] for t in last])
    pixels = np.array([[t.x, t.y] for t in last])
    assert np.allclose(normalized[:, 0], (pixels[:, 0] - CX) / FX, atol=1e-4)
    assert np.allclose(normalized[:, 1], (pixels[:, 1] - CY) / FY, atol=1e-4)
    ids = [track.id for track in last]
    assert len(ids) == len(set(ids))


def test_vins_features_use_the_vins_fusion_channel_layout(run):
    _, tracks, clouds, _ = run
    assert clouds
    cloud = clouds[-1]
    assert [c.name for c in cloud.channels][:6] == [
        "feature_id", "camera_id", "u", "v", "velocity_x", "velocity_y"]
    assert len(cloud.channels) == 9
    assert all(not any(c.values) for c in cloud.channels[6:])
    matching = next(t for t in tracks if t.header.stamp == cloud.header.stamp)
    by_id = {track.id: track for track in matching.tracks if track.age >= 2}
    ids = [int(value) for value in cloud.channels[0].values]
    assert sorted(ids) == sorted(by_id)
    assert all(value == 0.0 for value in cloud.channels[1].values)
    for index, feature_id in enumerate(ids):
        track = by_id[feature_id]
        point = cloud.points[index]
        assert point.z == 1.0
        assert point.x == pytest.approx((track.x - CX) / FX, abs=1e-4)
        assert cloud.channels[2].values[index] == pytest.approx(track.x, abs=1e-3)
        assert cloud.channels[3].values[index] == pytest.approx(track.y, abs=1e-3)
    velocity_x = np.median(cloud.channels[4].values)
    assert velocity_x == pytest.approx(STEP[0] / FX / (PERIOD_NS / 1e9), rel=0.1)


def test_diagnostics_report_tracking_time_apart_from_publish_time(run):
    *_, values = run
    assert values.get("flows published") == str(FRAMES - 1), values
    for stage in ("publish time", "tracking time"):
        for percentile in ("p50", "p95"):
            milliseconds = float(values[f"{stage} {percentile} (ms)"])
            # Any real measurement: positive, finite and far below a frame period of 1 s.
            assert 0.0 < milliseconds < 1000.0, (stage, percentile, values)
    assert float(values["publish time p50 (ms)"]) <= float(values["publish time p95 (ms)"])
    assert float(values["tracking time p50 (ms)"]) <= float(values["tracking time p95 (ms)"])
