"""Mistyped parameter overrides are reported; overrides for other nodes are not.

rclpy drops an override whose name the node never declares, so a typo in a
params file does nothing. The node process is started with such overrides
and its log is read, as a user would; the lifecycle node's report at
configure is in test_node_lifecycle.
"""

from __future__ import annotations

import pytest
from ros_test_support import NodeProcess, wait_for_process_ready

from neuflow_ros.node.parameters import PARAMETERS
from neuflow_ros.node.unknown_overrides import unknown_overrides

REPORT = "is not a parameter of this node"
DECLARED = {spec.name for spec in PARAMETERS} | {"use_sim_time"}


def _report_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if REPORT in line]


@pytest.mark.parametrize(("override", "meant"), [
    ("vins_features", "tracking.vins_features"),  # the name an earlier version documented
    ("max_tracks", "tracking.max_tracks"),
    ("tracking.vins_feature", "tracking.vins_features"),
    ("tracking.fb_treshold", "tracking.fb_threshold"),
    ("input_qos.relability", "input_qos.reliability"),
    ("backnd", "backend"),
    ("drop_frame", "drop_frames"),
])
def test_a_typo_names_the_parameter_it_most_likely_meant(override, meant):
    (found,) = unknown_overrides([override], DECLARED.__contains__)
    assert (found.name, found.meant) == (override, meant)


@pytest.mark.parametrize("override", [
    "use_sim_time",  # declared by rclpy itself
    "qos_overrides./parameter_events.publisher.depth",
    "depth",  # a segment of two parameters: no guess
    "frame_id", "rate", "image_topic", "publish_rate",
])
def test_overrides_that_do_not_look_meant_for_the_node_are_not_reported(override):
    assert unknown_overrides([override], DECLARED.__contains__) == []


def test_node_warns_about_a_mistyped_override_and_keeps_running(harness, tmp_path):
    node = NodeProcess(tmp_path, extra_args=["-p", "vins_features:=true"])
    try:
        wait_for_process_ready(harness, node, 30.0)
        output = node.output()
    finally:
        node.close()
    (line,) = _report_lines(output)
    assert "[WARN]" in line
    assert "'vins_features'" in line
    assert "'tracking.vins_features'" in line


def test_shared_params_block_for_other_nodes_gives_no_warning(harness, tmp_path):
    """A `/**` block every node of a robot gets, plus blocks of other nodes in the same file."""
    shared = tmp_path / "robot.yaml"
    shared.write_text(
        "/**:\n  ros__parameters:\n    use_sim_time: false\n    frame_id: base_link\n"
        "    qos_overrides:\n      /tf:\n        publisher:\n          depth: 100\n"
        "/camera_driver:\n  ros__parameters:\n    rate: 30.0\n    vins_feature: true\n"
    )
    node = NodeProcess(tmp_path, {"tracking.vins_features": True},
                       extra_args=["--params-file", str(shared)])
    try:
        wait_for_process_ready(harness, node, 30.0)
        output = node.output()
    finally:
        node.close()
    assert _report_lines(output) == [], output
