"""The stereo pair's calibration checks and ~/disparity, on the worker thread.

The ROS-free core (tracking.stereo_geometry, tracking.stereo_matching) does
the geometry; this adapter builds the rig from the two cameras' accepted
calibrations (each camera's CalibrationGate has already refused CameraInfos
that fail its checks, counted on that camera),
refuses a pair that cannot be matched (counted, with one rate-limited
warning per reason) so that temporal flow and tracks go on, and turns the
dense disparity into a stereo_msgs/DisparityImage for whoever subscribed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sensor_msgs.msg import RegionOfInterest
from std_msgs.msg import Header
from stereo_msgs.msg import DisparityImage

from ..imaging.image_conversion import scalar_to_image_payload
from ..tracking.camera_model import CameraModel
from ..tracking.stereo_geometry import StereoCalibrationError, StereoRig
from ..tracking.stereo_matching import dense_disparity
from .flow_worker import StereoFlow
from .parameters import StereoSettings
from .ros_messages import image_msg
from .stereo_health import StereoHealth
from .track_outputs import flow_on_image_grid

INVALID_DISPARITY = -1.0
"""Written where no match passed the checks: below min_disparity (0), as
stereo_msgs/DisparityImage marks invalid pixels."""


class StereoOutputs:
    """Rig of the pair from its CameraInfos, and the disparity image."""

    def __init__(
        self,
        settings: StereoSettings,
        health: StereoHealth,
        camera_model_of: Callable[[str], CameraModel | None],
        disparity_publisher: Any,
        warn: Callable[[str, str], None],
    ) -> None:
        """``warn(reason, message)`` logs a rate-limited warning keyed by reason."""
        self.settings = settings
        self.health = health
        self._camera_model_of = camera_model_of
        self._disparity_publisher = disparity_publisher
        self._warn = warn
        self._models: tuple[CameraModel, CameraModel] | None = None
        self._rig: StereoRig | None = None
        self._rig_error: tuple[str, str] | None = None

    def rig_for(self, stereo: StereoFlow) -> StereoRig | None:
        """The rig for this frame pair, or None (counted and warned) when it cannot be matched."""
        try:
            rig = self._current_rig()
            width, height = stereo.left.width, stereo.left.height
            if (rig.left.width, rig.left.height) != (width, height):
                raise StereoCalibrationError(
                    "size_mismatch",
                    f"camera_info is {rig.left.width}x{rig.left.height} but the frames are "
                    f"{width}x{height}",
                )
        except StereoCalibrationError as error:
            self.refuse(error.reason, str(error))
            return None
        return rig

    def refuse(self, reason: str, detail: str) -> None:
        """Count a frame pair that is not matched, and warn (rate-limited) why."""
        self.health.disabled(reason, detail, time.monotonic())
        self._warn(
            reason,
            f"stereo matching of {self.settings.left}/{self.settings.right} is off for this "
            f"frame ({reason}): {detail}; temporal flow and tracks go on",
        )

    def _current_rig(self) -> StereoRig:
        left = self._camera_model_of(self.settings.left)
        right = self._camera_model_of(self.settings.right)
        if left is None or right is None:
            missing = self.settings.left if left is None else self.settings.right
            raise StereoCalibrationError(
                "missing_camera_info",
                f"no usable camera_info for camera '{missing}' (none received, or none that "
                "passed the checks)",
            )
        models = (left, right)
        if self._models is None or any(
            a is not b for a, b in zip(models, self._models, strict=True)
        ):
            self._models = models
            self._rig, self._rig_error = None, None
            try:
                self._rig = StereoRig.from_models(left, right)
            except StereoCalibrationError as error:
                self._rig_error = (error.reason, str(error))
        if self._rig is None:
            assert self._rig_error is not None
            raise StereoCalibrationError(*self._rig_error)
        return self._rig

    def publish_disparity(self, stereo: StereoFlow, rig: StereoRig, header: Header) -> None:
        """~/disparity on the left image grid, only while someone subscribes."""
        if self._disparity_publisher.get_subscription_count() == 0:
            return
        width, height = stereo.left.width, stereo.left.height
        result = stereo.result
        assert result.backward is not None, "stereo pairs are computed with backward flow"
        disparity = dense_disparity(
            flow_on_image_grid(result.forward, width, height),
            flow_on_image_grid(result.backward, width, height),
            rig, self.settings.match,
        )
        disparity[~np.isfinite(disparity)] = INVALID_DISPARITY
        self._disparity_publisher.publish(
            DisparityImage(
                header=header,
                image=image_msg(header, scalar_to_image_payload(disparity)),
                f=rig.focal_length,
                t=rig.baseline,
                valid_window=RegionOfInterest(
                    x_offset=0, y_offset=0, width=width, height=height
                ),
                min_disparity=0.0,
                max_disparity=float(width),
                delta_d=0.0,
            )
        )
