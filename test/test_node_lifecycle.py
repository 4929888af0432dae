"""The lifecycle (managed) node, driven over DDS with lifecycle_msgs services.

A manager process (this test) walks the node through configure, activate,
deactivate, activate again, cleanup and shutdown, and checks after each step
what a user would see: the transition's result, the node's state, whether
frames yield flow (of the known translation), and that the process exits
cleanly once finalized. A configure that cannot load its engine must fail
and leave the node unconfigured, not crash it.
"""

from __future__ import annotations

import itertools

import numpy as np
from lifecycle_msgs.msg import Transition
from neuflow_ros.msg import OpticalFlow
from polling import poll_until
from ros_test_support import (
    DiagnosticsWatcher,
    NodeProcess,
    change_state,
    flow_array,
    flow_for,
    lifecycle_state,
    prime_flow,
    rgb_msg,
    send_processed,
    textured_image,
)
from sensor_msgs.msg import Image

EXECUTABLE = "neuflow_lifecycle_node"
SHIFT = (1.0, 0.5)
"""The translation prime_flow sends between the frames of a pair."""
WIDTH, HEIGHT = 128, 96


def _assert_translation(message: OpticalFlow) -> None:
    flow = flow_array(message)
    interior = flow[16:-16, 16:-16].reshape(-1, 2)
    np.testing.assert_allclose(np.median(interior, axis=0), SHIFT, atol=0.2)


def test_transitions_switch_the_flow_on_and_off(harness, tmp_path):
    node = NodeProcess(tmp_path, {"diagnostic_period": 0.2}, executable=EXECUTABLE)
    stamps = itertools.count(1_000_000_000, 50_000_000)
    try:
        flows = harness.collect(OpticalFlow, node.topic("flow"))
        camera = harness.publisher(Image, node.input_topic("image"), reliable=True)
        watcher = DiagnosticsWatcher(harness, node.fqn)
        assert lifecycle_state(harness, node) == "unconfigured", node.output()
        assert camera.get_subscription_count() == 0, "subscribed before activation"

        assert change_state(harness, node, Transition.TRANSITION_CONFIGURE), node.output()
        assert lifecycle_state(harness, node) == "inactive"
        watcher.wait_until(lambda _: watcher.engine()[2].get("engine state") == "inactive", 10.0)
        level, _, values = watcher.engine()
        assert values.get("engine state") == "inactive", node.output()
        assert level == 0, watcher.engine()
        assert harness.wait_for_publishers(node.topic("flow")), node.output()

        for _ in range(2):  # a second activation must work without configuring again
            assert change_state(harness, node, Transition.TRANSITION_ACTIVATE), node.output()
            assert lifecycle_state(harness, node) == "active"
            assert poll_until(lambda: camera.get_subscription_count() > 0), node.output()
            prime_flow(flows, camera, stamps, node, (WIDTH, HEIGHT))
            # A pair whose first frame the worker has taken: no drop can pair it otherwise.
            first, second = next(stamps), next(stamps)
            send_processed(camera, watcher, rgb_msg(textured_image(WIDTH, HEIGHT), first))
            camera.publish(rgb_msg(textured_image(WIDTH, HEIGHT, SHIFT), second))
            received = flow_for(flows, second, timeout_s=10.0)
            assert received is not None, node.output()
            _assert_translation(received)

            assert change_state(harness, node, Transition.TRANSITION_DEACTIVATE), node.output()
            assert lifecycle_state(harness, node) == "inactive"
            assert poll_until(lambda: camera.get_subscription_count() == 0), node.output()
            first, second = next(stamps), next(stamps)
            camera.publish(rgb_msg(textured_image(WIDTH, HEIGHT), first))
            camera.publish(rgb_msg(textured_image(WIDTH, HEIGHT, SHIFT), second))
            assert flow_for(flows, second, timeout_s=1.0) is None, "flow while inactive"

        assert change_state(harness, node, Transition.TRANSITION_CLEANUP), node.output()
        assert lifecycle_state(harness, node) == "unconfigured"
        assert poll_until(lambda: harness.node.count_publishers(node.topic("flow")) == 0), \
            "publishers outlive cleanup"

        assert change_state(harness, node, Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
        code = node.wait_exit(5.0)
        output = node.output()
        assert code == 0, output
        assert "Traceback" not in output, output
    finally:
        node.close()


def test_configure_fails_cleanly_when_the_engine_cannot_load(harness, tmp_path):
    node = NodeProcess(
        tmp_path,
        {"backend": "neuflow_v2", "checkpoint": str(tmp_path / "missing.pth"),
         "allow_dis_fallback": False},
        executable=EXECUTABLE,
    )
    try:
        assert not change_state(harness, node, Transition.TRANSITION_CONFIGURE), node.output()
        assert lifecycle_state(harness, node) == "unconfigured"
        output = node.output()
        assert "missing.pth" in output, output
        assert "Traceback" not in output, output
        assert node.process.poll() is None, "a failed configure must not end the process"
    finally:
        node.close()


def test_configure_reports_a_mistyped_override(harness, tmp_path):
    """Parameters take overrides at construction; the report comes with configure."""
    node = NodeProcess(tmp_path, extra_args=["-p", "tracking.max_track:=50"],
                       executable=EXECUTABLE)
    report = "'tracking.max_track' is not a parameter of this node"
    try:
        assert lifecycle_state(harness, node) == "unconfigured", node.output()
        assert report not in node.output()
        assert change_state(harness, node, Transition.TRANSITION_CONFIGURE), node.output()
        assert poll_until(lambda: report in node.output(), 5.0), node.output()
        (line,) = [line for line in node.output().splitlines() if report in line]
        assert "[WARN]" in line and "'tracking.max_tracks'" in line, line
    finally:
        node.close()
