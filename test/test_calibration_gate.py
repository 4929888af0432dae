"""CalibrationGate: only a CameraInfo that passes every check replaces the model in use."""

from __future__ import annotations

import math

from calibration_infos import CX, CY, FX, FY, HEIGHT, WIDTH, camera_info

from neuflow_ros.node.calibration_gate import CalibrationGate


def test_a_rejected_calibration_never_replaces_the_good_one():
    gate = CalibrationGate()
    assert gate.image_arrived(WIDTH, HEIGHT) is None
    assert gate.offer(camera_info()) is None
    good = gate.model
    assert good is not None and (good.width, good.height) == (WIDTH, HEIGHT)
    bad = {
        "non_finite": camera_info(k=[math.nan, 0, CX, 0, FY, CY, 0, 0, 1]),
        "bad_focal": camera_info(k=[0.0] * 9),
        "size_mismatch": camera_info(width=2 * WIDTH, height=2 * HEIGHT),
    }
    for reason, info in bad.items():
        rejection = gate.offer(info)
        assert rejection is not None and rejection.reason == reason
        assert gate.model is good
    assert "1280x960" in str(gate.offer(bad["size_mismatch"]))


def test_a_calibration_before_the_first_image_is_checked_at_that_image():
    gate = CalibrationGate()
    assert gate.offer(camera_info(width=2 * WIDTH, height=2 * HEIGHT)) is None
    assert gate.model is None  # not used before it could be checked
    rejection = gate.image_arrived(WIDTH, HEIGHT)
    assert rejection is not None and rejection.reason == "size_mismatch"
    assert gate.model is None
    assert gate.image_arrived(WIDTH, HEIGHT) is None  # counted once, not per frame
    # Twice the resolution, binned 2x2: exactly these images.
    binned = camera_info(binning=(2, 2), width=2 * WIDTH, height=2 * HEIGHT,
                         k=[2 * FX, 0, 2 * CX, 0, 2 * FY, 2 * CY, 0, 0, 1])
    assert gate.offer(binned) is None
    assert gate.model is not None and gate.model.camera_matrix[0, 0] == FX
