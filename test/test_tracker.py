"""Feature tracker tests on synthetic scenes with analytically known motion.

Every expectation comes from the motion the test itself applies (the exact
flow field and trajectory of each image point), never from tracker output.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from planar_motion import apply_homography, rotation_zoom, translation

from neuflow_ros.tracking.camera_model import CameraModel
from neuflow_ros.tracking.tracker import FeatureTracker, TrackerConfig, TrackSet

WIDTH, HEIGHT = 160, 120
SHAPE = (HEIGHT, WIDTH)
CENTRE = ((WIDTH - 1) / 2.0, (HEIGHT - 1) / 2.0)
PIXEL_GRID = np.stack(
    np.meshgrid(np.arange(WIDTH, dtype=np.float64), np.arange(HEIGHT, dtype=np.float64)), axis=-1
)
DENSE = {"max_tracks": 150, "min_distance": 8.0}
# For tests that hand the tracker flow which deliberately disagrees with the
# images (or need positions moved by exactly the flow): Lucas-Kanade
# refinement would rightly follow the images instead.
FLOW_ONLY = {**DENSE, "refine": False}


def textured_image(seed: int = 0) -> np.ndarray:
    """Smoothed random noise: corners everywhere, deterministic."""
    noise = np.random.default_rng(seed).random(SHAPE).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 1.5)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (smooth * 255.0).astype(np.uint8)



def homography_flow(step: np.ndarray) -> np.ndarray:
    """Exact dense flow of the image motion p -> step(p), in float32 like a network's output."""
    return (apply_homography(step, PIXEL_GRID) - PIXEL_GRID).astype(np.float32)




def run_sequence(
    tracker: FeatureTracker, step: np.ndarray, frames: int, stamps: list[float] | None = None
) -> tuple[list[TrackSet], list[np.ndarray]]:
    """Warp a texture by step**k for frames k = 0..frames-1 and track with the exact flow."""
    base = textured_image()
    flow = homography_flow(step)
    backward = homography_flow(np.linalg.inv(step))
    stamps = stamps if stamps is not None else [0.1 * k for k in range(frames)]
    motions = [np.linalg.matrix_power(step, k) for k in range(frames)]
    results = []
    for k in range(frames):
        frame = cv2.warpPerspective(
            base, motions[k], (WIDTH, HEIGHT), borderMode=cv2.BORDER_REFLECT
        )
        if k == 0:
            results.append(tracker.update(frame, stamps[k]))
        else:
            results.append(tracker.update(frame, stamps[k], flow, backward))
    return results, motions


def trajectory_errors(results: list[TrackSet], motions: list[np.ndarray]) -> np.ndarray:
    """Distance of every final track to where its birth point truly moved."""
    births: dict[int, tuple[int, np.ndarray]] = {}
    for k, tracks in enumerate(results):
        for index in np.flatnonzero(tracks.ages == 1):
            births[int(tracks.ids[index])] = (k, tracks.positions[index].astype(np.float64))
    final = results[-1]
    errors = []
    for track_id, position in zip(final.ids, final.positions, strict=True):
        birth_frame, birth_position = births[int(track_id)]
        birth_to_final = motions[-1] @ np.linalg.inv(motions[birth_frame])
        truth = apply_homography(birth_to_final, birth_position[None])[0]
        errors.append(np.linalg.norm(position - truth))
    return np.asarray(errors)


def assert_consistent_ids(results: list[TrackSet]) -> None:
    """Carried tracks keep id and position chain, ages count frames, new ids are fresh."""
    seen: set[int] = set()
    previous: dict[int, tuple[int, np.ndarray]] = {}
    for tracks in results:
        assert len(set(tracks.ids.tolist())) == len(tracks)
        current = {}
        for track_id, age, position, before in zip(
            tracks.ids.tolist(),
            tracks.ages,
            tracks.positions,
            tracks.previous_positions,
            strict=True,
        ):
            if age == 1:
                assert track_id not in seen, "an id was reused"
                np.testing.assert_array_equal(before, position)
            else:
                previous_age, previous_position = previous[track_id]
                assert age == previous_age + 1
                np.testing.assert_array_equal(before, previous_position)
            seen.add(track_id)
            current[track_id] = (int(age), position)
        previous = current


@pytest.mark.parametrize(
    "step",
    [translation(0.37, -0.21), rotation_zoom(1.5, 1.01, CENTRE)],
    ids=["subpixel_translation", "rotation_zoom"],
)
def test_tracks_follow_analytic_motion_with_persistent_ids(step: np.ndarray) -> None:
    tracker = FeatureTracker(TrackerConfig(**DENSE))
    results, motions = run_sequence(tracker, step, frames=11)

    errors = trajectory_errors(results, motions)
    assert np.median(errors) < 0.05
    assert_consistent_ids(results)
    carried_from_start = np.isin(results[0].ids, results[-1].ids)
    assert np.count_nonzero(carried_from_start) >= len(results[0]) // 2
    assert tracker.rejection_counts["forward_backward"] == 0
    assert tracker.rejection_counts["epipolar"] == 0


def test_replenishes_gaps_left_by_tracks_leaving_the_image() -> None:
    config = TrackerConfig(**DENSE)
    tracker = FeatureTracker(config)
    results, _ = run_sequence(tracker, translation(3.0, 0.0), frames=8)

    assert tracker.rejection_counts["border"] > 0
    initial_count = len(results[0])
    for tracks in results[1:]:
        new = tracks.ages == 1
        carried = tracks.positions[~new]
        assert np.any(new), "dead tracks were not replaced"
        assert len(tracks) >= 0.9 * initial_count
        # New corners appear in gaps only: away from every carried track
        # (1 px slack for corners on integer pixels next to sub-pixel tracks).
        gaps = np.linalg.norm(tracks.positions[new][:, None] - carried[None], axis=2)
        assert gaps.min() >= config.min_distance - 1.0


def test_velocity_is_displacement_over_stamp_difference() -> None:
    stamps = [10.0, 10.05, 10.125, 10.125]
    tracker = FeatureTracker(TrackerConfig(**FLOW_ONLY))
    results, _ = run_sequence(tracker, translation(0.5, -0.25), frames=4, stamps=stamps)

    assert results[0].previous_stamp is None
    assert np.all(np.isnan(results[0].velocities))
    for k in (1, 2):
        tracks = results[k]
        assert tracks.previous_stamp == stamps[k - 1]
        carried = tracks.ages > 1
        expected = np.array([0.5, -0.25]) / (stamps[k] - stamps[k - 1])
        np.testing.assert_allclose(
            tracks.velocities[carried], np.tile(expected, (carried.sum(), 1)), rtol=1e-4
        )
        assert np.all(np.isnan(tracks.velocities[~carried]))
    assert np.all(np.isnan(results[3].velocities)), "dt = 0 must give NaN velocity"


def test_forward_backward_rejects_inconsistent_backward_flow() -> None:
    tracker = FeatureTracker(
        TrackerConfig(**FLOW_ONLY, ransac_enabled=False, forward_backward=True)
    )
    image = textured_image()
    start = tracker.update(image, 0.0)
    shift = np.array([0.6, 0.4])
    forward = homography_flow(translation(*shift))
    backward = -forward
    # Backward flow disagrees by 2 px in the left half of the new frame.
    backward[:, : WIDTH // 2, 0] += 2.0
    moved = start.positions.astype(np.float64) + shift
    # Exclude the seam where bilinear sampling mixes both halves.
    margin = tracker.config.border_margin
    inside = np.all((moved >= margin) & (moved <= np.array([WIDTH, HEIGHT]) - 1 - margin), axis=1)
    left = (moved[:, 0] < WIDTH // 2 - 1) & inside
    right = (moved[:, 0] > WIDTH // 2) & inside
    tracks = tracker.update(image, 0.1, forward, backward)

    surviving = np.isin(start.ids, tracks.ids)
    assert not np.any(surviving[left])
    assert np.all(surviving[right])
    assert tracker.rejection_counts["forward_backward"] == np.count_nonzero(left)
    carried = tracks.ages > 1
    # Tracks that moved onto the seam sample both halves of the backward flow.
    on_seam = (tracks.positions[:, 0] >= WIDTH // 2 - 1) & (tracks.positions[:, 0] <= WIDTH // 2)
    assert np.all(tracks.errors[carried & ~on_seam] < 1e-3)
    assert np.all(np.isnan(tracks.errors[~carried]))


def test_backward_flow_is_ignored_without_forward_backward() -> None:
    tracker = FeatureTracker(TrackerConfig(**FLOW_ONLY, ransac_enabled=False))
    image = textured_image()
    start = tracker.update(image, 0.0)
    forward = homography_flow(translation(0.6, 0.4))
    tracks = tracker.update(image, 0.1, forward, forward + 5.0)  # wildly inconsistent
    assert tracker.rejection_counts["forward_backward"] == 0
    assert np.isin(start.ids, tracks.ids).mean() > 0.9
    assert np.all(np.isnan(tracks.errors))


def test_border_and_non_finite_rejection() -> None:
    margin = 4.0
    tracker = FeatureTracker(TrackerConfig(**FLOW_ONLY, border_margin=margin, ransac_enabled=False))
    image = textured_image()
    start = tracker.update(image, 0.0)
    assert np.all(start.positions >= margin)
    assert np.all(start.positions[:, 0] <= WIDTH - 1 - margin)
    assert np.all(start.positions[:, 1] <= HEIGHT - 1 - margin)

    forward = homography_flow(translation(12.0, 0.0))
    forward[: HEIGHT // 2, :, :] = np.nan  # no flow for the top half
    positions = start.positions.astype(np.float64)
    top = positions[:, 1] <= HEIGHT // 2 - 1
    bottom = positions[:, 1] >= HEIGHT // 2
    leaves = positions[:, 0] + 12.0 > WIDTH - 1 - margin
    tracks = tracker.update(image, 0.1, forward)

    surviving = np.isin(start.ids, tracks.ids)
    assert not np.any(surviving[top])
    assert not np.any(surviving[bottom & leaves])
    assert np.all(surviving[bottom & ~leaves])
    counts = tracker.rejection_counts
    assert counts["non_finite"] == np.count_nonzero(~bottom)
    assert counts["border"] == np.count_nonzero(bottom & leaves)
    assert np.all(np.isnan(tracks.errors)), "no backward flow, so no error"


FOCAL = 100.0
INTRINSICS = [FOCAL, 0.0, CENTRE[0], 0.0, FOCAL, CENTRE[1], 0.0, 0.0, 1.0]
NO_DISTORTION = [0.0] * 5


def distort_plumb_bob(normalized: np.ndarray, coefficients: list[float]) -> np.ndarray:
    """Brown-Conrady forward model as published (k1, k2, p1, p2, k3)."""
    k1, k2, p1, p2, k3 = coefficients
    x, y = normalized[..., 0], normalized[..., 1]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    return np.stack(
        [
            x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y,
        ],
        axis=-1,
    )


def undistort_radial(distorted: np.ndarray, coefficients: list[float]) -> np.ndarray:
    """Fixed-point inverse of a purely radial (k1, k2) model."""
    k1, k2 = coefficients[:2]
    assert not any(coefficients[2:]), "only radial terms are inverted here"
    undistorted = distorted.copy()
    for _ in range(200):
        r2 = np.sum(undistorted**2, axis=-1, keepdims=True)
        undistorted = distorted / (1 + k1 * r2 + k2 * r2**2)
    return undistorted


def parallax_flow(
    distortion: list[float],
    moving_patch: tuple[slice, slice] | None = None,
    patch_flow: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Exact flow of a camera rotating and translating past a bumpy (non-planar)
    scene, seen through a lens with radial distortion; optionally one image
    patch moves on its own, inconsistently with the camera motion."""
    rays = undistort_radial((PIXEL_GRID - CENTRE) / FOCAL, distortion)
    depth = 3.0 + 1.2 * np.sin(PIXEL_GRID[..., 0] / 17.0) * np.cos(PIXEL_GRID[..., 1] / 13.0)
    points = np.concatenate([rays, np.ones_like(depth)[..., None]], axis=-1) * depth[..., None]
    yaw = math.radians(1.5)
    rotation = np.array(
        [[math.cos(yaw), 0.0, math.sin(yaw)], [0.0, 1.0, 0.0], [-math.sin(yaw), 0.0, math.cos(yaw)]]
    )
    moved = points @ rotation.T + np.array([0.25, 0.04, 0.15])
    projected = distort_plumb_bob(moved[..., :2] / moved[..., 2:3], distortion) * FOCAL + CENTRE
    flow = projected - PIXEL_GRID
    if moving_patch is not None:
        flow[moving_patch] = patch_flow
    return flow.astype(np.float32)


def test_epipolar_check_uses_undistorted_pixels_with_camera_model() -> None:
    distortion = [-0.4, 0.12, 0.0, 0.0, 0.0]
    flow = parallax_flow(distortion)
    model = CameraModel.from_camera_info("plumb_bob", distortion, INTRINSICS, WIDTH, HEIGHT)
    config = TrackerConfig(max_tracks=200, min_distance=6.0, refine=False)
    rejected = {}
    for name, camera_model in (("distorted", None), ("undistorted", model)):
        tracker = FeatureTracker(config, camera_model)
        tracker.update(textured_image(), 0.0)
        tracker.update(textured_image(), 0.1, flow)
        rejected[name] = tracker.rejection_counts["epipolar"]
    # A rigid scene: only lens distortion makes tracks look like epipolar outliers.
    assert rejected["distorted"] >= 5
    assert rejected["undistorted"] == 0


@pytest.mark.parametrize("ransac_enabled", [True, False])
def test_epipolar_check_rejects_independently_moving_patch(ransac_enabled: bool) -> None:
    rows, cols = slice(30, 80), slice(95, 145)
    # The camera heads for a point right of the image, so epipolar lines run
    # roughly horizontally; the patch moves across them. (Motion along them
    # would be indistinguishable from a different depth.)
    flow = parallax_flow(NO_DISTORTION, (rows, cols), (1.5, -6.0))
    config = TrackerConfig(
        max_tracks=200, min_distance=6.0, ransac_enabled=ransac_enabled, refine=False
    )
    tracker = FeatureTracker(config)
    image = textured_image()
    start = tracker.update(image, 0.0)
    x, y = start.positions[:, 0], start.positions[:, 1]
    # Keep 2 px away from the patch edge, where bilinear sampling mixes motions.
    in_patch = (x > cols.start + 1) & (x < cols.stop - 3)
    in_patch &= (y > rows.start + 1) & (y < rows.stop - 3)
    outside = (x < cols.start - 2) | (x > cols.stop + 1)
    outside |= (y < rows.start - 2) | (y > rows.stop + 1)
    assert np.count_nonzero(in_patch) >= 10
    tracks = tracker.update(image, 0.1, flow)

    surviving = np.isin(start.ids, tracks.ids)
    patch_kept = np.count_nonzero(surviving[in_patch]) / np.count_nonzero(in_patch)
    if ransac_enabled:
        assert patch_kept < 0.1
        # Only the patch and its seam may be rejected, never the rigid background.
        assert tracker.rejection_counts["epipolar"] <= np.count_nonzero(~outside)
    else:
        assert patch_kept == 1.0
        assert tracker.rejection_counts["epipolar"] == 0


def shifted_pair(shift: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """A texture and the same texture moved by `shift` pixels (exact sub-pixel resampling)."""
    base = textured_image()
    placement = np.array([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]]])
    moved = cv2.warpAffine(
        base, placement, (WIDTH, HEIGHT), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
    )
    return base, moved


def carried_displacements(start: TrackSet, tracks: TrackSet) -> np.ndarray:
    """Displacement of every carried track from its position in `start`."""
    carried = tracks.ages > 1
    births = start.positions[np.searchsorted(start.ids, tracks.ids[carried])]
    return (tracks.positions[carried] - births).astype(np.float64)


SHIFT = (0.6, -0.4)
FLOW_BIAS = (0.3, 0.0)


def biased_flow() -> np.ndarray:
    """The true flow of shifted_pair(SHIFT), off by FLOW_BIAS everywhere (a flow network's bias)."""
    return homography_flow(translation(SHIFT[0] + FLOW_BIAS[0], SHIFT[1] + FLOW_BIAS[1]))


def test_refinement_removes_flow_bias() -> None:
    tracker = FeatureTracker(TrackerConfig(**DENSE, ransac_enabled=False))
    previous, current = shifted_pair(SHIFT)
    start = tracker.update(previous, 0.0)
    tracks = tracker.update(current, 0.1, biased_flow())

    # Away from the border, where the reflected texture no longer moves rigidly.
    inside = np.all((tracks.positions > 10) & (tracks.positions < [WIDTH - 11, HEIGHT - 11]), 1)
    errors = np.linalg.norm(carried_displacements(start, tracks) - SHIFT, axis=1)
    assert np.count_nonzero(tracks.ages > 1) >= 0.9 * len(start)
    assert np.median(errors[inside[tracks.ages > 1]]) < 0.05
    assert tracker.refinement_fallbacks == {"lk_failed": 0, "correction_limit": 0}


@pytest.mark.parametrize(
    "settings",
    [{"refine": False}, {"refine_max_correction": 0.1}],
    ids=["refine_off", "correction_limit"],
)
def test_flow_prediction_kept_without_refinement_or_beyond_correction_limit(
    settings: dict[str, float],
) -> None:
    tracker = FeatureTracker(TrackerConfig(**DENSE, ransac_enabled=False, **settings))
    previous, current = shifted_pair(SHIFT)
    start = tracker.update(previous, 0.0)
    tracks = tracker.update(current, 0.1, biased_flow())

    displacements = carried_displacements(start, tracks)
    expected = np.broadcast_to(np.array(SHIFT) + FLOW_BIAS, displacements.shape)
    np.testing.assert_allclose(displacements, expected, atol=1e-4)
    # Tracks leaving the image were refined too before the border check dropped them.
    limited = len(start) if "refine_max_correction" in settings else 0
    assert tracker.refinement_fallbacks == {"lk_failed": 0, "correction_limit": limited}


def test_lucas_kanade_failure_keeps_flow_prediction() -> None:
    tracker = FeatureTracker(TrackerConfig(**DENSE, ransac_enabled=False))
    previous, current = shifted_pair(SHIFT)
    tracker.update(previous, 0.0)
    # A textureless frame: LK cannot find any feature from it in the next one.
    blank = np.full(SHAPE, 128, dtype=np.uint8)
    before = tracker.update(blank, 0.1, np.zeros((*SHAPE, 2), np.float32))
    failed_before = tracker.refinement_fallbacks["lk_failed"]
    tracks = tracker.update(current, 0.2, biased_flow())

    carried = tracks.ages > 1
    births = before.positions[np.searchsorted(before.ids, tracks.ids[carried])]
    expected = births.astype(np.float64) + np.array(SHIFT) + FLOW_BIAS
    np.testing.assert_allclose(tracks.positions[carried], expected, atol=1e-4)
    # Every track was looked for, also those the border check dropped afterwards.
    assert tracker.refinement_fallbacks["lk_failed"] - failed_before == len(before)


def test_photometric_check_rejects_changed_content_but_not_a_brightness_change() -> None:
    base, moved = shifted_pair(SHIFT)
    flow = homography_flow(translation(*SHIFT))
    # A 40x40 square of the new frame shows other texture (an occluder).
    square = (slice(40, 80), slice(60, 100))
    occluded = moved.copy()
    occluded[square] = textured_image(seed=5)[square]
    tracker = FeatureTracker(TrackerConfig(**DENSE, ransac_enabled=False))
    start = tracker.update(base, 0.0)
    tracks = tracker.update(occluded, 0.1, flow)
    window = tracker.config.refine_window
    x, y = start.positions[:, 0] + SHIFT[0], start.positions[:, 1] + SHIFT[1]
    # Windows wholly inside the square, or wholly clear of it.
    inside = (x >= 60 + window / 2) & (x <= 99 - window / 2)
    inside &= (y >= 40 + window / 2) & (y <= 79 - window / 2)
    clear = (x < 60 - window / 2) | (x > 99 + window / 2) | (y < 40 - window / 2)
    clear |= y > 79 + window / 2
    clear &= (x > 6) & (x < WIDTH - 7) & (y > 6) & (y < HEIGHT - 7)
    survived = np.isin(start.ids, tracks.ids)
    assert np.count_nonzero(inside) >= 2 and not survived[inside].any()
    assert survived[clear].mean() > 0.95
    assert tracker.rejection_counts["photometric"] >= np.count_nonzero(inside)

    # The same motion 30 gray levels brighter: every residual grows alike.
    brighter = np.clip(moved.astype(np.int16) + 30, 0, 255).astype(np.uint8)
    tracker = FeatureTracker(TrackerConfig(**DENSE, ransac_enabled=False))
    tracker.update(base, 0.0)
    tracker.update(brighter, 0.1, flow)
    assert tracker.rejection_counts["photometric"] == 0


def test_id_limit_wraps_without_colliding_with_live_ids() -> None:
    id_limit = 40
    tracker = FeatureTracker(TrackerConfig(max_tracks=30, min_distance=8.0, id_limit=id_limit))
    image = textured_image()
    tracks = tracker.update(image, 0.0)
    rng = np.random.default_rng(1)
    handed_out = tracks.ids.size
    for frame in range(1, 15):
        forward = np.zeros((*SHAPE, 2), dtype=np.float32)
        # Kill about a third of the tracks by making the flow at them non-finite.
        victims = tracks.positions[rng.random(len(tracks)) < 0.35].round().astype(int)
        forward[victims[:, 1], victims[:, 0]] = np.nan
        tracks = tracker.update(image, 0.1 * frame, forward)

        assert len(set(tracks.ids.tolist())) == len(tracks), "a live id was handed out again"
        assert np.all(tracks.ids < id_limit)
        new_ids = tracks.ids[tracks.ages == 1].tolist()
        handed_out += len(new_ids)
    assert handed_out > 2 * id_limit, "the test must exercise wrapping"


def test_reset_drops_tracks_and_ids_keep_increasing() -> None:
    tracker = FeatureTracker(TrackerConfig(**DENSE))
    image = textured_image()
    before = tracker.update(image, 0.0)
    before = tracker.update(image, 0.1, np.zeros((*SHAPE, 2), np.float32))
    tracker.reset()
    smaller = textured_image(seed=3)[:100, :140]  # size change is allowed after reset
    after = tracker.update(smaller, 0.05)

    assert np.all(after.ages == 1)
    assert after.previous_stamp is None
    assert after.ids.min() > before.ids.max()


def test_invalid_input_raises_without_changing_state() -> None:
    tracker = FeatureTracker(TrackerConfig(**DENSE))
    image = textured_image()
    first = tracker.update(image, 0.0)
    good_flow = np.zeros((*SHAPE, 2), np.float32)
    with pytest.raises(ValueError, match="forward_flow is required"):
        tracker.update(image, 0.1)
    with pytest.raises(ValueError, match="image size changed"):
        tracker.update(image[:100], 0.1, good_flow[:100])
    with pytest.raises(ValueError, match="forward_flow must have shape"):
        tracker.update(image, 0.1, good_flow[:, :, :1])
    with pytest.raises(ValueError, match="uint8 or float32"):
        tracker.update(image.astype(np.int32), 0.1, good_flow)
    with pytest.raises(ValueError, match="stamp must be finite"):
        tracker.update(image, math.nan, good_flow)
    intrinsics = [90, 0, 80, 0, 90, 60, 0, 0, 1]
    tracker.set_camera_model(CameraModel.from_camera_info("", [], intrinsics, 320, 240))
    with pytest.raises(ValueError, match="camera model is for"):
        tracker.update(image, 0.1, good_flow)
    tracker.set_camera_model(None)
    tracks = tracker.update(image, 0.1, good_flow)
    np.testing.assert_array_equal(tracks.ids[tracks.ages > 1], first.ids)
    assert tracks.previous_stamp == 0.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tracks", 0),
        ("min_distance", -1.0),
        ("quality_level", 0.0),
        ("block_size", 0),
        ("border_margin", math.inf),
        ("fb_threshold", 0.0),
        ("ransac_threshold", -1.0),
        ("ransac_confidence", 1.0),
        ("id_limit", 10),
        ("refine_window", 2),
        ("refine_max_correction", 0.0),
    ],
)
def test_config_rejects_invalid_values(field: str, value: float) -> None:
    settings: dict[str, float] = {"max_tracks": 20, field: value}
    with pytest.raises(ValueError, match=field):
        TrackerConfig(**settings)


def test_normalized_coordinates_nan_without_model_and_exact_with_one() -> None:
    image = textured_image()
    tracker = FeatureTracker(TrackerConfig(**DENSE))
    assert np.all(np.isnan(tracker.update(image, 0.0).normalized))

    coefficients = [-0.25, 0.08, 0.001, -0.0015, -0.01]
    fx, fy, cx, cy = 95.0, 92.0, 81.0, 58.5
    model = CameraModel.from_camera_info(
        "plumb_bob", coefficients, [fx, 0, cx, 0, fy, cy, 0, 0, 1], WIDTH, HEIGHT
    )
    tracker.set_camera_model(model)
    tracks = tracker.update(image, 0.1, np.zeros((*SHAPE, 2), np.float32))
    assert np.all(np.isfinite(tracks.normalized))
    distorted = distort_plumb_bob(tracks.normalized.astype(np.float64), coefficients)
    reprojected = distorted * [fx, fy] + [cx, cy]
    np.testing.assert_allclose(reprojected, tracks.positions, atol=1e-3)
