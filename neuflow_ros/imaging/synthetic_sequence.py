"""A camera sequence with exactly known motion, for demos, benchmarks and tests.

Judging optical flow needs ground truth, and interpolating a picture to move
it would blur it and make the "truth" approximate. Here the scene is a sum of
plane waves (sinusoids), a function defined at every real-valued point, so
each frame is the scene sampled exactly where the motion puts it: flow
between any two frames is known to floating-point precision, for translation,
rotation and zoom alike. Affine motion keeps each wave a plane wave in pixel
coordinates, so a frame is rendered from 1D sine tables with outer products
(about 10 ms at 640x480) instead of a sine per pixel.

ROS-free: the replay publisher, the demo and the tests all use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_WAVELENGTHS_PX = (7.0, 11.0, 17.0, 29.0, 47.0)
"""One wave per wavelength and channel: fine detail for sub-pixel accuracy,
coarse structure so large displacements are not ambiguous."""

_CONTRAST = 32.0
"""Grey levels per unit of the wave sum (standard deviation about 1.6): uses
most of the 8-bit range while clipping well under 1 % of the pixels."""


@dataclass(frozen=True)
class WaveTexture:
    """The scene: per channel, a fixed set of plane waves k . q + phase (q in scene pixels)."""

    wave_vectors: np.ndarray
    """(channels, waves, 2) radians per pixel along x and y."""
    phases: np.ndarray
    """(channels, waves) radians."""

    @classmethod
    def random(cls, seed: int = 1234, channels: int = 3) -> WaveTexture:
        rng = np.random.default_rng(seed)
        vectors = np.zeros((channels, len(_WAVELENGTHS_PX), 2))
        phases = np.zeros((channels, len(_WAVELENGTHS_PX)))
        for channel in range(channels):
            for index, wavelength in enumerate(_WAVELENGTHS_PX):
                angle = rng.uniform(0.0, np.pi)
                phases[channel, index] = rng.uniform(0.0, 2.0 * np.pi)
                k = 2.0 * np.pi / wavelength
                vectors[channel, index] = (k * np.cos(angle), k * np.sin(angle))
        return cls(vectors, phases)

    def render(self, width: int, height: int, pixel_to_scene: np.ndarray) -> np.ndarray:
        """HxWxC uint8: the scene seen through a camera whose pixel p shows scene point A p.

        ``pixel_to_scene`` is a 3x3 affine matrix A. A plane wave k . (M p + t) + phase
        is the plane wave (M^T k) . p + (k . t + phase) in pixel coordinates, and
        sin(a x + b y + c) = sin(a x) cos(b y + c) + cos(a x) sin(b y + c).
        """
        _check_size(width, height)
        linear, offset = pixel_to_scene[:2, :2], pixel_to_scene[:2, 2]
        xs = np.arange(width, dtype=np.float64)
        ys = np.arange(height, dtype=np.float64)
        channels = self.wave_vectors.shape[0]
        image = np.empty((height, width, channels), dtype=np.uint8)
        for channel in range(channels):
            total = np.zeros((height, width), dtype=np.float32)
            for vector, phase in zip(self.wave_vectors[channel], self.phases[channel], strict=True):
                along_x, along_y = linear.T @ vector
                row_phase = along_y * ys + (vector @ offset + phase)
                column_phase = along_x * xs
                total += np.outer(np.cos(row_phase), np.sin(column_phase)).astype(np.float32)
                total += np.outer(np.sin(row_phase), np.cos(column_phase)).astype(np.float32)
            image[..., channel] = np.clip(np.rint(127.5 + _CONTRAST * total), 0, 255)
        return image


    def sample(self, scene_points: np.ndarray) -> np.ndarray:
        """(..., C) uint8: the scene at arbitrary (x, y) scene points, shape (..., 2).

        For cameras that are not an affine map of the scene (lens distortion,
        a stereo rectification rotation): render a raw image by sampling the
        scene where each raw pixel looks, with the same values ``render`` gives.
        """
        points = np.asarray(scene_points, dtype=np.float64)
        channels = self.wave_vectors.shape[0]
        image = np.empty((*points.shape[:-1], channels), dtype=np.uint8)
        for channel in range(channels):
            phase = points @ self.wave_vectors[channel].T + self.phases[channel]
            total = np.sin(phase).sum(axis=-1)
            image[..., channel] = np.clip(np.rint(127.5 + _CONTRAST * total), 0, 255)
        return image


def _check_size(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")


@dataclass(frozen=True)
class Motion:
    """Camera-image motion per frame: rotation and zoom about the image centre, then a shift.

    Positive ``rotation_deg`` turns the content clockwise on screen (y points
    down); ``zoom`` > 1 enlarges it. The default mixes all three, so the flow
    differs across the image (a pure shift would hide errors that depend on
    position) while staying within a few pixels per frame.
    """

    dx: float = 1.5
    dy: float = 0.75
    rotation_deg: float = 0.3
    zoom: float = 1.003

    def __post_init__(self) -> None:
        values = (self.dx, self.dy, self.rotation_deg, self.zoom)
        if not all(math.isfinite(value) for value in values) or self.zoom <= 0.0:
            raise ValueError(f"motion needs finite values and a positive zoom, got {self}")

    def step_matrix(self, width: int, height: int) -> np.ndarray:
        """3x3 affine map from a point's pixel position in one frame to the next."""
        centre_x, centre_y = (width - 1) / 2.0, (height - 1) / 2.0
        angle = math.radians(self.rotation_deg)
        cos, sin = self.zoom * math.cos(angle), self.zoom * math.sin(angle)
        linear = np.array([[cos, -sin], [sin, cos]])
        step = np.eye(3)
        step[:2, :2] = linear
        step[:2, 2] = np.array([centre_x, centre_y]) - linear @ [centre_x, centre_y]
        step[:2, 2] += (self.dx, self.dy)
        return step


class SyntheticSequence:
    """Frame i shows the scene moved i times by ``motion``; flow between any two frames is exact."""

    def __init__(
        self, width: int, height: int, motion: Motion | None = None, seed: int = 1234,
        channels: int = 3,
    ) -> None:
        _check_size(width, height)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.width = width
        self.height = height
        self.motion = motion or Motion()
        self.texture = WaveTexture.random(seed, channels)
        self._step = self.motion.step_matrix(width, height)

    def motion_matrix(self, index: int) -> np.ndarray:
        """Where frame 0's pixel positions have moved to in frame ``index`` (3x3 affine)."""
        return np.linalg.matrix_power(self._step, index)

    def frame(self, index: int) -> np.ndarray:
        """HxWxC uint8 (RGB when C is 3) frame ``index`` (0 is the unmoved scene)."""
        if index < 0:
            raise ValueError(f"frame index must be >= 0, got {index}")
        return self.texture.render(
            self.width, self.height, np.linalg.inv(self.motion_matrix(index))
        )

    def true_flow(self, from_index: int, to_index: int) -> np.ndarray:
        """HxWx2 float32 flow (dx, dy) from each pixel of frame ``from_index`` to ``to_index``."""
        if from_index < 0 or to_index < 0:
            raise ValueError(f"frame indices must be >= 0, got {from_index} and {to_index}")
        relative = self.motion_matrix(to_index) @ np.linalg.inv(self.motion_matrix(from_index))
        ys, xs = np.mgrid[0 : self.height, 0 : self.width].astype(np.float64)
        moved_x = relative[0, 0] * xs + relative[0, 1] * ys + relative[0, 2]
        moved_y = relative[1, 0] * xs + relative[1, 1] * ys + relative[1, 2]
        return np.stack([moved_x - xs, moved_y - ys], axis=2).astype(np.float32)


def textured_image(width: int, height: int, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """HxWx3 uint8 RGB scene shifted by (dx, dy) pixels: true flow from shift 0 is (dx, dy)."""
    to_scene = np.eye(3)
    to_scene[:2, 2] = (-shift[0], -shift[1])
    return WaveTexture.random().render(width, height, to_scene)


def interior_margin(width: int, height: int) -> int:
    """Border excluded when scoring flow: content enters and leaves there, so no method can
    know its flow; an eighth of the shorter side, at least 8 px."""
    return max(8, min(width, height) // 8)


def median_endpoint_error(estimate: np.ndarray, truth: np.ndarray, margin: int) -> float:
    """Median Euclidean distance between two HxWx2 flows over the pixels ``margin`` from the border.

    Non-finite estimates count as infinitely wrong, so invalid output cannot
    hide in the median.
    """
    if estimate.shape != truth.shape or estimate.ndim != 3 or estimate.shape[2] != 2:
        raise ValueError(f"flows must both be HxWx2, got {estimate.shape} and {truth.shape}")
    height, width = truth.shape[:2]
    if margin < 0 or 2 * margin >= min(width, height):
        raise ValueError(f"margin {margin} leaves no interior in a {width}x{height} flow")
    window = (slice(margin, height - margin), slice(margin, width - margin))
    difference = estimate[window].astype(np.float64) - truth[window]
    errors = np.hypot(difference[..., 0], difference[..., 1])
    errors[~np.isfinite(errors)] = np.inf
    return float(np.median(errors))
