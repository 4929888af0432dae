"""TrackSet values built from ids, ages and positions, for tests of what consumes tracks."""

from __future__ import annotations

import numpy as np

from neuflow_ros.tracking.tracker import TrackSet


def track_set(
    ids, ages, positions, previous_positions=None, stamp: float = 0.0,
    previous_stamp: float | None = None,
) -> TrackSet:
    """Tracks at ``positions``; without ``previous_positions`` they did not move.

    Velocities, errors and normalized coordinates are neutral (zero, zero,
    NaN): the consumers under test derive what they need themselves.
    """
    n = len(ids)
    before = positions if previous_positions is None else previous_positions
    return TrackSet(
        ids=np.asarray(ids, dtype=np.uint64),
        ages=np.asarray(ages, dtype=np.uint32),
        positions=np.asarray(positions, dtype=np.float32),
        previous_positions=np.asarray(before, dtype=np.float32),
        velocities=np.zeros((n, 2), np.float32),
        normalized=np.full((n, 2), np.nan, np.float32),
        errors=np.zeros(n, np.float32),
        stamp=stamp,
        previous_stamp=previous_stamp,
    )
