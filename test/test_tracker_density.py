"""Track density: the tracker fills `max_tracks` on textured frames, tile seams included.

A VIO front end compares the tracks with a KLT tracker that reaches its
requested count on textured images, so the tracker must too (issue 15: at
least 95 % of `max_tracks` at 752x480 with 300 tracks 20 px apart). The
frames come from a synthetic textured sequence with exactly known motion, and
the tracker gets that exact flow, so every shortfall is the detector's.
"""

from __future__ import annotations

import numpy as np
import pytest

from neuflow_ros.imaging.synthetic_sequence import Motion, SyntheticSequence
from neuflow_ros.tracking.tracker import FeatureTracker, TrackerConfig, TrackSet

WIDTH, HEIGHT = 752, 480
FRAMES = 6


def track_sequence(config: TrackerConfig, frames: int = FRAMES) -> list[TrackSet]:
    sequence = SyntheticSequence(WIDTH, HEIGHT, Motion(dx=2.5, dy=1.0), seed=3, channels=1)
    tracker = FeatureTracker(config)
    results = [tracker.update(sequence.frame(0)[..., 0], 0.0)]
    for k in range(1, frames):
        results.append(tracker.update(
            sequence.frame(k)[..., 0], k / 30.0,
            sequence.true_flow(k - 1, k), sequence.true_flow(k, k - 1),
        ))
    return results


def pairwise_distances(points: np.ndarray) -> np.ndarray:
    differences = points[:, None, :].astype(np.float64) - points[None, :, :]
    distances = np.linalg.norm(differences, axis=2)
    return distances[np.triu_indices(points.shape[0], k=1)]


def test_default_detector_keeps_at_least_95_percent_of_max_tracks() -> None:
    config = TrackerConfig(max_tracks=300, min_distance=20.0)
    results = track_sequence(config)
    counts = [len(tracks) for tracks in results]
    assert min(counts) >= 0.95 * config.max_tracks, counts
    # Content leaves the image every frame, so the tracker did replace tracks.
    assert sum(int(np.count_nonzero(t.ages == 1)) for t in results[1:]) > 0


@pytest.mark.parametrize("tile", [48, 192, 8192], ids=["small_tiles", "default", "whole_image"])
def test_new_corners_keep_min_distance_across_tile_seams(tile: int) -> None:
    config = TrackerConfig(max_tracks=300, min_distance=20.0, detection_tile=tile)
    first = track_sequence(config, frames=1)[0]
    assert len(first) >= 0.95 * config.max_tracks
    # Corners sit on whole pixels; a rasterised disc may miss its rim by a pixel.
    assert pairwise_distances(first.positions).min() >= config.min_distance - 1.0


def test_detection_interval_searches_only_every_nth_frame() -> None:
    config = TrackerConfig(max_tracks=300, min_distance=20.0, detection_interval=3)
    results = track_sequence(config, frames=8)
    new_per_frame = [int(np.count_nonzero(t.ages == 1)) for t in results]
    assert all(new == 0 for k, new in enumerate(new_per_frame) if k % 3), new_per_frame
    assert new_per_frame[3] > 0 and new_per_frame[6] > 0, new_per_frame
    # Between searches the count only falls.
    counts = [len(t) for t in results]
    assert counts[1] >= counts[2] and counts[4] >= counts[5], counts
