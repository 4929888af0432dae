"""The synthetic sequence's frames and true flow, checked against independent computations.

Expectations come from the analytic motion written out here (inverse
rotation/zoom/shift per step, the wave formula per pixel) and from warping
one frame onto the other with OpenCV, never from the module's own matrices.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from neuflow_ros.imaging.synthetic_sequence import (
    Motion,
    SyntheticSequence,
    WaveTexture,
    interior_margin,
    median_endpoint_error,
    textured_image,
)

WIDTH, HEIGHT = 128, 96
TURNING = Motion(dx=1.2, dy=-0.7, rotation_deg=2.0, zoom=1.01)


def undo_steps(motion: Motion, xs: np.ndarray, ys: np.ndarray, steps: int) -> tuple:
    """Where pixel (x, y) of frame ``steps`` was in frame 0: the step inverted by hand."""
    cx, cy = (WIDTH - 1) / 2.0, (HEIGHT - 1) / 2.0
    angle = math.radians(motion.rotation_deg)
    for _ in range(steps):
        u, v = xs - motion.dx - cx, ys - motion.dy - cy
        xs = cx + (math.cos(angle) * u + math.sin(angle) * v) / motion.zoom
        ys = cy + (-math.sin(angle) * u + math.cos(angle) * v) / motion.zoom
    return xs, ys


def test_frames_are_the_wave_scene_seen_through_the_inverse_motion() -> None:
    sequence = SyntheticSequence(WIDTH, HEIGHT, TURNING)
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    scene_x, scene_y = undo_steps(TURNING, xs, ys, 3)
    texture = sequence.texture
    frame = sequence.frame(3).astype(np.float64)
    for channel in range(3):
        waves = sum(
            np.sin(kx * scene_x + ky * scene_y + phase)
            for (kx, ky), phase in zip(
                texture.wave_vectors[channel], texture.phases[channel], strict=True
            )
        )
        # Same picture up to the grey-level mapping (linear, clipped at the extremes).
        assert np.corrcoef(waves.ravel(), frame[..., channel].ravel())[0, 1] > 0.995


def test_true_flow_follows_each_pixel_through_the_motion() -> None:
    sequence = SyntheticSequence(WIDTH, HEIGHT, TURNING)
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    # A pixel of frame 2 and the pixel of frame 5 its flow points to were the same scene point.
    flow = sequence.true_flow(2, 5).astype(np.float64)
    start = undo_steps(TURNING, xs, ys, 2)
    end = undo_steps(TURNING, xs + flow[..., 0], ys + flow[..., 1], 5)
    assert np.abs(end[0] - start[0]).max() < 1e-3
    assert np.abs(end[1] - start[1]).max() < 1e-3


def test_true_flow_of_a_pure_quarter_turn() -> None:
    sequence = SyntheticSequence(WIDTH, HEIGHT, Motion(0.0, 0.0, 90.0, 1.0))
    cx, cy = (WIDTH - 1) / 2.0, (HEIGHT - 1) / 2.0
    flow = sequence.true_flow(0, 1)
    # Clockwise on screen (y down): a point right of the centre moves below it.
    x, y = 100, 40
    np.testing.assert_allclose(flow[y, x], [cx - (y - cy) - x, cy + (x - cx) - y], atol=1e-4)


def test_translation_flow_is_the_shift_times_the_frame_gap() -> None:
    sequence = SyntheticSequence(WIDTH, HEIGHT, Motion(1.25, -0.5, 0.0, 1.0))
    np.testing.assert_allclose(sequence.true_flow(4, 7), np.broadcast_to([3.75, -1.5],
                               (HEIGHT, WIDTH, 2)), atol=1e-5)


def warp_residual(sequence: SyntheticSequence, flow: np.ndarray) -> float:
    """Mean grey-level difference in the interior between frame 0 and frame 1 pulled back."""
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    pulled = cv2.remap(sequence.frame(1), xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_CUBIC)
    margin = interior_margin(WIDTH, HEIGHT)
    interior = (slice(margin, HEIGHT - margin), slice(margin, WIDTH - margin))
    difference = pulled[interior].astype(np.float64) - sequence.frame(0)[interior]
    return float(np.abs(difference).mean())


def test_warping_the_next_frame_back_along_the_true_flow_reproduces_the_frame() -> None:
    sequence = SyntheticSequence(WIDTH, HEIGHT, TURNING)
    truth = sequence.true_flow(0, 1)
    residual = warp_residual(sequence, truth)
    off_by_half_pixel = warp_residual(sequence, truth + np.float32(0.5))
    assert residual < 3.0
    assert off_by_half_pixel > 5.0 * residual


def test_textured_image_shift_moves_content_exactly() -> None:
    base = textured_image(WIDTH, HEIGHT).astype(int)
    shifted = textured_image(WIDTH, HEIGHT, (3.0, 2.0)).astype(int)
    assert np.abs(shifted[2:, 3:] - base[:-2, :-3]).max() <= 1  # float rounding only
    assert base.std() > 30.0  # enough texture for flow methods


def test_single_channel_sequence() -> None:
    frame = SyntheticSequence(WIDTH, HEIGHT, channels=1).frame(0)
    assert frame.shape == (HEIGHT, WIDTH, 1)
    assert frame.dtype == np.uint8


def test_median_endpoint_error_ignores_the_border_and_punishes_non_finite_values() -> None:
    truth = np.zeros((20, 20, 2), dtype=np.float32)
    estimate = truth.copy()
    estimate[:2] = 100.0  # border rows: outside a margin of 2
    estimate[2:, :, 0] = 3.0
    estimate[2:, :, 1] = 4.0
    assert median_endpoint_error(estimate, truth, 2) == pytest.approx(5.0)
    estimate[2:15] = np.nan
    assert median_endpoint_error(estimate, truth, 2) == math.inf


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: Motion(zoom=0.0), "positive zoom"),
        (lambda: Motion(dx=math.nan), "finite"),
        (lambda: SyntheticSequence(0, 10), "positive"),
        (lambda: SyntheticSequence(10, 10, channels=2), "channels"),
        (lambda: SyntheticSequence(10, 10).frame(-1), ">= 0"),
        (lambda: median_endpoint_error(np.zeros((8, 8, 2)), np.zeros((8, 8, 2)), 4), "interior"),
        (lambda: median_endpoint_error(np.zeros((8, 8, 2)), np.zeros((8, 9, 2)), 1), "HxWx2"),
    ],
)
def test_bad_arguments_are_refused_with_a_reason(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_sampling_the_texture_at_points_gives_the_rendered_pixels() -> None:
    texture = WaveTexture.random(seed=7)
    to_scene = np.array([[0.9, -0.2, 4.25], [0.15, 1.1, -2.5], [0.0, 0.0, 1.0]])
    rendered = texture.render(48, 36, to_scene)
    ys, xs = np.mgrid[0:36, 0:48].astype(np.float64)
    scene = np.stack(
        [0.9 * xs - 0.2 * ys + 4.25, 0.15 * xs + 1.1 * ys - 2.5], axis=-1
    )
    sampled = texture.sample(scene)
    # render sums in float32, sample in float64: a rounding may differ by one grey level.
    assert np.abs(rendered.astype(int) - sampled.astype(int)).max() <= 1
