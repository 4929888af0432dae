"""Which calibration a camera's tracks use: the last CameraInfo that passed every check.

Drivers send CameraInfo with every frame, and a bad one (NaN or zero K, an
unknown model, a calibration made at another resolution) used to replace the
good model and make the tracker fail on every following frame. The gate
checks each message before it may replace anything; a rejected one is
returned to the caller to count and log, and the last good model stays.
Without ROS imports: it reads CameraInfo fields by name.
"""

from __future__ import annotations

from typing import Any

from ..tracking.camera_model import CalibrationError, CameraModel, camera_model_from_info

SIZE_MISMATCH = "size_mismatch"
"""The calibration describes images of another size than the camera sends."""


class CalibrationGate:
    """One camera's accepted calibration, and the image size it must describe."""

    def __init__(self) -> None:
        self.model: CameraModel | None = None
        """The last calibration that passed every check; None until one has."""
        self._unchecked: CameraModel | None = None
        self._image_size: tuple[int, int] | None = None

    def offer(self, info: Any) -> CalibrationError | None:
        """Take a CameraInfo; returns why it was rejected, or None.

        One that arrives before any image is kept aside and checked against
        the first image's size.
        """
        try:
            model = camera_model_from_info(info)
        except CalibrationError as error:
            return error
        if self._image_size is None:
            self._unchecked = model
            return None
        return self._accept(model)

    def image_arrived(self, width: int, height: int) -> CalibrationError | None:
        """Note a frame's size; returns the rejection of a calibration waiting for it, or None."""
        self._image_size = (width, height)
        if self._unchecked is None:
            return None
        model, self._unchecked = self._unchecked, None
        return self._accept(model)

    def _accept(self, model: CameraModel) -> CalibrationError | None:
        assert self._image_size is not None
        width, height = self._image_size
        if (model.width, model.height) != (width, height):
            return CalibrationError(
                SIZE_MISMATCH,
                f"it describes {model.width}x{model.height} images (after binning and ROI) "
                f"but the camera sends {width}x{height}",
            )
        self.model = model
        return None
