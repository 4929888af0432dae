"""Dense flow with OpenCV's DIS on the CPU: the backend that needs no weights.

DIS (Kroeger et al., ECCV 2016) is the fallback when no NeuFlow checkpoint is
available and the choice for robots without a GPU: at 640x480 its 'fast'
preset takes a few milliseconds on one laptop core, with sub-pixel accuracy on
textured scenes. It works on gray images of any size, so no padding is needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from neuflow_ros.flow.bounded_cache import BoundedCache
from neuflow_ros.flow.flow_types import FlowResult, FrameError, FramePair, PendingFlow
from neuflow_ros.flow.frame_geometry import FrameGeometry, plan_geometry
from neuflow_ros.imaging.image_conversion import to_gray

DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}

DIS_MIN_SIDE = {"ultrafast": 32, "fast": 32, "medium": 16}
"""Smallest grid side each preset computes. Measured with OpenCV 5.0, each size in
a fresh process: below these, DIS raises for some shapes and crashes the process
(segmentation fault) for others, e.g. 400x26 with 'fast'; with the shorter side
at the minimum, every longer side up to 600 and in steps of 97 up to 8000 works."""

_MAX_CACHED_SOLVERS = 8
_MAX_CACHED_SOLVER_PIXELS = 16_000_000
"""A solver keeps about 12 MB per megapixel of its grid (measured: 103 MB at
3840x2160, 565 MB at 8000x6000), so the solvers kept stay below about 200 MB
plus the one in use."""


class DisBackend:
    """Runs DIS per frame pair; forward and backward are two separate solves."""

    def __init__(self, preset: str, inference_size: tuple[int, int] | None) -> None:
        if preset not in DIS_PRESETS:
            raise ValueError(f"dis_preset must be one of {tuple(DIS_PRESETS)}, got {preset!r}")
        self._preset = DIS_PRESETS[preset]
        self._min_side = DIS_MIN_SIDE[preset]
        self._inference_size = inference_size
        # One solver per grid size: DIS sizes its image pyramids to the first
        # input it sees, so alternating cameras would otherwise reallocate.
        self._solvers: BoundedCache[cv2.DISOpticalFlow] = BoundedCache(
            _MAX_CACHED_SOLVERS, max_weight=_MAX_CACHED_SOLVER_PIXELS
        )

    def submit(self, pairs: Sequence[FramePair], backward: bool, output_grid: str) -> PendingFlow:
        """DIS runs on the CPU, so the flow is computed here and now."""
        return PendingFlow.completed(
            [self._compute_pair(pair, backward, output_grid) for pair in pairs]
        )

    encoded_frames = None
    """DIS has no per-image encoding to count or reuse."""

    def gpu_memory_bytes(self) -> None:
        return None

    def _compute_pair(self, pair: FramePair, backward: bool, output_grid: str) -> FlowResult:
        width, height = pair.size
        geometry = plan_geometry(width, height, self._inference_size, alignment=1, min_side=1)
        if min(geometry.grid_width, geometry.grid_height) < self._min_side:
            # Checked here, not only at the node's intake: DIS may crash the process.
            raise FrameError(
                f"DIS cannot compute {geometry.grid_width}x{geometry.grid_height}: both sides "
                f"must be at least {self._min_side} pixels with this preset"
            )
        gray0 = _to_grid(to_gray(pair.previous, pair.color_order), geometry)
        gray1 = _to_grid(to_gray(pair.current, pair.color_order), geometry)
        solver = self._solvers.get_or_create(
            (geometry.grid_width, geometry.grid_height),
            lambda: cv2.DISOpticalFlow_create(self._preset),
            weight=geometry.grid_width * geometry.grid_height,
        )
        forward = _to_output(solver.calc(gray0, gray1, None), geometry, output_grid)
        reverse = None
        if backward:
            reverse = _to_output(solver.calc(gray1, gray0, None), geometry, output_grid)
        return FlowResult(forward=forward, backward=reverse, input_size=(width, height))


def _to_grid(gray: np.ndarray, geometry: FrameGeometry) -> np.ndarray:
    if not geometry.resized:
        return gray
    shrinking = (
        geometry.grid_width <= geometry.input_width
        and geometry.grid_height <= geometry.input_height
    )
    # INTER_AREA averages the pixels a grid pixel covers (no aliasing) but
    # degenerates to nearest-neighbour when enlarging, hence the split.
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    grid_size = (geometry.grid_width, geometry.grid_height)
    return cv2.resize(gray, grid_size, interpolation=interpolation)


def _to_output(flow: np.ndarray, geometry: FrameGeometry, output_grid: str) -> np.ndarray:
    """Express grid flow in input pixels, on the requested output grid."""
    if not geometry.resized:
        return flow
    scale_x, scale_y = geometry.vector_scale
    flow[:, :, 0] *= scale_x
    flow[:, :, 1] *= scale_y
    output_size = geometry.output_size(output_grid)
    if output_size == (geometry.grid_width, geometry.grid_height):
        return flow
    return cv2.resize(flow, output_size, interpolation=cv2.INTER_LINEAR)
