"""StereoOutputs.rig_for: which calibrations the node matches with, and the reason when not.

The DDS tests (test_node_stereo_bad_input) cover the cases end to end; here
the adapter alone gets the cameras' accepted models (what each camera's
CalibrationGate lets through) and frames of another size.
"""

import time

import numpy as np
from stereo_rigs import rectified_rig

from neuflow_ros.node.flow_worker import CameraFrame, StereoFlow
from neuflow_ros.node.parameters import StereoSettings
from neuflow_ros.node.stereo_health import StereoHealth
from neuflow_ros.node.stereo_outputs import StereoOutputs
from neuflow_ros.tracking.stereo_matching import StereoMatchConfig


def stereo_flow(width: int, height: int) -> StereoFlow:
    pixels = np.zeros((height, width, 3), np.uint8)
    frames = [CameraFrame(side, 1, side, "rgb8", pixels, "rgb", time.monotonic())
              for side in ("left", "right")]
    return StereoFlow(*frames, result=None)


def outputs_with(models: dict):
    warnings = []
    health = StereoHealth("n: stereo left/right", "left", "right")
    outputs = StereoOutputs(
        StereoSettings("left", "right", 0, StereoMatchConfig()), health, models.get, None,
        lambda reason, message: warnings.append(reason),
    )
    return outputs, health, warnings


def test_accepted_models_give_the_rig_and_a_camera_without_one_the_reason():
    left, right = (side.model() for side in rectified_rig())
    models = {"left": left, "right": right}
    outputs, health, warnings = outputs_with(models)
    flow = stereo_flow(left.width, left.height)
    assert outputs.rig_for(flow) is not None
    models["right"] = None  # every right CameraInfo so far was refused at the gate
    assert outputs.rig_for(flow) is None
    assert outputs.rig_for(flow) is None
    values = dict(health.report(time.monotonic()).values)
    assert values["disabled: missing_camera_info"] == "2"
    assert warnings == ["missing_camera_info", "missing_camera_info"]


def test_frames_of_another_size_than_the_calibration_are_refused():
    left, right = (side.model() for side in rectified_rig())
    outputs, health, _ = outputs_with({"left": left, "right": right})
    assert outputs.rig_for(stereo_flow(left.width * 2, left.height * 2)) is None
    assert dict(health.report(time.monotonic()).values)["disabled: size_mismatch"] == "1"
