"""CameraInfo-shaped objects for tests of code that reads CameraInfo fields by name."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

FX, FY, CX, CY = 420.0, 410.0, 322.5, 238.0
WIDTH, HEIGHT = 640, 480


def camera_info(
    binning: tuple[int, int] = (0, 0),
    roi: tuple[int, int, int, int] = (0, 0, 0, 0),
    width: int = WIDTH,
    height: int = HEIGHT,
    k: list[float] | None = None,
) -> SimpleNamespace:
    """A plumb_bob calibration without distortion; ``k`` as a float64 array, as rclpy gives it."""
    return SimpleNamespace(
        distortion_model="plumb_bob", d=[0.0] * 5,
        k=np.array(k if k is not None else [FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0]),
        width=width, height=height,
        p=[FX, 0.0, CX, 0.0, 0.0, FY, CY, 0.0, 0.0, 0.0, 1.0, 0.0],
        r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        binning_x=binning[0], binning_y=binning[1],
        roi=SimpleNamespace(x_offset=roi[0], y_offset=roi[1], width=roi[2], height=roi[3]),
    )
