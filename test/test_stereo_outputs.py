"""StereoOutputs.rig_for: which CameraInfos the node matches with, and the reason when not.

The DDS test (test_node_stereo_bad_input) covers the cases end to end; an
uncalibrated CameraInfo (K all zero) is checked here on the adapter alone,
because over DDS the right camera's own tracker still refuses such a
CameraInfo with a traceback per frame until the CameraInfo validation of
issue 13 lands.
"""

import time

import numpy as np
from sensor_msgs.msg import CameraInfo
from stereo_rigs import camera_info_fields, rectified_rig

from neuflow_ros.node.flow_worker import CameraFrame, StereoFlow
from neuflow_ros.node.parameters import StereoSettings
from neuflow_ros.node.stereo_health import StereoHealth
from neuflow_ros.node.stereo_outputs import StereoOutputs
from neuflow_ros.tracking.stereo_matching import StereoMatchConfig


def camera_info(fields: dict) -> CameraInfo:
    info = CameraInfo(width=fields["width"], height=fields["height"],
                      distortion_model=fields["distortion_model"])
    info.d, info.k, info.r, info.p = fields["d"], fields["k"], fields["r"], fields["p"]
    return info


def stereo_flow(width: int, height: int) -> StereoFlow:
    pixels = np.zeros((height, width, 3), np.uint8)
    frames = [CameraFrame(side, 1, side, "rgb8", pixels, "rgb", time.monotonic())
              for side in ("left", "right")]
    return StereoFlow(*frames, result=None)


def outputs_with(infos: dict):
    warnings = []
    health = StereoHealth("n: stereo left/right", "left", "right")
    outputs = StereoOutputs(
        StereoSettings("left", "right", 0, StereoMatchConfig()), health, infos.get, None,
        lambda reason, message: warnings.append(reason),
    )
    return outputs, health, warnings


def test_good_infos_give_the_rig_and_an_uncalibrated_one_the_reason():
    left, right = (camera_info_fields(side) for side in rectified_rig())
    infos = {"left": camera_info(left), "right": camera_info(right)}
    outputs, health, warnings = outputs_with(infos)
    flow = stereo_flow(left["width"], left["height"])
    assert outputs.rig_for(flow) is not None
    infos["right"] = camera_info({**right, "k": [0.0] * 9})
    assert outputs.rig_for(flow) is None
    assert outputs.rig_for(flow) is None
    values = dict(health.report(time.monotonic()).values)
    assert values["disabled: invalid_camera_info"] == "2"
    assert warnings == ["invalid_camera_info", "invalid_camera_info"]


def test_frames_of_another_size_than_the_calibration_are_refused():
    left, right = (camera_info_fields(side) for side in rectified_rig())
    outputs, health, _ = outputs_with({"left": camera_info(left), "right": camera_info(right)})
    assert outputs.rig_for(stereo_flow(left["width"] * 2, left["height"] * 2)) is None
    assert dict(health.report(time.monotonic()).values)["disabled: size_mismatch"] == "1"
