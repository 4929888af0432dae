"""Planar image motions as 3x3 homographies, shared by the tracker tests.

Writing the motion as a matrix gives the tests an exact answer (where every
point goes) that is independent of the flow and tracking code under test.
"""

from __future__ import annotations

import math

import numpy as np


def translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def rotation_zoom(angle_deg: float, scale: float, centre: tuple[float, float]) -> np.ndarray:
    """Rotation plus zoom about ``centre`` (x, y)."""
    angle = math.radians(angle_deg)
    cos, sin = scale * math.cos(angle), scale * math.sin(angle)
    linear = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    return translation(*centre) @ linear @ translation(-centre[0], -centre[1])


def apply_homography(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points [..., 2] (x, y) mapped through the homography."""
    homogeneous = np.concatenate([points, np.ones((*points.shape[:-1], 1))], axis=-1)
    mapped = homogeneous @ homography.T
    return mapped[..., :2] / mapped[..., 2:3]
