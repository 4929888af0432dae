"""End-to-end tracking accuracy: real DIS flow from the engine driving the FeatureTracker.

Rendered synthetic sequences with analytically known motion: every expected
position comes from the motion the test applies, never from tracker output.

OpenCV DIS ('fast', the engine default) is off by 0.05-0.1 px per frame even
on pure sub-pixel translation, and chaining frame-to-frame flow adds that up
along a track (about 1 px after 10 frames). The tracker's Lucas-Kanade
refinement on each feature's own patch removes it, so the bound is the
project's acceptance criterion: under 0.5 px median error after 10 frames.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from planar_motion import apply_homography, rotation_zoom, translation

from neuflow_ros.flow.engine import EngineConfig, FlowEngine, FramePair
from neuflow_ros.tracking.tracker import FeatureTracker, TrackerConfig, TrackSet

WIDTH, HEIGHT = 192, 144
FRAMES = 11  # frame 0 plus 10 tracked steps
CENTRE = ((WIDTH - 1) / 2.0, (HEIGHT - 1) / 2.0)
FIRST_STEP_BOUND_PX = 0.1
ACCURACY_BOUND_PX = 0.5
TRACKER = {"max_tracks": 150, "min_distance": 8.0}


@pytest.fixture(scope="module")
def engine() -> FlowEngine:
    return FlowEngine(EngineConfig(backend="dis", num_threads=1))


def texture(seed: int, shape: tuple[int, int]) -> np.ndarray:
    """Noise at three scales (roughly the 1/f spectrum of natural images), deterministic."""
    rng = np.random.default_rng(seed)
    total = np.zeros(shape, dtype=np.float32)
    for sigma in (1.0, 3.0, 8.0):
        layer = cv2.GaussianBlur(rng.random(shape).astype(np.float32), (0, 0), sigma)
        total += (layer - layer.mean()) / layer.std()
    total = (total - total.min()) / (total.max() - total.min())
    return (total * 255.0).astype(np.uint8)





def track(engine: FlowEngine, tracker: FeatureTracker, frames: list[np.ndarray]) -> list[TrackSet]:
    results = [tracker.update(frames[0], 0.0)]
    for k in range(1, len(frames)):
        flow = engine.compute([FramePair(frames[k - 1], frames[k], "mono")], backward=True)[0]
        results.append(tracker.update(frames[k], 0.1 * k, flow.forward, flow.backward))
    return results


def survivors_from_first_frame(results: list[TrackSet]) -> tuple[np.ndarray, np.ndarray]:
    """Indices into the first and the last TrackSet of the tracks alive throughout."""
    first, last = results[0], results[-1]
    in_last = np.isin(first.ids, last.ids)
    start_index = np.flatnonzero(in_last)
    end_index = np.array([np.flatnonzero(last.ids == i)[0] for i in first.ids[in_last]], dtype=int)
    return start_index, end_index


@pytest.mark.parametrize(
    "step",
    [translation(0.8, -0.45), translation(1.7, 0.6), rotation_zoom(1.5, 1.01, CENTRE)],
    ids=["subpixel_translation", "translation", "rotation_zoom"],
)
def test_dis_tracks_follow_homography_motion(engine: FlowEngine, step: np.ndarray) -> None:
    base = texture(0, (HEIGHT, WIDTH))
    motions = [np.linalg.matrix_power(step, k) for k in range(FRAMES)]
    frames = [
        cv2.warpPerspective(
            base, motion, (WIDTH, HEIGHT), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
        )
        for motion in motions
    ]
    results = track(engine, FeatureTracker(TrackerConfig(**TRACKER)), frames)

    first = results[0]
    second = results[1]
    carried = second.ages == 2
    births = first.positions[np.searchsorted(first.ids, second.ids[carried])].astype(np.float64)
    step_errors = np.linalg.norm(second.positions[carried] - apply_homography(step, births), axis=1)
    assert np.median(step_errors) < FIRST_STEP_BOUND_PX

    start, end = survivors_from_first_frame(results)
    assert start.size >= 0.6 * len(first), "too few first-frame tracks lived to the end"
    assert np.all(results[-1].ages[end] == FRAMES)
    truth = apply_homography(motions[-1], first.positions[start].astype(np.float64))
    errors = np.linalg.norm(results[-1].positions[end] - truth, axis=1)
    assert np.median(errors) < ACCURACY_BOUND_PX


# Rigid scene: a camera moving forward through a bumpy (non-planar) scene
# moves every point away from the focus of expansion (the image centre) by an
# amount that depends on its depth. Points stay on their rays from the centre,
# which are the epipolar lines; depth variation makes that geometry well
# determined (a planar scene would leave it open). The patch moves across them.
PATCH_SIZE = 48
PATCH_START = np.array([110.0, 6.0])
PATCH_VELOCITY = np.array([3.0, 2.8])
FOCUS = np.array(CENTRE)


def expansion_rate(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fractional growth per frame of the distance to FOCUS of the point at frame-0 pixel (x, y);
    inversely proportional to its depth."""
    return 0.025 * (1.0 + 0.5 * np.sin(x / 25.0) * np.cos(y / 20.0))


def background_position(start: np.ndarray, frame: int) -> np.ndarray:
    rate = expansion_rate(start[..., 0], start[..., 1])[..., None]
    return FOCUS + (start - FOCUS) * (1.0 + frame * rate)


def render_moving_patch_scene() -> list[np.ndarray]:
    background = texture(0, (HEIGHT, WIDTH))
    patch = texture(1, (PATCH_SIZE, PATCH_SIZE))
    grid = np.stack(
        np.meshgrid(np.arange(WIDTH, dtype=np.float64), np.arange(HEIGHT, dtype=np.float64)),
        axis=-1,
    )
    frames = []
    for k in range(FRAMES):
        # Invert q = background_position(p, k) by fixed-point iteration (a contraction here).
        source = grid.copy()
        for _ in range(30):
            rate = expansion_rate(source[..., 0], source[..., 1])[..., None]
            source = FOCUS + (grid - FOCUS) / (1.0 + k * rate)
        frame = cv2.remap(
            background,
            source[..., 0].astype(np.float32),
            source[..., 1].astype(np.float32),
            cv2.INTER_CUBIC,
            borderMode=cv2.BORDER_REFLECT,
        ).astype(np.float32)
        offset = PATCH_START + k * PATCH_VELOCITY
        placement = np.array([[1.0, 0.0, offset[0]], [0.0, 1.0, offset[1]]])
        size = (WIDTH, HEIGHT)
        layer = cv2.warpAffine(patch, placement, size, flags=cv2.INTER_CUBIC).astype(np.float32)
        alpha = cv2.warpAffine(np.ones_like(patch, dtype=np.float32), placement, size)
        frames.append(np.rint(frame * (1.0 - alpha) + layer * alpha).astype(np.uint8))
    return frames


@pytest.mark.parametrize(
    "ransac_enabled",
    [True, False],
    ids=["epipolar_on", "epipolar_off"],
)
def test_epipolar_check_rejects_independently_moving_patch(
    engine: FlowEngine, ransac_enabled: bool
) -> None:
    frames = render_moving_patch_scene()
    # The corner and refinement windows this scene's rejection shares were
    # measured with: with 3x3 corners and an 11 px LK window, the tracks on
    # the patch follow it so consistently that RANSAC at 1 px, pinned by a
    # background moving only ~1.75 px per frame, removes only ~40 % of them.
    # The photometric check is off: it also removes tracks at the patch's
    # edges, and this test is about what the epipolar check alone removes.
    config = TrackerConfig(
        max_tracks=250, min_distance=6.0, block_size=7, refine_window=15,
        residual_ratio=0.0, ransac_enabled=ransac_enabled,
    )
    tracker = FeatureTracker(config)
    results = track(engine, tracker, frames)

    first = results[0]
    x, y = first.positions[:, 0], first.positions[:, 1]
    # Patch interior at frame 0, 3 px away from its edge where the motions mix.
    in_patch = (x > PATCH_START[0] + 3) & (x < PATCH_START[0] + PATCH_SIZE - 4)
    in_patch &= (y > PATCH_START[1] + 3) & (y < PATCH_START[1] + PATCH_SIZE - 4)
    assert np.count_nonzero(in_patch) >= 10
    patch_kept = np.isin(first.ids[in_patch], results[-1].ids).mean()

    start, end = survivors_from_first_frame(results)
    start_positions = first.positions[start].astype(np.float64)
    on_patch = in_patch[start]
    steps = FRAMES - 1
    truth = background_position(start_positions, steps)
    truth[on_patch] = start_positions[on_patch] + steps * PATCH_VELOCITY
    errors = np.linalg.norm(results[-1].positions[end] - truth, axis=1)
    # DIS smooths flow across the patch edge, so background tracks the patch
    # passes over are dragged along (consistently forward and backward, so the
    # forward-backward check misses them): judge accuracy away from its path.
    swept_low = PATCH_START - 12.0
    swept_high = PATCH_START + PATCH_SIZE + steps * PATCH_VELOCITY + 12.0
    near_path = np.all((start_positions > swept_low) & (start_positions < swept_high), axis=1)
    clear = ~on_patch & ~near_path
    # Accurate tracks follow the expansion out of the image (flow alone, which
    # underestimates it, kept a few more inside), hence not a higher share.
    assert np.count_nonzero(clear) >= 0.3 * len(first), "the rigid background must survive"
    assert np.median(errors[clear]) < ACCURACY_BOUND_PX

    if ransac_enabled:
        # The background moves only ~1.75 px per frame, so a per-frame RANSAC
        # at 1 px cannot pin the geometry down against every patch track: a
        # clear majority goes (~76% measured), against none with the check off.
        assert patch_kept < 0.3
        assert tracker.rejection_counts["epipolar"] >= np.count_nonzero(in_patch) * 0.7
    else:
        assert patch_kept > 0.9
        assert tracker.rejection_counts["epipolar"] == 0
        assert np.count_nonzero(on_patch) >= 0.8 * np.count_nonzero(in_patch)
