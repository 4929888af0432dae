"""Track trails and track drawing, checked on known positions and ages."""

from __future__ import annotations

import numpy as np
import pytest
from track_sets import track_set

from neuflow_ros.tracking.track_visualization import TrackTrails, draw_tracks


def test_trails_keep_last_positions_and_forget_dead_ids() -> None:
    trails = TrackTrails(length=3)
    for k in range(5):
        trails.update(track_set([4, 9], [k + 1, k + 1], [[k, 0.0], [0.0, 2.0 * k]]))
    np.testing.assert_array_equal(trails.trail(4), [[2, 0], [3, 0], [4, 0]])
    np.testing.assert_array_equal(trails.trail(9), [[0, 4], [0, 6], [0, 8]])

    trails.update(track_set([9, 11], [6, 1], [[0.0, 10.0], [5.0, 5.0]]))
    assert len(trails) == 2
    with pytest.raises(KeyError):
        trails.trail(4)
    np.testing.assert_array_equal(trails.trail(11), [[5, 5]])
    # An id handed out again (age 1) starts a new trail.
    trails.update(track_set([9], [1], [[30.0, 30.0]]))
    np.testing.assert_array_equal(trails.trail(9), [[30, 30]])


def test_dots_are_red_when_young_and_green_when_old() -> None:
    image = np.zeros((48, 64, 3), np.uint8)
    tracks = track_set([0, 1, 2], [1, 20, 11], [[10.0, 10.0], [40.0, 30.0], [25.0, 20.0]])
    drawn = draw_tracks(image, tracks, None, max_age_for_colour=20)

    np.testing.assert_array_equal(drawn[10, 10], [255, 0, 0])
    np.testing.assert_array_equal(drawn[30, 40], [0, 255, 0])
    middle = drawn[20, 25].astype(int)
    assert abs(middle[0] - middle[1]) <= 30 and middle[0] > 100 and middle[2] == 0
    assert not np.any(image), "the input must not be modified"


def test_trails_are_drawn_along_past_positions() -> None:
    image = np.zeros((48, 64), np.uint8)  # mono input comes back as RGB
    trails = TrackTrails(length=4)
    for k in range(4):
        tracks = track_set([3], [k + 1], [[10.0 + 10 * k, 24.0]])
        trails.update(tracks)
    with_trail = draw_tracks(image, tracks, trails)
    without = draw_tracks(image, tracks, None)

    assert with_trail.shape == (48, 64, 3)
    assert with_trail[24, 20].any() and with_trail[24, 30].any()
    assert not without[24, 20].any()


@pytest.mark.parametrize("image", [np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.float32)])
def test_rejects_bad_images(image: np.ndarray) -> None:
    with pytest.raises(ValueError, match="image must be"):
        draw_tracks(image, track_set([0], [1], [[1.0, 1.0]]))


def test_rejects_bad_trail_length_and_colour_range() -> None:
    with pytest.raises(ValueError, match="trail length"):
        TrackTrails(length=1)
    with pytest.raises(ValueError, match="max_age_for_colour"):
        draw_tracks(np.zeros((8, 8, 3), np.uint8), track_set([0], [1], [[1.0, 1.0]]), None, 1)
