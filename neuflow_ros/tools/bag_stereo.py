"""The stereo part of neuflow-bag: right-image matches and disparity for a recorded pair.

The node's stereo outputs for a bag: left frames wait for the right frame
of the same stamp (the node's StereoPairing, on bag time), the left->right
flow goes into the left pair's engine call (OfflineFlowPipeline), and the
ROS-free core checks and refines the matches. Unpaired frames and
calibrations that cannot be matched are counted and warned about once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from neuflow_ros.imaging.image_conversion import scalar_to_image_payload
from neuflow_ros.tools.offline_pipeline import StereoOutput
from neuflow_ros.tracking.camera_model import CameraModel
from neuflow_ros.tracking.stereo_geometry import StereoCalibrationError, StereoRig
from neuflow_ros.tracking.stereo_matching import (
    StereoMatchConfig,
    StereoTrackMatcher,
    TrackMatches,
    dense_disparity,
)
from neuflow_ros.tracking.tracker import TrackSet

INVALID_DISPARITY = -1.0
"""As the node writes it: below min_disparity 0."""


class BagStereo:
    """Calibration of both sides, the matcher, and what was refused and why."""

    def __init__(self, config: StereoMatchConfig, warn: Callable[[str], None]) -> None:
        self.config = config
        self._warn = warn
        self._matcher = StereoTrackMatcher(config)
        self.models: dict[str, CameraModel | None] = {"left": None, "right": None}
        self._rig: StereoRig | None = None
        self.counts: Counter[str] = Counter()
        self._warned: set[str] = set()

    def set_model(self, side: str, model: CameraModel | None) -> None:
        self.models[side] = model
        self._rig = None

    def rig(self, width: int, height: int) -> StereoRig | None:
        """The rig for frames of this size, or None (counted, warned once per reason)."""
        try:
            if self._rig is None:
                left, right = self.models["left"], self.models["right"]
                if left is None or right is None:
                    raise StereoCalibrationError(
                        "missing_camera_info", "no usable camera_info on "
                        + ("the left" if left is None else "the right") + " camera_info topic"
                    )
                self._rig = StereoRig.from_models(left, right)
            if (self._rig.left.width, self._rig.left.height) != (width, height):
                raise StereoCalibrationError(
                    "size_mismatch", f"camera_info is for {self._rig.left.width}x"
                    f"{self._rig.left.height} images, the frames are {width}x{height}"
                )
        except StereoCalibrationError as error:
            self.refuse(error.reason, str(error))
            return None
        return self._rig

    def refuse(self, reason: str, detail: str) -> None:
        self.counts[f"disabled: {reason}"] += 1
        if reason not in self._warned:
            self._warned.add(reason)
            self._warn(f"stereo matching off ({reason}): {detail}; counted in the summary")

    def match(self, tracks: TrackSet, stereo: StereoOutput, rig: StereoRig) -> TrackMatches:
        assert stereo.flow.backward is not None, "stereo pairs are computed with backward flow"
        matches = self._matcher.match(tracks, stereo.flow.forward, stereo.flow.backward, rig,
                                      (stereo.left_gray, stereo.right_gray))
        self.counts["frames matched"] += 1
        self.counts["matches"] += int(matches.matched.sum())
        return matches

    def disparity_message(self, messages: Any, header: Any, stereo: StereoOutput,
                          rig: StereoRig) -> Any:
        """stereo_msgs/DisparityImage on the left image grid, as the node publishes it."""
        assert stereo.flow.backward is not None, "stereo pairs are computed with backward flow"
        disparity = dense_disparity(stereo.flow.forward, stereo.flow.backward, rig, self.config)
        disparity[~np.isfinite(disparity)] = INVALID_DISPARITY
        return messages.disparity_image(
            header, scalar_to_image_payload(disparity), rig.focal_length, rig.baseline,
            float(disparity.shape[1]),
        )

    def summary(self) -> str:
        return ", ".join(f"{key} {value}" for key, value in sorted(self.counts.items()))
