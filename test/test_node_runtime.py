"""Several cameras, compressed input, inference-resolution output and run-time parameters.

Three node processes start together (start-up dominates the time on a 2-core
machine) and are reached over DDS as a user would.
"""

from __future__ import annotations

import itertools
import time

import cv2
import numpy as np
import pytest
from neuflow_ros.msg import OpticalFlow
from ros_test_support import (
    DiagnosticsWatcher,
    NodeProcess,
    camera_count,
    flow_array,
    flow_for,
    prime_flow,
    rgb_msg,
    send_processed,
    stamp_ns,
    textured_image,
)
from sensor_msgs.msg import CompressedImage, Image

WIDTH, HEIGHT = 128, 96
TIMEOUT_S = 10.0
_stamps = itertools.count(start=2_000_000_000_000, step=33_000_000)


def next_stamp() -> int:
    return next(_stamps)


def median_error(msg, shift) -> float:
    """Median |flow - shift| away from the borders (1/8 of the width, any grid size)."""
    flow = flow_array(msg)
    margin = flow.shape[1] // 8
    interior = flow[margin:-margin, margin:-margin]
    return float(np.median(np.abs(interior - np.asarray(shift, np.float32))))


@pytest.fixture(scope="module")
def nodes(harness, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runtime")
    started = {
        "multi": NodeProcess(tmp / "multi", {"cameras": ["front", "down"],
                                              "diagnostic_period": 0.2}),
        "compressed": NodeProcess(
            tmp / "compressed",
            {"transport": "compressed", "diagnostic_period": 0.2},
            remappings={"image": "/elsewhere/camera/image_raw"},
        ),
        "tunable": NodeProcess(tmp / "tunable", {
            "inference_width": 64, "inference_height": 48, "diagnostic_period": 0.2,
            "max_frame_gap": 1.0,
        }),
    }
    try:
        for process in started.values():
            assert DiagnosticsWatcher(harness, process.fqn).wait_engine_ready(), process.output()
        yield started
    finally:
        for process in started.values():
            process.close()


def test_two_cameras_get_their_own_history_and_outputs(harness, nodes):
    node = nodes["multi"]
    shifts = {"front": (1.5, -0.75), "down": (-1.0, 2.0)}
    publishers = {
        camera: harness.publisher(Image, node.input_topic(f"{camera}/image"), reliable=True)
        for camera in shifts
    }
    collectors = {
        camera: harness.collect(OpticalFlow, node.topic(f"{camera}/flow")) for camera in shifts
    }
    for camera in shifts:
        assert harness.wait_for_subscribers(publishers[camera])
        prime_flow(collectors[camera], publishers[camera], _stamps, node)
    watcher = DiagnosticsWatcher(harness, node.fqn)
    first, second = next_stamp(), next_stamp()
    for camera in shifts:
        send_processed(
            publishers[camera], watcher,
            rgb_msg(textured_image(WIDTH, HEIGHT), first, f"{camera}_cam"), camera,
        )
    for camera, shift in shifts.items():
        publishers[camera].publish(
            rgb_msg(textured_image(WIDTH, HEIGHT, shift), second, f"{camera}_cam")
        )
    for camera, shift in shifts.items():
        msg = flow_for(collectors[camera], second, TIMEOUT_S)
        assert msg is not None, f"no flow for camera {camera}"
        assert msg.header.frame_id == f"{camera}_cam"
        assert stamp_ns(msg.previous_stamp) == first
        assert median_error(msg, shift) < 0.25
    report = watcher.wait_until(lambda r: len(r) == 3, 5.0)
    assert {name.rsplit(" ", 1)[-1] for name in report if "camera" in name} == {"front", "down"}


@pytest.mark.parametrize(("format_", "extension"), [("jpeg", ".jpg"),
                                                    ("rgb8; png compressed bgr8", ".png")])
def test_compressed_input_follows_the_remapped_image_topic(harness, nodes, format_, extension):
    node = nodes["compressed"]
    topic = "/elsewhere/camera/image_raw/compressed"
    publisher = harness.publisher(CompressedImage, topic, reliable=True)
    collector = harness.collect(OpticalFlow, node.topic("flow"))
    assert harness.wait_for_subscribers(publisher), node.output()
    shift = (1.5, -0.75)

    def compressed(stamp_value: int, image_shift) -> CompressedImage:
        bgr = textured_image(WIDTH, HEIGHT, image_shift)[:, :, ::-1]
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if extension == ".jpg" else []
        ok, encoded = cv2.imencode(extension, bgr, params)
        assert ok
        msg = CompressedImage(format=format_, data=encoded.tobytes())
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_value, 1_000_000_000)
        msg.header.frame_id = "compressed_cam"
        return msg

    primed = None
    for _ in range(40):  # until all endpoints have matched
        stamp_value = next_stamp()
        publisher.publish(compressed(stamp_value, (0.0, 0.0)))
        primed = flow_for(collector, stamp_value, 0.25)
        if primed is not None:
            break
    assert primed is not None, node.output()
    watcher = DiagnosticsWatcher(harness, node.fqn)
    first, second = next_stamp(), next_stamp()
    send_processed(publisher, watcher, compressed(first, (0.0, 0.0)))
    publisher.publish(compressed(second, shift))
    received = flow_for(collector, second, TIMEOUT_S)
    assert received is not None, node.output()
    assert stamp_ns(received.previous_stamp) == first
    assert (received.flow.width, received.flow.height) == (WIDTH, HEIGHT)
    assert received.header.frame_id == "compressed_cam"
    assert median_error(received, shift) < 0.3


def test_parameters_change_at_run_time(harness, nodes):
    node = nodes["tunable"]
    publisher = harness.publisher(Image, node.input_topic("image"), reliable=True)
    collector = harness.collect(OpticalFlow, node.topic("flow"))
    watcher = DiagnosticsWatcher(harness, node.fqn)
    assert harness.wait_for_subscribers(publisher)
    prime_flow(collector, publisher, _stamps, node)
    shift = (2.0, -1.0)

    def pair() -> OpticalFlow:
        first, second = next_stamp(), next_stamp()
        send_processed(publisher, watcher, rgb_msg(textured_image(WIDTH, HEIGHT), first))
        publisher.publish(rgb_msg(textured_image(WIDTH, HEIGHT, shift), second))
        msg = flow_for(collector, second, TIMEOUT_S)
        assert msg is not None
        return msg

    at_input = pair()
    assert (at_input.flow.width, at_input.flow.height) == (WIDTH, HEIGHT)

    [result] = harness.set_parameters(node.fqn, {"publish_resolution": "inference"})
    assert result.successful, result.reason
    at_inference = pair()
    assert (at_inference.flow.width, at_inference.flow.height) == (64, 48)
    assert (at_inference.input_width, at_inference.input_height) == (WIDTH, HEIGHT)
    # Vectors stay in camera pixels: the 2x smaller grid does not halve them.
    assert median_error(at_inference, shift) < 0.5

    [rejected] = harness.set_parameters(node.fqn, {"publish_resolution": "thumbnail"})
    assert not rejected.successful
    assert "publish_resolution" in rejected.reason
    [read_only] = harness.set_parameters(node.fqn, {"backend": "neuflow_v2"})
    assert not read_only.successful
    [out_of_range] = harness.set_parameters(node.fqn, {"max_frame_gap": -3.0})
    assert not out_of_range.successful
    [stall] = harness.set_parameters(node.fqn, {"diagnostics.stall_timeout": 30.0})
    assert stall.successful, stall.reason
    level, _, engine_values = watcher.engine()
    assert level == 0 and "engine call running (s)" in engine_values
    assert (pair().flow.width, pair().flow.height) == (64, 48), "a rejected change applied"

    [result] = harness.set_parameters(node.fqn, {"max_frame_gap": 0.1})
    assert result.successful, result.reason
    before = camera_count(watcher, "resets: gap_too_large")
    first = next_stamp()
    for _ in range(6):  # 0.2 s later
        next_stamp()
    second = next_stamp()
    send_processed(publisher, watcher, rgb_msg(textured_image(WIDTH, HEIGHT), first))
    send_processed(publisher, watcher, rgb_msg(textured_image(WIDTH, HEIGHT, shift), second))
    watcher.wait_until(
        lambda _: camera_count(watcher, "resets: gap_too_large") > before, TIMEOUT_S
    )
    assert camera_count(watcher, "resets: gap_too_large") == before + 1
    assert all(stamp_ns(m.header.stamp) != second for m in collector.messages)

    [result] = harness.set_parameters(node.fqn, {"drop_frames": False})
    assert result.successful, result.reason
    # Without dropping, a burst faster than the worker yields flow for every frame, in order.
    send_processed(publisher, watcher, rgb_msg(textured_image(WIDTH, HEIGHT), next_stamp()))
    dropped_before = camera_count(watcher, "frames dropped")
    burst = [next_stamp() for _ in range(15)]
    for index, stamp_value in enumerate(burst):
        publisher.publish(rgb_msg(textured_image(WIDTH, HEIGHT, (0.5 * (index % 2), 0.0)),
                                  stamp_value))
        time.sleep(0.003)
    assert collector.wait_for(
        lambda messages: {stamp_ns(m.header.stamp) for m in messages} >= set(burst), TIMEOUT_S
    ), "a frame of the burst yielded no flow"
    in_burst = [stamp_ns(m.header.stamp) for m in collector.messages
                if stamp_ns(m.header.stamp) in set(burst)]
    assert in_burst == burst
    assert camera_count(watcher, "frames dropped") == dropped_before
