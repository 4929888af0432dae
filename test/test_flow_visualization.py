"""Tests for neuflow_ros.imaging.flow_visualization.

Expected colours come from a per-pixel reference written here from the
definition in Baker et al. (2011): the six hue transitions with their entry
counts, the angle of (-dx, -dy) as wheel position, and saturation blending
towards white.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from neuflow_ros.imaging.flow_visualization import flow_to_rgb

# (length, channel formula) per transition, as written in the paper's colour-code definition.
REFERENCE_WHEEL = (
    [(255, math.floor(255 * i / 15), 0) for i in range(15)]  # red -> yellow
    + [(255 - math.floor(255 * i / 6), 255, 0) for i in range(6)]  # yellow -> green
    + [(0, 255, math.floor(255 * i / 4)) for i in range(4)]  # green -> cyan
    + [(0, 255 - math.floor(255 * i / 11), 255) for i in range(11)]  # cyan -> blue
    + [(math.floor(255 * i / 13), 0, 255) for i in range(13)]  # blue -> magenta
    + [(255, 0, 255 - math.floor(255 * i / 6)) for i in range(6)]  # magenta -> red
)
COLOUR_TOLERANCE = 3


def reference_colour(dx: float, dy: float, max_magnitude: float) -> tuple[float, float, float]:
    """Colour of one vector, wheel sampled with wrap-around between its last and first entry."""
    size = len(REFERENCE_WHEEL)
    position = (math.atan2(-dy, -dx) / math.pi + 1.0) / 2.0 * size
    lower = math.floor(position) % size
    upper = (lower + 1) % size
    fraction = position - math.floor(position)
    radius = math.hypot(dx, dy) / max_magnitude
    colour = []
    for channel in range(3):
        hue = (
            (1 - fraction) * REFERENCE_WHEEL[lower][channel]
            + fraction * REFERENCE_WHEEL[upper][channel]
        ) / 255.0
        if radius <= 1.0:
            colour.append(255.0 * (1.0 - radius * (1.0 - hue)))
        else:
            colour.append(255.0 * 0.75 * hue)
    return tuple(colour)


def single_vector(dx: float, dy: float) -> np.ndarray:
    return np.array([[[dx, dy]]], dtype=np.float32)


def test_output_is_rgb_uint8_of_the_flow_size() -> None:
    flow = np.random.default_rng(0).normal(size=(96, 128, 2)).astype(np.float32)

    rgb = flow_to_rgb(flow)

    assert rgb.shape == (96, 128, 3)
    assert rgb.dtype == np.uint8


def test_random_field_matches_the_reference_definition() -> None:
    rng = np.random.default_rng(1)
    flow = rng.normal(scale=4.0, size=(48, 64, 2))
    max_magnitude = 6.0  # below the largest vectors, so out-of-range dimming is covered too

    rgb = flow_to_rgb(flow, max_magnitude)

    for row, col in zip(rng.integers(0, 48, 300), rng.integers(0, 64, 300), strict=True):
        expected = reference_colour(flow[row, col, 0], flow[row, col, 1], max_magnitude)
        assert np.abs(rgb[row, col].astype(float) - expected).max() <= COLOUR_TOLERANCE, (
            row,
            col,
            flow[row, col],
            rgb[row, col],
            expected,
        )


@pytest.mark.parametrize(
    ("direction", "expected_wheel_position"),
    [
        ((1.0, 0.0), 0.0),  # right: first entry, pure red
        ((0.0, 1.0), 55 / 4),  # down (image y grows downwards): red -> yellow transition
        ((-1.0, 0.0), 55 / 2),  # left: cyan -> blue transition
        ((0.0, -1.0), 3 * 55 / 4),  # up: blue -> magenta transition
    ],
)
def test_direction_selects_the_wheel_position_at_full_saturation(
    direction: tuple[float, float], expected_wheel_position: float
) -> None:
    lower = int(expected_wheel_position)
    fraction = expected_wheel_position - lower
    expected = [
        (1 - fraction) * REFERENCE_WHEEL[lower][c] + fraction * REFERENCE_WHEEL[lower + 1][c]
        for c in range(3)
    ]

    rgb = flow_to_rgb(single_vector(*direction), max_magnitude=1.0)[0, 0]

    assert np.abs(rgb.astype(float) - expected).max() <= COLOUR_TOLERANCE


def test_cardinal_directions_have_their_conventional_hues() -> None:
    right, down, left, up = (
        flow_to_rgb(single_vector(dx, dy), max_magnitude=1.0)[0, 0].astype(int)
        for dx, dy in [(1, 0), (0, 1), (-1, 0), (0, -1)]
    )

    assert right[0] == 255 and right[1] < 10 and right[2] < 10  # red
    assert down[0] == 255 and down[1] > 200 and down[2] < 10  # orange-yellow
    assert left[0] < 10 and left[1] > 150 and left[2] == 255  # light blue
    assert up[0] < 150 and up[1] < 10 and up[2] == 255  # violet


def test_zero_flow_is_white() -> None:
    flow = np.zeros((8, 10, 2), dtype=np.float32)

    assert (flow_to_rgb(flow) == 255).all()
    assert (flow_to_rgb(flow, max_magnitude=5.0) == 255).all()


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_vectors_are_black_and_do_not_affect_the_rest(bad_value: float) -> None:
    flow = np.zeros((4, 4, 2), dtype=np.float32)
    flow[0, 0] = (3.0, 0.0)
    flow[2, 1, 1] = bad_value

    rgb = flow_to_rgb(flow)

    assert (rgb[2, 1] == 0).all()
    np.testing.assert_allclose(rgb[0, 0], reference_colour(3.0, 0.0, 3.0), atol=COLOUR_TOLERANCE)
    assert (rgb[1, 1] == 255).all()


def test_saturation_grows_monotonically_with_magnitude() -> None:
    magnitudes = np.linspace(0.0, 4.0, 41)
    direction = np.array([math.cos(2.0), math.sin(2.0)])
    flow = (magnitudes[:, None] * direction)[None].astype(np.float32)

    rgb = flow_to_rgb(flow, max_magnitude=4.0)[0].astype(int)

    # Towards full saturation the weakest channel of the hue fades from white.
    weakest_channel = rgb.min(axis=1)
    assert weakest_channel[0] == 255
    assert (np.diff(weakest_channel) <= 0).all()
    assert weakest_channel[-1] < 40


def test_default_normalisation_uses_the_largest_vector() -> None:
    flow = np.random.default_rng(2).normal(scale=3.0, size=(16, 16, 2)).astype(np.float32)
    largest = float(np.hypot(flow[..., 0], flow[..., 1]).max())

    np.testing.assert_array_equal(flow_to_rgb(flow), flow_to_rgb(flow, max_magnitude=largest))


def test_flow_beyond_max_magnitude_is_dimmed_not_wrapped() -> None:
    inside = flow_to_rgb(single_vector(2.0, 0.0), max_magnitude=2.0)[0, 0].astype(float)
    beyond = flow_to_rgb(single_vector(8.0, 0.0), max_magnitude=2.0)[0, 0].astype(float)

    np.testing.assert_allclose(beyond, 0.75 * inside, atol=COLOUR_TOLERANCE)


def test_float64_and_float32_render_alike() -> None:
    flow = np.random.default_rng(3).normal(size=(12, 12, 2))

    difference = flow_to_rgb(flow).astype(int) - flow_to_rgb(flow.astype(np.float32)).astype(int)

    assert np.abs(difference).max() <= 1


def test_bad_shape_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"HxWx2, got \(4, 4, 3\)"):
        flow_to_rgb(np.zeros((4, 4, 3), dtype=np.float32))


@pytest.mark.parametrize("bad_max", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_max_magnitude_is_rejected(bad_max: float) -> None:
    with pytest.raises(ValueError, match="max_magnitude must be a positive finite number"):
        flow_to_rgb(np.zeros((4, 4, 2), dtype=np.float32), max_magnitude=bad_max)
