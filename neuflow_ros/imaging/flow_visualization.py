"""Colour rendering of dense optical flow, the Middlebury way.

Baker et al. (2011), "A Database and Evaluation Methodology for Optical Flow",
made one rendering the convention every flow paper and tool uses: hue gives
the direction of motion, saturation its magnitude, no motion is white. Using
it means people can read the node's debug image without a legend.
"""

from __future__ import annotations

import cv2
import numpy as np

# Hue circle from Baker et al.: the anchor colours in order and how many wheel
# entries each transition gets. The counts are unequal on purpose: they spread
# the perceptually distinct hues more evenly around the circle than equal
# steps in RGB would.
_WHEEL_ANCHORS = np.array(
    [
        [1.0, 0.0, 0.0],  # red
        [1.0, 1.0, 0.0],  # yellow
        [0.0, 1.0, 0.0],  # green
        [0.0, 1.0, 1.0],  # cyan
        [0.0, 0.0, 1.0],  # blue
        [1.0, 0.0, 1.0],  # magenta
    ],
    dtype=np.float32,
)
_WHEEL_TRANSITION_LENGTHS = (15, 6, 4, 11, 13, 6)  # RY, YG, GC, CB, BM, MR
_WHEEL_SIZE = sum(_WHEEL_TRANSITION_LENGTHS)

# Flow beyond max_magnitude is drawn fully saturated and dimmed by this factor,
# so clipping is visible instead of silently looking like the maximum.
_OUT_OF_RANGE_DIMMING = 0.75


def _build_color_wheel() -> np.ndarray:
    """Return the (55, 3) RGB wheel in [0, 1], quantised to 8-bit steps as in the definition."""
    transitions = []
    for index, length in enumerate(_WHEEL_TRANSITION_LENGTHS):
        start = _WHEEL_ANCHORS[index]
        end = _WHEEL_ANCHORS[(index + 1) % len(_WHEEL_ANCHORS)]
        fraction = np.floor(255.0 * np.arange(length) / length) / 255.0
        transitions.append(start + (end - start) * fraction[:, None].astype(np.float32))
    return np.concatenate(transitions).astype(np.float32)


# Rendering goes through a precomputed table indexed by quantised direction
# and magnitude: arctan2 and per-pixel interpolation in numpy cost ~40 ms at
# 640x480, a table lookup ~3 ms. The quantisation (1/32 of a wheel entry,
# 1/255 of full saturation) moves a colour by at most 2 levels of 255.
_HUE_STEPS_PER_WHEEL_ENTRY = 32
_HUE_STEPS = _WHEEL_SIZE * _HUE_STEPS_PER_WHEEL_ENTRY
_SATURATION_LEVELS = 256
_OUT_OF_RANGE_COLUMN = _SATURATION_LEVELS
_INVALID_COLUMN = _SATURATION_LEVELS + 1


def _build_lookup_table() -> np.ndarray:
    """Return a ((hues + 1) * columns, 3) uint8 table: rows are directions, columns saturations.

    Two extra columns per direction hold the dimmed out-of-range colour and
    black for invalid vectors, so one gather renders every pixel.
    """
    wheel = _build_color_wheel()
    # One row past the full circle repeats the first, so a direction that
    # rounds up to 2*pi needs no modulo per pixel.
    position = np.arange(_HUE_STEPS + 1) / _HUE_STEPS_PER_WHEEL_ENTRY
    whole_entries = np.floor(position)
    lower = whole_entries.astype(np.intp) % _WHEEL_SIZE
    upper = (lower + 1) % _WHEEL_SIZE
    weight_upper = (position - whole_entries)[:, None]
    hue = wheel[lower] * (1.0 - weight_upper) + wheel[upper] * weight_upper
    saturation = np.linspace(0.0, 1.0, _SATURATION_LEVELS)[None, :, None]
    in_range = 1.0 - saturation * (1.0 - hue[:, None, :])
    out_of_range = _OUT_OF_RANGE_DIMMING * hue[:, None, :]
    invalid = np.zeros_like(out_of_range)
    table = np.concatenate([in_range, out_of_range, invalid], axis=1)
    # The epsilon keeps exact wheel levels such as 43/255 from flooring to 42.
    return np.floor(255.0 * table + 1e-6).astype(np.uint8).reshape(-1, 3)


_LOOKUP_TABLE = _build_lookup_table()
_TABLE_COLUMNS = _SATURATION_LEVELS + 2


def flow_to_rgb(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Render an HxWx2 flow field (dx, dy in pixels, y down) as an HxWx3 uint8 RGB image.

    Saturation is magnitude / max_magnitude; with None the field's own largest
    finite magnitude is used, which shows structure in every frame but makes
    colours incomparable between frames: pass a fixed value when comparing.
    Non-finite vectors are drawn black so that invalid output stands out
    instead of passing for "no motion" (white).

    Direction follows Baker et al.: the wheel position is the angle of
    (-dx, -dy) mapped from [-pi, pi] onto the wheel, which puts flow to the
    right at red. The wheel is sampled with wrap-around interpolation, so
    there is no seam there.
    """
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must have shape HxWx2, got {flow.shape}")
    if max_magnitude is not None and not (np.isfinite(max_magnitude) and max_magnitude > 0):
        raise ValueError(f"max_magnitude must be a positive finite number, got {max_magnitude}")

    dx = flow[..., 0].astype(np.float32, copy=False)
    dy = flow[..., 1].astype(np.float32, copy=False)
    # The angle of (dx, dy) in [0, 2pi) equals the angle of (-dx, -dy) in
    # [-pi, pi] shifted by pi: the same wheel position, without a negation.
    magnitude, angle = cv2.cartToPolar(dx, dy)
    finite = np.isfinite(magnitude)
    all_finite = bool(finite.all())
    if not all_finite:
        magnitude[~finite] = 0.0
        angle[~finite] = 0.0

    scale = float(magnitude.max()) if max_magnitude is None else float(max_magnitude)
    radius = magnitude / np.float32(scale) if scale > 0.0 else magnitude

    saturation = np.minimum(radius, np.float32(1.0))
    column = (saturation * np.float32(_SATURATION_LEVELS - 1) + 0.5).astype(np.intp)
    column[radius > 1.0] = _OUT_OF_RANGE_COLUMN
    if not all_finite:
        column[~finite] = _INVALID_COLUMN
    hue_row = (angle * np.float32(_HUE_STEPS / (2.0 * np.pi)) + 0.5).astype(np.intp)
    return np.take(_LOOKUP_TABLE, hue_row * _TABLE_COLUMNS + column, axis=0)
