"""Debug rendering of feature tracks: a dot per track, coloured by age, with its recent trail.

A person checking a tracker wants to see at a glance which features are new
(red), which have lived long (green) and whether the trails follow the scene.
Drawing goes through OpenCV, grouped by colour, so that it costs a few
milliseconds per frame and can run in the node next to the tracker.
"""

from __future__ import annotations

import cv2
import numpy as np

from neuflow_ros.tracking.tracker import TrackSet

# Sub-pixel drawing: OpenCV takes fixed-point coordinates with this many fractional bits.
_SHIFT_BITS = 4
_SCALE = float(1 << _SHIFT_BITS)

_YOUNG_RGB = np.array([255.0, 0.0, 0.0])
_OLD_RGB = np.array([0.0, 255.0, 0.0])


class TrackTrails:
    """The last `length` positions of every live track, oldest first.

    Call update() with every TrackSet the tracker produces (also when no one
    looks at the image, or trails jump over the skipped frames). Ids missing
    from a TrackSet are dead and forgotten, so memory stays bounded by the
    number of live tracks. A trail shorter than `length` is padded at its old
    end by repeating its first position, which draws nothing extra; that keeps
    all trails in one (N, length, 2) array.
    """

    def __init__(self, length: int = 10) -> None:
        if isinstance(length, bool) or not isinstance(length, int) or length < 2:
            raise ValueError(f"trail length must be an integer >= 2, got {length!r}")
        self._length = length
        self._ids = np.empty(0, dtype=np.uint64)
        self._points = np.empty((0, length, 2), dtype=np.float32)
        self._counts = np.empty(0, dtype=np.int64)

    @property
    def length(self) -> int:
        return self._length

    def __len__(self) -> int:
        return int(self._ids.size)

    def update(self, tracks: TrackSet) -> None:
        """Append the current position of every live track; start fresh trails for new ids.

        A track of age 1 always starts a new trail, even if its id was seen
        before (e.g. ids wrapped around an id_limit).
        """
        ids = tracks.ids
        positions = tracks.positions.astype(np.float32)
        order = np.argsort(self._ids)
        sorted_ids = self._ids[order]
        slot = np.searchsorted(sorted_ids, ids)
        slot = np.minimum(slot, max(sorted_ids.size - 1, 0))
        known = np.zeros(ids.size, dtype=bool)
        if sorted_ids.size:
            known = (sorted_ids[slot] == ids) & (tracks.ages >= 2)
        previous = order[slot[known]]

        points = np.repeat(positions[:, None, :], self._length, axis=1)
        points[known, :-1] = self._points[previous, 1:]
        counts = np.ones(ids.size, dtype=np.int64)
        counts[known] = np.minimum(self._counts[previous] + 1, self._length)
        self._ids = ids.copy()
        self._points = points
        self._counts = counts

    def trail(self, track_id: int) -> np.ndarray:
        """(L, 2) float32 positions of one live track, oldest first, L <= length."""
        index = np.flatnonzero(self._ids == np.uint64(track_id))
        if index.size == 0:
            raise KeyError(f"track {track_id} is not alive")
        count = int(self._counts[index[0]])
        return self._points[index[0], self._length - count :].copy()

    def points_for(self, ids: np.ndarray) -> np.ndarray:
        """(N, length, 2) padded trails of `ids`; an unknown id gets NaN (nothing drawn)."""
        result = np.full((ids.size, self._length, 2), np.nan, dtype=np.float32)
        if self._ids.size == 0:
            return result
        order = np.argsort(self._ids)
        slot = np.minimum(np.searchsorted(self._ids[order], ids), self._ids.size - 1)
        found = self._ids[order[slot]] == ids
        result[found] = self._points[order[slot[found]]]
        return result


def age_colours(ages: np.ndarray, max_age_for_colour: int) -> np.ndarray:
    """(N, 3) uint8 RGB: red at age 1 blending to green at `max_age_for_colour` and older."""
    fraction = (np.clip(ages.astype(np.float64), 1, max_age_for_colour) - 1.0) / (
        max_age_for_colour - 1.0
    )
    colours = _YOUNG_RGB * (1.0 - fraction[:, None]) + _OLD_RGB * fraction[:, None]
    return np.rint(colours).astype(np.uint8)


def draw_tracks(
    rgb: np.ndarray,
    tracks: TrackSet,
    trails: TrackTrails | None = None,
    max_age_for_colour: int = 20,
    radius: int = 2,
) -> np.ndarray:
    """A copy of `rgb` (HxWx3 uint8, or HxW mono drawn as RGB) with the tracks drawn on it.

    Trails come from `trails`, which must have been updated with `tracks`
    first; None draws dots only. Tracks outside the image are clipped by
    OpenCV, not an error.
    """
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8:
        raise ValueError(f"image must be a uint8 numpy array, got {getattr(rgb, 'dtype', rgb)}")
    if rgb.ndim == 2 or (rgb.ndim == 3 and rgb.shape[2] == 1):
        canvas = cv2.cvtColor(rgb.reshape(rgb.shape[:2]), cv2.COLOR_GRAY2RGB)
    elif rgb.ndim == 3 and rgb.shape[2] == 3:
        canvas = np.ascontiguousarray(rgb).copy()
    else:
        raise ValueError(f"image must be HxW or HxWx3, got shape {rgb.shape}")
    if isinstance(max_age_for_colour, bool) or not isinstance(max_age_for_colour, int):
        raise ValueError(f"max_age_for_colour must be an integer, got {max_age_for_colour!r}")
    if max_age_for_colour < 2:
        raise ValueError(f"max_age_for_colour must be >= 2, got {max_age_for_colour}")
    if len(tracks) == 0:
        return canvas

    colours = age_colours(tracks.ages, max_age_for_colour)
    finite = np.all(np.isfinite(tracks.positions), axis=1)
    centres = np.rint(tracks.positions * _SCALE).astype(np.int32)
    if trails is not None:
        paths = trails.points_for(tracks.ids)
        drawable = finite & np.all(np.isfinite(paths), axis=(1, 2))
        paths = np.rint(np.nan_to_num(paths) * _SCALE).astype(np.int32)
    levels = np.clip(tracks.ages, 1, max_age_for_colour)
    for level in np.unique(levels):
        members = np.flatnonzero((levels == level) & finite)
        if members.size == 0:
            continue
        colour = tuple(int(c) for c in colours[members[0]])
        if trails is not None and np.any(drawable[members]):
            with_trail = members[drawable[members]]
            cv2.polylines(
                canvas, list(paths[with_trail]), False, colour, 1, cv2.LINE_AA, _SHIFT_BITS
            )
        for x, y in centres[members].tolist():
            cv2.circle(canvas, (x, y), radius << _SHIFT_BITS, colour, -1, cv2.LINE_AA, _SHIFT_BITS)
    return canvas
