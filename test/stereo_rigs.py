"""Stereo calibrations with known geometry, and raw pixels projected independently with OpenCV.

A rectified rig (D = 0, R = I, P = K with Tx) and a raw one (distorted lenses,
both cameras rotated off the rectified frame, different intrinsics), as a
calibrated stereo driver would publish them. Scene points are given in the
left rectified frame; cv2.projectPoints maps them into each raw image, so the
code under test (undistort, rotate, project) is checked against OpenCV's
forward model rather than against itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from neuflow_ros.tracking.camera_model import CameraModel

WIDTH, HEIGHT = 160, 120
RECTIFIED_FOCAL = 150.0
BASELINE = 0.12


@dataclass(frozen=True)
class SideCalibration:
    """One camera of a rig as CameraInfo fields."""

    k: np.ndarray
    d: np.ndarray
    r: np.ndarray
    p: np.ndarray
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def distortion_model(self) -> str:
        return "plumb_bob"

    def model(self) -> CameraModel:
        return CameraModel.from_camera_info(
            self.distortion_model, self.d.tolist(), self.k.ravel().tolist(), self.width,
            self.height, p=self.p.ravel().tolist(), r=self.r.ravel().tolist(),
        )

    def project(self, points_rectified: np.ndarray, camera_x: float) -> np.ndarray:
        """Raw pixels of points given in the left rectified frame, camera centre at camera_x."""
        in_rectified_camera = points_rectified - np.array([camera_x, 0.0, 0.0])
        in_camera = in_rectified_camera @ self.r  # R^T applied to each row
        pixels, _ = cv2.projectPoints(
            in_camera.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), self.k, self.d
        )
        return pixels.reshape(-1, 2)


def _rectified_projection(camera_x: float) -> np.ndarray:
    p = np.array(
        [[RECTIFIED_FOCAL, 0.0, WIDTH / 2 - 0.5, 0.0],
         [0.0, RECTIFIED_FOCAL, HEIGHT / 2 - 0.5, 0.0],
         [0.0, 0.0, 1.0, 0.0]]
    )
    p[0, 3] = -RECTIFIED_FOCAL * camera_x
    return p


def rectified_rig() -> tuple[SideCalibration, SideCalibration]:
    """Already rectified images: K = P[:, :3], D = 0, R = I."""
    left_p, right_p = _rectified_projection(0.0), _rectified_projection(BASELINE)
    return (
        SideCalibration(left_p[:, :3].copy(), np.zeros(5), np.eye(3), left_p),
        SideCalibration(right_p[:, :3].copy(), np.zeros(5), np.eye(3), right_p),
    )


def _rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    rotation, _ = cv2.Rodrigues(np.radians([rx, ry, rz]))
    return rotation


def raw_rig() -> tuple[SideCalibration, SideCalibration]:
    """Raw images: barrel distortion, each camera half a degree off the rectified frame.

    About what a factory-calibrated stereo module has: rotations well under a
    degree, focal lengths within a few percent, principal points a few pixels apart.
    """
    left = SideCalibration(
        np.array([[152.0, 0.0, 81.0], [0.0, 151.0, 58.5], [0.0, 0.0, 1.0]]),
        np.array([-0.12, 0.03, 0.0008, -0.0005, 0.0]),
        _rotation(0.3, -0.4, 0.2),
        _rectified_projection(0.0),
    )
    right = SideCalibration(
        np.array([[149.0, 0.0, 78.5], [0.0, 149.5, 61.0], [0.0, 0.0, 1.0]]),
        np.array([-0.10, 0.02, -0.0006, 0.0004, 0.0]),
        _rotation(-0.2, 0.5, -0.15),
        _rectified_projection(BASELINE),
    )
    return left, right


def camera_info_fields(side: SideCalibration) -> dict:
    """The CameraInfo fields of one side, as plain lists."""
    return {
        "width": side.width, "height": side.height, "distortion_model": side.distortion_model,
        "d": side.d.tolist(), "k": side.k.ravel().tolist(), "r": side.r.ravel().tolist(),
        "p": side.p.ravel().tolist(),
    }


def rectified_view(side: SideCalibration) -> np.ndarray:
    """(H, W, 2): where each raw pixel of this camera lands in its rectified image (OpenCV)."""
    ys, xs = np.mgrid[0 : side.height, 0 : side.width].astype(np.float64)
    raw = np.stack([xs.ravel(), ys.ravel()], axis=1).reshape(-1, 1, 2)
    rectified = cv2.undistortPoints(raw, side.k, side.d, R=side.r, P=side.p)
    return rectified.reshape(side.height, side.width, 2)


def raw_from_rectified(side: SideCalibration, rectified: np.ndarray) -> np.ndarray:
    """Raw pixels (N, 2) of rectified pixels (N, 2): OpenCV's forward lens model."""
    homogeneous = np.hstack([rectified, np.ones((rectified.shape[0], 1))])
    rays = homogeneous @ np.linalg.inv(side.p[:, :3]).T
    return side.project(rays, 0.0)
