"""Repeated image stamps, with VINS-Fusion features on, driven over DDS.

A driver that resends a frame, or one without a clock, gives two frames the
same stamp. Velocities need time between the frames, so the node used to
raise inside the worker for every such pair ("stamps must increase"), with a
traceback each time. Now a repeated stamp restarts the camera's flow history
(counted as `resets: duplicate_stamp`) and the outputs go on with the next
frame; a camera that leaves every stamp at zero (no clock) still gets flow and
tracks, and ~/features, which needs time, is skipped with one warning.
"""

from __future__ import annotations

import numpy as np
import pytest
from neuflow_ros.msg import OpticalFlow
from ros_test_support import (
    DiagnosticsWatcher,
    NodeProcess,
    camera_count,
    rgb_msg,
    send_processed,
    stamp_ns,
    textured_image,
)
from sensor_msgs.msg import CameraInfo, Image, PointCloud

from neuflow_ros.tools.camera_replay import pinhole_info

WIDTH, HEIGHT = 128, 96
STEP, PERIOD_NS = (1.25, -0.5), 40_000_000
TIMEOUT_S = 15.0


def _calibration() -> CameraInfo:
    """A pinhole with fx = WIDTH and no distortion."""
    return pinhole_info(WIDTH, HEIGHT, "camera")


def _frame(k: int, stamp: int) -> Image:
    return rgb_msg(textured_image(WIDTH, HEIGHT, (STEP[0] * k, STEP[1] * k)), stamp)


@pytest.fixture(scope="module")
def node(harness, tmp_path_factory):
    process = NodeProcess(
        tmp_path_factory.mktemp("duplicate_stamps"),
        {"cameras": ["resent", "clockless"], "diagnostic_period": 0.2, "drop_frames": False,
         "tracking.vins_features": True, "tracking.min_distance": 10.0},
    )
    try:
        assert DiagnosticsWatcher(harness, process.fqn).wait_engine_ready(), process.output()
        yield process
    finally:
        process.close()


def _camera(harness, node: NodeProcess, name: str):
    """Publishers of one camera, with its calibration already received by the node."""
    camera = harness.publisher(Image, node.input_topic(f"{name}/image"), reliable=True)
    info = harness.publisher(CameraInfo, node.input_topic(f"{name}/camera_info"), reliable=True)
    assert harness.wait_for_subscribers(camera), node.output()
    assert harness.wait_for_subscribers(info), node.output()
    assert harness.wait_for_publishers(node.topic(f"{name}/features")), node.output()
    return camera, info


def test_a_resent_frame_restarts_the_history_and_the_outputs_go_on(harness, node):
    flows = harness.collect(OpticalFlow, node.topic("resent/flow"))
    features = harness.collect(PointCloud, node.topic("resent/features"))
    watcher = DiagnosticsWatcher(harness, node.fqn)
    camera, info = _camera(harness, node, "resent")
    stamps = [7_000_000_000 + k * PERIOD_NS for k in range(5)]
    for k in range(3):
        info.publish(_calibration())
        send_processed(camera, watcher, _frame(k, stamps[k]), "resent")
    camera.publish(_frame(2, stamps[2]))  # the driver resends frame 2
    report = watcher.wait_until(
        lambda _: camera_count(watcher, "resets: duplicate_stamp", "resent") == 1, TIMEOUT_S
    )
    assert camera_count(watcher, "resets: duplicate_stamp", "resent") == 1, report
    for k in (3, 4):
        send_processed(camera, watcher, _frame(k, stamps[k]), "resent")

    received = flows.wait_count(4, TIMEOUT_S)
    assert [(stamp_ns(m.previous_stamp), stamp_ns(m.header.stamp)) for m in received] == [
        (stamps[0], stamps[1]), (stamps[1], stamps[2]), (stamps[2], stamps[3]),
        (stamps[3], stamps[4]),
    ]
    clouds = features.wait_for(
        lambda messages: next((m for m in messages if stamp_ns(m.header.stamp) == stamps[4]),
                              None),
        TIMEOUT_S,
    )
    assert clouds is not None, node.output()
    velocity_x = np.median(clouds.channels[4].values)
    assert velocity_x == pytest.approx(STEP[0] / WIDTH / (PERIOD_NS / 1e9), rel=0.1)
    engine = watcher.engine()[2]
    assert engine.get("worker exceptions") == "0", engine
    output = node.output()
    assert "Traceback" not in output, output
    assert output.count("repeated") == 1, output


def test_a_camera_without_a_clock_gets_flow_and_tracks_but_no_features(harness, node):
    flows = harness.collect(OpticalFlow, node.topic("clockless/flow"))
    features = harness.collect(PointCloud, node.topic("clockless/features"))
    watcher = DiagnosticsWatcher(harness, node.fqn)
    camera, info = _camera(harness, node, "clockless")
    frames = 5
    for k in range(frames):
        info.publish(_calibration())
        camera.publish(_frame(k, 0))
    assert len(flows.wait_count(frames - 1, TIMEOUT_S)) == frames - 1, node.output()
    report = watcher.wait_until(
        lambda _: camera_count(watcher, "flows published", "clockless") == frames - 1, TIMEOUT_S
    )
    assert camera_count(watcher, "flows published", "clockless") == frames - 1, report
    assert camera_count(watcher, "resets", "clockless") == 0, report
    assert features.messages == []
    engine = watcher.engine()[2]
    assert engine.get("worker exceptions") == "0", engine
    output = node.output()
    assert "Traceback" not in output, output
    assert output.count("frames without stamps") == 1, output
