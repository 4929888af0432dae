"""Camera intrinsics and lens distortion from a ROS CameraInfo, without ROS.

Visual-odometry back ends (VINS-Fusion, OpenVINS, ...) expect feature
observations as undistorted normalized coordinates (x/z, y/z), and epipolar
geometry (fundamental / essential matrices) only holds for undistorted points.
This module turns the CameraInfo fields into those coordinates. It takes the
fields as plain values (or any object with CameraInfo's field names) so that
it stays ROS-free and testable alone.

A calibration that cannot be right is refused with a CalibrationError whose
``reason`` says which check failed, so the node can count and report it and
keep the last good model instead of failing on every frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

# Many iterations and a tight tolerance: the default of cv2.undistortPoints
# (5 iterations) leaves errors of 1e-3 and more near the corners of
# strongly distorted lenses.
_UNDISTORT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)

# Number of coefficients each supported CameraInfo distortion model carries.
_COEFFICIENT_COUNTS = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}
_NO_DISTORTION_MODELS = ("", "none")
_OPENCV_MINOR_VERSION = tuple(int(part) for part in cv2.__version__.split(".")[:2])

NON_FINITE = "non_finite"
BAD_FOCAL = "bad_focal"
BAD_MATRIX = "bad_matrix"
UNKNOWN_MODEL = "unknown_model"
BAD_DISTORTION = "bad_distortion"
BAD_SIZE = "bad_size"


class CalibrationError(ValueError):
    """CameraInfo fields no camera could have; ``reason`` is one of the constants above."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _undistort_pinhole(points: np.ndarray, k: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Undistort with the Brown-Conrady model, whatever the OpenCV major version.

    OpenCV 4 only takes termination criteria through undistortPointsIter;
    OpenCV 5 folded them into undistortPoints. ROS distributions ship OpenCV 4.
    """
    undistort_iter = getattr(cv2, "undistortPointsIter", None)
    if undistort_iter is not None:
        return undistort_iter(points, k, d, None, None, _UNDISTORT_CRITERIA)
    return cv2.undistortPoints(points, k, d, criteria=_UNDISTORT_CRITERIA)


def _undistort_fisheye(points: np.ndarray, k: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Undistort with the Kannala-Brandt model, whatever the OpenCV 4 minor version.

    cv2.fisheye.undistortPoints takes termination criteria since OpenCV 4.6;
    Ubuntu 22.04 (ROS 2 Humble) ships 4.5.4, whose fixed 10 Newton steps
    already converge to about 1e-15 on the lenses in test_camera_model.
    """
    if _OPENCV_MINOR_VERSION >= (4, 6):
        return cv2.fisheye.undistortPoints(points, k, d, criteria=_UNDISTORT_CRITERIA)
    return cv2.fisheye.undistortPoints(points, k, d)


@dataclass(frozen=True, eq=False)
class CameraModel:
    """Pinhole intrinsics plus one of the CameraInfo distortion models.

    `rectification` (R) and `projection` (P) are kept for consumers that work
    in the rectified stereo frame; the normalized coordinates given here do
    NOT apply R, because VIO back ends calibrate their camera-IMU extrinsics
    against the unrectified camera frame.
    """

    distortion_model: str
    camera_matrix: np.ndarray
    distortion: np.ndarray
    width: int
    height: int
    rectification: np.ndarray | None = None
    projection: np.ndarray | None = None

    @classmethod
    def from_camera_info(
        cls,
        distortion_model: str,
        d: Sequence[float],
        k: Sequence[float],
        width: int,
        height: int,
        p: Sequence[float] | None = None,
        r: Sequence[float] | None = None,
        binning: tuple[int, int] = (0, 0),
        roi: tuple[int, int, int, int] = (0, 0, 0, 0),
    ) -> CameraModel:
        """Validate CameraInfo fields and build a model of the images they describe.

        ``binning`` (x, y) and ``roi`` (x_offset, y_offset, width, height) are
        applied as image_geometry applies them: the images are the ROI of the
        calibrated sensor, binned, so K and P move by the ROI offset and shrink
        by the binning, and the model's size is the ROI size over the binning.
        0 binning means 1; an all-zero ROI means the full sensor.

        Raises CalibrationError for an unknown distortion model, a coefficient
        count the model does not take, an uncalibrated (all-zero) or
        malformed K, non-finite values, or a non-positive image size.
        """
        model = distortion_model.strip().lower()
        distortion = _distortion_coefficients(model, d)
        camera_matrix = _camera_matrix(k)
        projection = _optional_matrix(p, (3, 4), "P")
        if int(width) <= 0 or int(height) <= 0:
            raise CalibrationError(
                BAD_SIZE, f"camera image size must be positive, got {width}x{height}"
            )
        binning_x, binning_y = (max(1, int(value)) for value in binning)
        x_offset, y_offset, roi_width, roi_height = (int(value) for value in roi)
        if (x_offset, y_offset, roi_width, roi_height) == (0, 0, 0, 0):
            roi_width, roi_height = int(width), int(height)
        for matrix in (camera_matrix, projection):
            if matrix is not None:
                matrix[0, 2] = (matrix[0, 2] - x_offset) / binning_x
                matrix[1, 2] = (matrix[1, 2] - y_offset) / binning_y
                matrix[0, 0] /= binning_x
                matrix[1, 1] /= binning_y
        if roi_width // binning_x <= 0 or roi_height // binning_y <= 0:
            raise CalibrationError(
                BAD_SIZE,
                f"ROI {roi_width}x{roi_height} binned {binning_x}x{binning_y} leaves no image",
            )
        return cls(
            distortion_model=model if model not in _NO_DISTORTION_MODELS else "none",
            camera_matrix=camera_matrix,
            distortion=distortion,
            width=roi_width // binning_x,
            height=roi_height // binning_y,
            rectification=_optional_matrix(r, (3, 3), "R"),
            projection=projection,
        )

    def undistort_normalized(self, pixels: np.ndarray) -> np.ndarray:
        """Map distorted pixel positions (N, 2) to undistorted (x/z, y/z), float64."""
        points = _as_points(pixels)
        if points.shape[0] == 0:
            return np.empty((0, 2), dtype=np.float64)
        cv_points = points.reshape(-1, 1, 2)
        if self.distortion_model == "equidistant":
            normalized = _undistort_fisheye(cv_points, self.camera_matrix, self.distortion)
        else:
            normalized = _undistort_pinhole(cv_points, self.camera_matrix, self.distortion)
        return normalized.reshape(-1, 2)

    def undistort_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Undistorted positions in pixels of the same K, where epipolar geometry holds."""
        normalized = self.undistort_normalized(pixels)
        homogeneous = np.hstack([normalized, np.ones((normalized.shape[0], 1))])
        projected = homogeneous @ self.camera_matrix.T
        return projected[:, :2] / projected[:, 2:3]


def camera_model_from_info(info: Any) -> CameraModel:
    """The model of a CameraInfo message (rclpy's or rosbags'), read by field name."""
    roi = info.roi
    return CameraModel.from_camera_info(
        info.distortion_model, info.d, info.k, info.width, info.height,
        p=info.p, r=info.r, binning=(info.binning_x, info.binning_y),
        roi=(roi.x_offset, roi.y_offset, roi.width, roi.height),
    )


def _distortion_coefficients(model: str, d: Sequence[float]) -> np.ndarray:
    coefficients = np.asarray(d, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(coefficients)):
        raise CalibrationError(
            NON_FINITE, f"distortion coefficients must be finite, got {coefficients.tolist()}"
        )
    if model in _NO_DISTORTION_MODELS:
        if np.any(coefficients != 0.0):
            raise CalibrationError(
                BAD_DISTORTION,
                f"distortion model {model!r} (none) needs all-zero D, got {coefficients.tolist()}",
            )
        return np.zeros(5, dtype=np.float64)
    if model not in _COEFFICIENT_COUNTS:
        supported = sorted([*_COEFFICIENT_COUNTS, "none"])
        raise CalibrationError(
            UNKNOWN_MODEL, f"unknown distortion model {model!r}; supported: {supported}"
        )
    expected = _COEFFICIENT_COUNTS[model]
    if model == "plumb_bob" and coefficients.size < expected:
        # CameraInfo publishers often send k1, k2, p1, p2 only; k3 is then zero.
        return np.pad(coefficients, (0, expected - coefficients.size))
    if coefficients.size != expected:
        raise CalibrationError(
            BAD_DISTORTION,
            f"distortion model {model!r} takes {expected} coefficients, got {coefficients.size}",
        )
    return coefficients


def _camera_matrix(k: Sequence[float]) -> np.ndarray:
    values = np.array(k, dtype=np.float64).reshape(-1)  # a copy: binning adjusts it in place
    if values.size != 9:
        raise CalibrationError(
            BAD_MATRIX, f"K must have 9 values (row-major 3x3), got {values.size}"
        )
    if not np.all(np.isfinite(values)):
        raise CalibrationError(NON_FINITE, f"K must be finite, got {values.tolist()}")
    if np.all(values == 0.0):
        raise CalibrationError(BAD_FOCAL, "K is all zeros: the camera is uncalibrated")
    matrix = values.reshape(3, 3)
    if matrix[0, 0] <= 0.0 or matrix[1, 1] <= 0.0:
        raise CalibrationError(
            BAD_FOCAL, f"K needs positive focal lengths, got fx={matrix[0, 0]} fy={matrix[1, 1]}"
        )
    if matrix[1, 0] != 0.0 or not np.array_equal(matrix[2], [0.0, 0.0, 1.0]):
        raise CalibrationError(
            BAD_MATRIX,
            f"K must be upper-triangular with last row [0, 0, 1], got {values.tolist()}",
        )
    return matrix


def _optional_matrix(
    values: Sequence[float] | None, shape: tuple[int, int], name: str
) -> np.ndarray | None:
    if values is None:
        return None
    array = np.array(values, dtype=np.float64).reshape(-1)  # a copy, as for K
    expected = shape[0] * shape[1]
    if array.size != expected:
        raise CalibrationError(
            BAD_MATRIX, f"{name} must have {expected} finite values, got {array.tolist()}"
        )
    if not np.all(np.isfinite(array)):
        raise CalibrationError(
            NON_FINITE, f"{name} must have {expected} finite values, got {array.tolist()}"
        )
    return array.reshape(shape)


def _as_points(pixels: np.ndarray) -> np.ndarray:
    points = np.asarray(pixels, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"pixels must have shape (N, 2), got {points.shape}")
    return np.ascontiguousarray(points)
