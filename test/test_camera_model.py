"""Camera model tests against forward projections written independently here.

Known normalized points are distorted with each model's published formula
and mapped through K; undistortion must recover them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from calibration_infos import camera_info

from neuflow_ros.tracking.camera_model import CalibrationError, CameraModel, camera_model_from_info

FX, FY, CX, CY, SKEW = 420.0, 410.0, 322.5, 238.0, 0.0
K = [FX, SKEW, CX, 0.0, FY, CY, 0.0, 0.0, 1.0]
WIDTH, HEIGHT = 640, 480


def normalized_grid(extent: float) -> np.ndarray:
    values = np.linspace(-extent, extent, 9)
    x, y = np.meshgrid(values, values * 0.75)
    return np.stack([x.ravel(), y.ravel()], axis=1)


def to_pixels(distorted: np.ndarray) -> np.ndarray:
    x, y = distorted[:, 0], distorted[:, 1]
    return np.stack([FX * x + SKEW * y + CX, FY * y + CY], axis=1)


def distort_brown(points: np.ndarray, d: list[float]) -> np.ndarray:
    """plumb_bob (5 coefficients) and rational_polynomial (8) forward model."""
    k1, k2, p1, p2, k3 = d[:5]
    k4, k5, k6 = d[5:8] if len(d) == 8 else (0.0, 0.0, 0.0)
    x, y = points[:, 0], points[:, 1]
    r2 = x * x + y * y
    radial = (1 + k1 * r2 + k2 * r2**2 + k3 * r2**3) / (1 + k4 * r2 + k5 * r2**2 + k6 * r2**3)
    return np.stack(
        [
            x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y,
        ],
        axis=1,
    )


def distort_equidistant(points: np.ndarray, d: list[float]) -> np.ndarray:
    """Kannala-Brandt fisheye: theta_d = theta (1 + k1 theta^2 + ... + k4 theta^8)."""
    k1, k2, k3, k4 = d
    r = np.hypot(points[:, 0], points[:, 1])
    theta = np.arctan(r)
    theta_d = theta * (1 + k1 * theta**2 + k2 * theta**4 + k3 * theta**6 + k4 * theta**8)
    scale = np.where(r > 0, theta_d / np.where(r > 0, r, 1.0), 1.0)
    return points * scale[:, None]


CASES = [
    ("plumb_bob", [-0.28, 0.09, 0.0012, -0.0008, -0.015], distort_brown, 0.6),
    ("plumb_bob", [-0.2, 0.05, 0.001, 0.002], distort_brown, 0.6),
    (
        "rational_polynomial",
        [0.35, -0.05, 0.0007, -0.0011, 0.002, 0.62, -0.02, 0.004],
        distort_brown,
        0.8,
    ),
    ("equidistant", [0.05, -0.01, 0.003, -0.0005], distort_equidistant, 1.5),
    ("none", [0.0, 0.0, 0.0, 0.0, 0.0], distort_brown, 0.8),
    ("", [], distort_brown, 0.8),
]


@pytest.mark.parametrize(
    ("model_name", "d", "distort", "extent"),
    CASES,
    ids=[f"{c[0] or 'empty'}{len(c[1])}" for c in CASES],
)
def test_undistortion_recovers_known_normalized_points(model_name, d, distort, extent) -> None:
    truth = normalized_grid(extent)
    padded = list(d) + [0.0] * (5 - len(d)) if distort is distort_brown else list(d)
    pixels = to_pixels(distort(truth, padded))
    model = CameraModel.from_camera_info(model_name, d, K, WIDTH, HEIGHT)

    np.testing.assert_allclose(model.undistort_normalized(pixels), truth, atol=1e-4)
    np.testing.assert_allclose(model.undistort_pixels(pixels), to_pixels(truth), atol=1e-4 * FX)


def test_rectification_is_not_applied_to_normalized_coordinates() -> None:
    yaw = math.radians(5.0)
    r = [math.cos(yaw), 0, math.sin(yaw), 0, 1, 0, -math.sin(yaw), 0, math.cos(yaw)]
    p = [FX, 0, CX, -30.0, 0, FY, CY, 0, 0, 0, 1, 0]
    truth = normalized_grid(0.5)
    model = CameraModel.from_camera_info("plumb_bob", [0.0] * 5, K, WIDTH, HEIGHT, p=p, r=r)
    np.testing.assert_allclose(model.undistort_normalized(to_pixels(truth)), truth, atol=1e-9)
    np.testing.assert_array_equal(model.rectification, np.reshape(r, (3, 3)))
    np.testing.assert_array_equal(model.projection, np.reshape(p, (3, 4)))


def test_empty_input_gives_empty_output() -> None:
    model = CameraModel.from_camera_info("plumb_bob", [0.1, 0, 0, 0, 0], K, WIDTH, HEIGHT)
    assert model.undistort_normalized(np.empty((0, 2))).shape == (0, 2)
    assert model.undistort_pixels(np.empty((0, 2))).shape == (0, 2)


@pytest.mark.parametrize(
    ("arguments", "message", "reason"),
    [
        (("kannala", [0.1] * 4, K), "unknown distortion model", "unknown_model"),
        (("plumb_bob", [0.1] * 6, K), "takes 5 coefficients, got 6", "bad_distortion"),
        (("rational_polynomial", [0.1] * 5, K), "takes 8 coefficients, got 5", "bad_distortion"),
        (("equidistant", [0.1] * 5, K), "takes 4 coefficients, got 5", "bad_distortion"),
        (("none", [0.1, 0, 0, 0, 0], K), "needs all-zero D", "bad_distortion"),
        (("plumb_bob", [math.nan, 0, 0, 0, 0], K), "must be finite", "non_finite"),
        (("plumb_bob", [0.0] * 5, [math.nan, *K[1:]]), "K must be finite", "non_finite"),
        (("plumb_bob", [0.0] * 5, [0.0] * 9), "uncalibrated", "bad_focal"),
        (("plumb_bob", [0.0] * 5, K[:8]), "K must have 9 values", "bad_matrix"),
        (("plumb_bob", [0.0] * 5, [-FX, 0, CX, 0, FY, CY, 0, 0, 1]), "positive focal",
         "bad_focal"),
        (("plumb_bob", [0.0] * 5, [FX, 0, CX, 0, FY, CY, 0, 0, 2]), "last row", "bad_matrix"),
    ],
)
def test_invalid_camera_info_raises_with_a_reason(arguments, message, reason) -> None:
    model_name, d, k = arguments
    with pytest.raises(CalibrationError, match=message) as raised:
        CameraModel.from_camera_info(model_name, d, k, WIDTH, HEIGHT)
    assert raised.value.reason == reason


def test_binning_and_roi_describe_the_smaller_images_as_image_geometry_does() -> None:
    info = camera_info(binning=(2, 4), roi=(100, 40, 400, 320))
    model = camera_model_from_info(info)
    assert (model.width, model.height) == (200, 80)
    expected_k = [[FX / 2, 0, (CX - 100) / 2], [0, FY / 4, (CY - 40) / 4], [0, 0, 1]]
    np.testing.assert_allclose(model.camera_matrix, expected_k)
    np.testing.assert_allclose(model.projection[:, :3], expected_k)
    np.testing.assert_array_equal(info.k, K)  # the message itself is left alone
    # A point seen at full resolution maps to the same normalized ray in the binned ROI.
    full = camera_model_from_info(camera_info())
    full_pixel = np.array([[300.0, 200.0]])
    binned_pixel = (full_pixel - [100, 40]) / [2, 4]
    np.testing.assert_allclose(
        model.undistort_normalized(binned_pixel), full.undistort_normalized(full_pixel)
    )


def test_binning_zero_means_one_and_an_empty_roi_is_refused() -> None:
    full = camera_model_from_info(camera_info())
    assert (full.width, full.height) == (WIDTH, HEIGHT)
    with pytest.raises(CalibrationError) as raised:
        camera_model_from_info(camera_info(binning=(8, 8), roi=(0, 0, 4, 4)))
    assert raised.value.reason == "bad_size"


def test_invalid_size_matrices_and_points_raise() -> None:
    with pytest.raises(ValueError, match="size must be positive"):
        CameraModel.from_camera_info("plumb_bob", [0.0] * 5, K, 0, HEIGHT)
    with pytest.raises(ValueError, match="P must have 12"):
        CameraModel.from_camera_info("plumb_bob", [0.0] * 5, K, WIDTH, HEIGHT, p=[1.0] * 9)
    with pytest.raises(ValueError, match="R must have 9"):
        CameraModel.from_camera_info("plumb_bob", [0.0] * 5, K, WIDTH, HEIGHT, r=[1.0] * 4)
    model = CameraModel.from_camera_info("plumb_bob", [0.0] * 5, K, WIDTH, HEIGHT)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        model.undistort_normalized(np.zeros((4, 3)))
