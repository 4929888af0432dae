"""Sparse feature tracks with persistent ids, advanced by dense optical flow.

Visual-odometry and SLAM front ends want a KLT-like stream of features that
keep their identity from frame to frame. Instead of running KLT, this
tracker moves every feature by the dense flow the network already computed,
and rejects features whose motion is not trustworthy. It is ROS-free so that
it can be tested and reused without a ROS installation.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from neuflow_ros.tracking.camera_model import CameraModel
from neuflow_ros.tracking.corner_detection import CornerDetectorConfig, detect_corners
from neuflow_ros.tracking.image_patches import bilinear_patches, gather_patches, sample_bilinear

REJECTION_REASONS = ("non_finite", "border", "forward_backward", "photometric", "epipolar")

# Why a track's flow prediction was kept instead of its Lucas-Kanade refinement.
REFINEMENT_FALLBACKS = ("lk_failed", "correction_limit")

# Lucas-Kanade on the full-resolution image only: the flow prediction is
# within LK's reach, and a coarser level cost the tracker 12 % of its time
# at equal Middlebury accuracy (benchmarks/compare_klt.py).
_REFINE_PYRAMID_LEVELS = 0
# Stop once an LK step is below 0.01 px: far below the accuracy a track needs,
# reached in a handful of iterations from a good prediction.
_REFINE_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 0.01)

# Residual floor (gray levels) of the photometric check: on noise-free
# frames the median residual is near 0, and a multiple of 0 would reject
# every track that is not pixel-perfect; uint8 rounding alone gives ~0.3.
_MIN_RESIDUAL = 1.0

# Where the flow is looked up around each track, in steps: the track itself,
# then +x, -x, +y, -y for the central differences of flow_jacobian().
_PROBE_OFFSETS = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])

# Fewer correspondences leave the 8-point fundamental matrix undetermined.
_MIN_RANSAC_TRACKS = 8

# Below this, ids no longer fit uint64 index arithmetic in numpy (int64).
_MAX_ID_LIMIT = 2**63


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class TrackerConfig:
    """Tuning of detection, rejection and id allocation (all distances in pixels).

    `id_limit`: None keeps ids unbounded (uint64). Set it (e.g. 2**24) when
    ids travel through float32 channels, such as VINS-Fusion's PointCloud,
    which represent integers exactly only below 2**24.

    `refine`: polish every flow-predicted position with pyramidal Lucas-Kanade
    on the feature's `refine_window` x `refine_window` patch (previous frame
    -> this frame, started at the prediction). Dense flow is smoothed and has
    a per-frame sub-pixel bias that accumulates along a track; LK on the
    feature's own texture removes both. A correction larger than
    `refine_max_correction` means LK most likely locked onto other texture,
    so the flow prediction is kept (counted in `refinement_fallbacks`).
    Refinement needs uint8 frames; float32 frames are tracked by flow alone.

    `residual_ratio`: with refinement, reject a track whose residual (mean
    absolute gray-level difference between its window in the previous frame
    and at its new position, as LK reports it) exceeds this multiple of the
    median residual of the frame's tracks; 0 = off. Relative to the median
    so that a global brightness change does not reject every track. On the
    Middlebury pairs it rejects the > 3 px errors better than the
    forward-backward check, and it needs no backward flow.

    `forward_backward`: check each track with the backward flow (round trip
    within `fb_threshold`). The pipelines compute the backward flow, which
    costs a second flow computation, only when this is set; without it the
    tracker ignores a backward flow it is given.

    Detection: Shi-Tomasi corners with `block_size` x `block_size`
    covariation windows (3 finds more corners on fine texture than 7, at
    equal accuracy; benchmarks/compare_klt.py), searched per tile of about
    `detection_tile` pixels (see corner_detection) on every
    `detection_interval`-th frame; a larger interval saves detection time at
    the cost of fewer tracks between passes.
    """

    max_tracks: int = 300
    min_distance: float = 20.0
    quality_level: float = 0.01
    block_size: int = 3
    detection_tile: int = 192
    detection_interval: int = 1
    border_margin: float = 4.0
    forward_backward: bool = False
    fb_threshold: float = 1.0
    residual_ratio: float = 2.5
    ransac_enabled: bool = True
    ransac_threshold: float = 1.0
    ransac_confidence: float = 0.99
    id_limit: int | None = None
    refine: bool = True
    refine_window: int = 11
    refine_max_correction: float = 2.0

    def __post_init__(self) -> None:
        _require(
            _is_int(self.max_tracks) and self.max_tracks >= 1,
            f"max_tracks must be an integer >= 1, got {self.max_tracks!r}",
        )
        _require(
            math.isfinite(self.min_distance) and self.min_distance >= 0.0,
            f"min_distance must be finite and >= 0, got {self.min_distance!r}",
        )
        _require(
            0.0 < self.quality_level < 1.0,
            f"quality_level must be in (0, 1), got {self.quality_level!r}",
        )
        _require(
            _is_int(self.block_size) and self.block_size >= 1,
            f"block_size must be an integer >= 1, got {self.block_size!r}",
        )
        _require(
            _is_int(self.detection_tile) and self.detection_tile >= 16,
            f"detection_tile must be an integer >= 16, got {self.detection_tile!r}",
        )
        _require(
            _is_int(self.detection_interval) and self.detection_interval >= 1,
            f"detection_interval must be an integer >= 1, got {self.detection_interval!r}",
        )
        _require(
            math.isfinite(self.border_margin) and self.border_margin >= 0.0,
            f"border_margin must be finite and >= 0, got {self.border_margin!r}",
        )
        _require(
            math.isfinite(self.fb_threshold) and self.fb_threshold > 0.0,
            f"fb_threshold must be finite and > 0, got {self.fb_threshold!r}",
        )
        _require(
            isinstance(self.forward_backward, bool),
            f"forward_backward must be a bool, got {self.forward_backward!r}",
        )
        _require(
            math.isfinite(self.residual_ratio) and self.residual_ratio >= 0.0,
            f"residual_ratio must be finite and >= 0 (0 = off), got {self.residual_ratio!r}",
        )
        _require(
            math.isfinite(self.ransac_threshold) and self.ransac_threshold > 0.0,
            f"ransac_threshold must be finite and > 0, got {self.ransac_threshold!r}",
        )
        _require(
            0.0 < self.ransac_confidence < 1.0,
            f"ransac_confidence must be in (0, 1), got {self.ransac_confidence!r}",
        )
        _require(isinstance(self.refine, bool), f"refine must be a bool, got {self.refine!r}")
        _require(
            _is_int(self.refine_window) and self.refine_window >= 3,
            f"refine_window must be an integer >= 3, got {self.refine_window!r}",
        )
        _require(
            math.isfinite(self.refine_max_correction) and self.refine_max_correction > 0.0,
            f"refine_max_correction must be finite and > 0, got {self.refine_max_correction!r}",
        )
        if self.id_limit is not None:
            _require(
                _is_int(self.id_limit) and self.max_tracks <= self.id_limit <= _MAX_ID_LIMIT,
                f"id_limit must be None or an integer in [max_tracks={self.max_tracks}, 2**63], "
                f"got {self.id_limit!r}",
            )


@dataclass
class TrackSet:
    """All live tracks of one frame as parallel arrays of length N.

    Struct-of-arrays so that a message can be filled without a Python loop.
    Tracks detected in this frame are included (age 1, previous position =
    position, velocity and error NaN) so that consumers see a feature from
    the frame it appears in; they come after the tracks carried over.
    """

    ids: np.ndarray  # (N,) uint64
    ages: np.ndarray  # (N,) uint32, frames seen including this one
    positions: np.ndarray  # (N, 2) float32, pixels in this frame
    previous_positions: np.ndarray  # (N, 2) float32, pixels in the previous frame
    velocities: np.ndarray  # (N, 2) float32, pixels per second
    normalized: np.ndarray  # (N, 2) float32, undistorted x/z, y/z; NaN without camera model
    errors: np.ndarray  # (N,) float32, forward-backward error in pixels; NaN if unknown
    stamp: float
    previous_stamp: float | None

    def __len__(self) -> int:
        return int(self.ids.size)


class _IdAllocator:
    """Hands out track ids that are never reused while the run lasts.

    With a limit, ids wrap modulo the limit and skip ids still alive, so an
    id only comes back after every other id in [0, limit) was handed out.
    """

    def __init__(self, limit: int | None) -> None:
        self._limit = limit
        self._next = 0

    def allocate(self, count: int, live: np.ndarray) -> np.ndarray:
        if count == 0:
            return np.empty(0, dtype=np.uint64)
        if self._limit is None:
            ids = np.arange(self._next, self._next + count, dtype=np.uint64)
            self._next += count
            return ids
        # count + live.size <= max_tracks <= limit, so these candidates are
        # distinct and at least `count` of them are not alive.
        candidates = (self._next + np.arange(count + live.size, dtype=np.int64)) % self._limit
        ids = candidates[~np.isin(candidates, live.astype(np.int64))][:count]
        self._next = (int(ids[-1]) + 1) % self._limit
        return ids.astype(np.uint64)


def lucas_kanade(
    previous: np.ndarray, current: np.ndarray, start: np.ndarray, predicted: np.ndarray,
    window: int, pyramid_levels: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pyramidal Lucas-Kanade of ``start`` (in ``previous``), started at ``predicted``.

    The refinement step of the tracker (frame to frame) and of the stereo
    matches (left to right): from a good flow prediction few coarser levels
    (`pyramid_levels`) and a 0.01 px stopping step suffice. Returns the
    positions (N, 2) float64, whether LK found each point, and LK's residual
    per point.
    """
    tracked, status, residuals = cv2.calcOpticalFlowPyrLK(
        previous,
        current,
        start.astype(np.float32).reshape(-1, 1, 2),
        predicted.astype(np.float32).reshape(-1, 1, 2),
        winSize=(window, window),
        maxLevel=pyramid_levels,
        criteria=_REFINE_CRITERIA,
        flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
    )
    tracked = tracked.reshape(-1, 2).astype(np.float64)
    found = status.reshape(-1).astype(bool) & np.all(np.isfinite(tracked), axis=1)
    return tracked, found, residuals.reshape(-1)


@functools.lru_cache(maxsize=8)
def _moment_weights(window: int) -> np.ndarray:
    """(window^2, 3) float32: 1, x offset, y offset of each window pixel from the centre."""
    half = window // 2
    offsets = np.arange(-half, half + 1, dtype=np.float32)
    ones = np.ones(window * window, np.float32)
    return np.stack([ones, np.tile(offsets, window), np.repeat(offsets, window)], axis=1)


def window_moments(image: np.ndarray, points: np.ndarray, window: int) -> np.ndarray:
    """The nine gradient moments of each point's `window`-square patch -> (N, 3, 3) float64.

    Rows: g_x g_x, g_x g_y, g_y g_y; columns: summed over the window with
    weight 1, x offset, y offset from the patch's integer centre, rint(point).
    What window_bias() needs of a track's texture; computed while `image`
    is the current frame (its pixels still in the cache), used on the next.
    """
    count = points.shape[0]
    if count == 0:
        return np.empty((0, 3, 3), dtype=np.float64)
    half = window // 2
    centre = np.rint(points).astype(np.intp)
    patch = gather_patches(image, centre, np.arange(-half - 1, half + 2)).astype(np.float32)
    gx = (patch[:, 1:-1, 2:] - patch[:, 1:-1, :-2]).reshape(count, -1)
    gy = (patch[:, 2:, 1:-1] - patch[:, :-2, 1:-1]).reshape(count, -1)
    products = np.empty((count, 3, window * window), dtype=np.float32)
    np.multiply(gx, gx, out=products[:, 0])
    np.multiply(gx, gy, out=products[:, 1])
    np.multiply(gy, gy, out=products[:, 2])
    # One (3N, window^2) x (window^2, 3) product: numpy's batched matmul of
    # N small matrices is several times slower.
    moments = (products.reshape(count * 3, -1) @ _moment_weights(window)).reshape(count, 3, 3)
    return moments.astype(np.float64)


def window_bias(moments: np.ndarray, start: np.ndarray, jacobian: np.ndarray) -> np.ndarray:
    """Where translational Lucas-Kanade lands off the true motion of a window's centre -> (N, 2).

    LK moves the window as a whole, so it follows the gradient-weighted
    centroid of the window's texture rather than its centre: under rotation
    or zoom that misses by (flow gradient) x (centroid offset), a few
    hundredths of a pixel per frame, but the same each frame for the same
    texture, so it adds up along a track. To first order the miss is
    G^-1 sum_i g_i g_i^T K r_i, with g_i the image gradient at window pixel i,
    r_i its offset from the centre, G = sum_i g_i g_i^T and K the flow's
    Jacobian (`jacobian`, (N, 2, 2): rows flow components, columns d/dx, d/dy).

    K is constant over a window, so the sum is a combination of the nine
    moments of window_moments() (taken at `start` in the previous frame).
    """
    count = start.shape[0]
    if count == 0:
        return np.empty((0, 2), dtype=np.float64)
    plain = moments[:, :, 0]
    # Offsets from the sub-pixel start, not from the integer window centre.
    shift = np.rint(start) - start
    along = moments[:, :, 1:] + plain[:, :, None] * shift[:, None, :]  # (N, xx/xy/yy, x/y)
    # Component m of sum_i (g g^T)_i K r_i is sum_(c, d) K[c, d] * along[c + m, d].
    shifted = np.stack([along[:, 0:2], along[:, 1:3]], axis=-1)
    moment = np.einsum("ncd,ncdm->nm", jacobian, shifted)
    gxx, gxy, gyy = plain[:, 0], plain[:, 1], plain[:, 2]
    determinant = gxx * gyy - gxy * gxy
    safe = determinant > 1e-9 * np.maximum(gxx + gyy, 1.0) ** 2
    scale = np.where(safe, 1.0 / np.where(safe, determinant, 1.0), 0.0)
    bias = np.empty((count, 2))
    bias[:, 0] = (gyy * moment[:, 0] - gxy * moment[:, 1]) * scale
    bias[:, 1] = (gxx * moment[:, 1] - gxy * moment[:, 0]) * scale
    return bias


def patch_residuals(
    previous: np.ndarray, gray: np.ndarray, start: np.ndarray, end: np.ndarray, window: int
) -> np.ndarray:
    """Mean absolute gray-level difference of `window`-square patches at start and end -> (N,).

    The measure OpenCV's Lucas-Kanade reports as its error, computed here
    for tracks whose LK result was not used, so that the photometric check
    judges every refined-or-predicted position alike.
    """
    count = start.shape[0]
    if count == 0:
        return np.empty(0, dtype=np.float64)
    half = window // 2
    before = bilinear_patches(previous, start - half, window)
    after = bilinear_patches(gray, end - half, window)
    return np.abs(before - after).reshape(count, -1).mean(axis=1, dtype=np.float64)


def _median(values: np.ndarray) -> float:
    """np.median of a non-empty 1-D array from one partition (np.median costs 5x more here)."""
    middle = values.size // 2
    if values.size % 2:
        return float(np.partition(values, middle)[middle])
    ordered = np.partition(values, (middle - 1, middle))
    return 0.5 * float(ordered[middle - 1] + ordered[middle])


def flow_jacobian(samples: np.ndarray, step: float) -> np.ndarray:
    """(N, 2, 2) central-difference flow Jacobian from flow sampled at +dx, -dx, +dy, -dy.

    `samples` is (4, N, 2): the flow at each track moved by `step` pixels in
    those four directions.
    """
    return np.stack([samples[0] - samples[1], samples[2] - samples[3]], axis=2) / (2.0 * step)


class FeatureTracker:
    """Feature tracks of one camera, advanced by dense forward (and backward) flow.

    One instance per camera; not thread-safe (call from one thread at a time).

    Id policy: ids count up from 0 and are never reused within a run, also
    not across reset(). With `config.id_limit` set, ids wrap modulo the limit
    and skip ids that are still alive: ids are handed out round-robin, so an
    id comes back only after the counter went once round all `id_limit`
    values (at 300 new tracks per frame and 30 Hz, 2**24 ids last about 31
    minutes, far longer than any track lives).

    Per update, every track is first moved by the forward flow and, with
    `config.refine`, polished by Lucas-Kanade against the previous frame.
    Then it is rejected (counted in `rejection_counts`) when the flow at it
    is non-finite, when it leaves the image minus `border_margin`, when its
    patch residual is an outlier (`residual_ratio`, with refinement), when
    its forward-backward error exceeds `fb_threshold` (only with
    `forward_backward` and a backward flow), or when it is an outlier to the
    RANSAC fundamental matrix of all tracks (epipolar check, undistorted
    pixels when a camera model is set). Then new corners fill the gaps up to
    `max_tracks`.
    """

    def __init__(
        self, config: TrackerConfig | None = None, camera_model: CameraModel | None = None
    ) -> None:
        self._config = config if config is not None else TrackerConfig()
        self._camera_model = camera_model
        self._detector_config = CornerDetectorConfig(
            quality_level=self._config.quality_level,
            min_distance=self._config.min_distance,
            block_size=self._config.block_size,
            border_margin=self._config.border_margin,
            tile_size=self._config.detection_tile,
        )
        self._ids_allocator = _IdAllocator(self._config.id_limit)
        self._rejection_counts = dict.fromkeys(REJECTION_REASONS, 0)
        self._refinement_fallbacks = dict.fromkeys(REFINEMENT_FALLBACKS, 0)
        self.reset()

    @property
    def config(self) -> TrackerConfig:
        return self._config

    @property
    def rejection_counts(self) -> dict[str, int]:
        """Tracks rejected per reason since construction (reset() keeps counting)."""
        return dict(self._rejection_counts)

    @property
    def refinement_fallbacks(self) -> dict[str, int]:
        """Tracks that kept their flow prediction since construction, per reason.

        'lk_failed': LK lost the feature (e.g. its window left the image);
        'correction_limit': LK moved it more than `refine_max_correction`.
        Neither rejects the track: the flow prediction still has to pass
        every rejection check.
        """
        return dict(self._refinement_fallbacks)

    def set_camera_model(self, model: CameraModel | None) -> None:
        """Use `model` (or none) from the next update on, e.g. when CameraInfo arrives late."""
        self._camera_model = model

    def reset(self) -> None:
        """Drop all tracks, e.g. after a stream reset; ids keep counting up."""
        self._ids = np.empty(0, dtype=np.uint64)
        self._ages = np.empty(0, dtype=np.uint32)
        self._positions = np.empty((0, 2), dtype=np.float64)
        self._image_shape: tuple[int, int] | None = None
        self._stamp: float | None = None
        self._previous_gray: np.ndarray | None = None
        # window_moments() of each track in _previous_gray, for window_bias().
        self._moments = np.empty((0, 3, 3), dtype=np.float64)
        self._frames_until_detection = 0

    def update(
        self,
        gray: np.ndarray,
        stamp: float,
        forward_flow: np.ndarray | None = None,
        backward_flow: np.ndarray | None = None,
    ) -> TrackSet:
        """Advance the tracks to the frame `gray` taken at `stamp` (seconds) and replenish.

        `forward_flow` (H, W, 2) maps the previous frame to this one and
        `backward_flow` this frame to the previous one, both in this image's
        pixels. The forward flow is required once tracks exist; on the first
        call (or after reset) the tracker only detects. Raises ValueError on
        malformed input without changing any state.
        """
        stamp = float(stamp)
        self._validate(gray, stamp, forward_flow, backward_flow)
        previous_stamp = self._stamp
        previous_positions = self._positions
        errors = np.full(self._ids.size, np.nan)
        if forward_flow is not None and self._ids.size > 0:
            keep, positions, errors = self._advance(gray, forward_flow, backward_flow)
            self._ids = self._ids[keep]
            self._ages = self._ages[keep] + np.uint32(1)
            previous_positions = previous_positions[keep]
            self._positions = positions

        new_positions = self._detect(gray)
        new_ids = self._ids_allocator.allocate(new_positions.shape[0], self._ids)
        self._ids = np.concatenate([self._ids, new_ids])
        self._ages = np.concatenate([self._ages, np.ones(new_ids.size, dtype=np.uint32)])
        self._positions = np.concatenate([self._positions, new_positions])
        previous_positions = np.concatenate([previous_positions, new_positions])
        errors = np.concatenate([errors, np.full(new_ids.size, np.nan)])
        self._image_shape = (gray.shape[0], gray.shape[1])
        self._stamp = stamp
        # A copy: callers may reuse their image buffer for the next frame.
        self._previous_gray = gray.copy() if self._can_refine(gray) else None
        if self._previous_gray is not None:
            self._moments = window_moments(gray, self._positions, self._config.refine_window)
        return self._track_set(stamp, previous_stamp, previous_positions, errors, new_ids.size)

    def _detect(self, gray: np.ndarray) -> np.ndarray:
        """New corners on every `detection_interval`-th frame, and whenever no track is left."""
        if self._frames_until_detection > 0 and self._ids.size > 0:
            self._frames_until_detection -= 1
            return np.empty((0, 2), dtype=np.float64)
        self._frames_until_detection = self._config.detection_interval - 1
        return detect_corners(
            gray, self._config.max_tracks - self._ids.size, self._positions, self._detector_config
        )

    def _validate(
        self,
        gray: np.ndarray,
        stamp: float,
        forward_flow: np.ndarray | None,
        backward_flow: np.ndarray | None,
    ) -> None:
        if not isinstance(gray, np.ndarray) or gray.ndim != 2:
            raise ValueError(f"gray must be a 2-D numpy array, got shape {np.shape(gray)}")
        if gray.dtype not in (np.uint8, np.float32):
            raise ValueError(f"gray must be uint8 or float32, got {gray.dtype}")
        if gray.shape[0] < 2 or gray.shape[1] < 2:
            raise ValueError(f"gray must be at least 2x2 pixels, got {gray.shape}")
        if not math.isfinite(stamp):
            raise ValueError(f"stamp must be finite, got {stamp}")
        if self._ids.size > 0:
            if gray.shape != self._image_shape:
                raise ValueError(
                    f"image size changed from {self._image_shape} to {gray.shape} while tracks "
                    "are alive; call reset() first"
                )
            if forward_flow is None:
                raise ValueError("forward_flow is required once tracks exist; call reset() first")
        if backward_flow is not None and forward_flow is None:
            raise ValueError("backward_flow was given without forward_flow")
        for name, flow in (("forward_flow", forward_flow), ("backward_flow", backward_flow)):
            if flow is None:
                continue
            if not isinstance(flow, np.ndarray) or flow.shape != (*gray.shape, 2):
                raise ValueError(
                    f"{name} must have shape {(*gray.shape, 2)} (the image's), got {np.shape(flow)}"
                )
            if not np.issubdtype(flow.dtype, np.floating):
                raise ValueError(f"{name} must be floating point, got {flow.dtype}")
        model = self._camera_model
        if model is not None and (model.height, model.width) != gray.shape:
            raise ValueError(
                f"camera model is for {model.width}x{model.height} images, "
                f"got {gray.shape[1]}x{gray.shape[0]}"
            )

    def _can_refine(self, gray: np.ndarray) -> bool:
        return self._config.refine and gray.dtype == np.uint8

    def _advance(
        self,
        gray: np.ndarray,
        forward_flow: np.ndarray,
        backward_flow: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Move tracks by the flow and reject; returns kept indices, new positions, fb errors."""
        image_shape = (gray.shape[0], gray.shape[1])
        start = self._positions
        count = start.shape[0]
        refining = self._previous_gray is not None and self._can_refine(gray)
        # One flow lookup for every point the update needs: the tracks and,
        # when refining, the four probes of the flow's Jacobian around each.
        step = float(max(self._config.refine_window // 2, 1))
        offsets = _PROBE_OFFSETS * step if refining else _PROBE_OFFSETS[:1]
        probes = (start[None, :, :] + offsets[:, None, :]).reshape(-1, 2)
        sampled = sample_bilinear(forward_flow, probes).reshape(-1, count, 2)
        predicted = start + sampled[0]
        moved = predicted
        residuals = np.full(count, np.nan)
        if refining:
            jacobian = flow_jacobian(sampled[1:], step)
            moved, residuals = self._refine(
                self._previous_gray, gray, start, predicted, jacobian
            )
        alive = np.all(np.isfinite(moved), axis=1)
        self._rejection_counts["non_finite"] += int(np.count_nonzero(~alive))

        inside = self._inside_border(moved, image_shape)
        self._rejection_counts["border"] += int(np.count_nonzero(alive & ~inside))
        alive &= inside

        if self._config.residual_ratio > 0.0:
            alive &= self._photometric_consistent(residuals, alive)

        errors = np.full(start.shape[0], np.nan)
        if backward_flow is not None and self._config.forward_backward:
            candidates = np.flatnonzero(alive)
            # The flow's own round trip (forward vector at the start, backward
            # vector at the refined end): a refinement that fixes a smoothed
            # flow must not read as an inconsistency of the flow.
            returned = predicted[candidates] + sample_bilinear(backward_flow, moved[candidates])
            finite = np.all(np.isfinite(returned), axis=1)
            self._rejection_counts["non_finite"] += int(np.count_nonzero(~finite))
            errors[candidates] = np.linalg.norm(returned - start[candidates], axis=1)
            consistent = finite & (errors[candidates] <= self._config.fb_threshold)
            inconsistent = finite & ~consistent
            self._rejection_counts["forward_backward"] += int(np.count_nonzero(inconsistent))
            alive[candidates[~consistent]] = False

        if self._config.ransac_enabled:
            candidates = np.flatnonzero(alive)
            inliers = self._epipolar_inliers(start[candidates], moved[candidates])
            self._rejection_counts["epipolar"] += int(np.count_nonzero(~inliers))
            alive[candidates[~inliers]] = False

        keep = np.flatnonzero(alive)
        return keep, moved[keep], errors[keep]

    def _photometric_consistent(self, residuals: np.ndarray, alive: np.ndarray) -> np.ndarray:
        """False for live tracks whose residual is an outlier among this frame's."""
        checked = alive & np.isfinite(residuals)
        if not checked.any():
            return np.ones(residuals.shape[0], dtype=bool)
        limit = self._config.residual_ratio * max(_median(residuals[checked]), _MIN_RESIDUAL)
        outliers = checked & (residuals > limit)
        self._rejection_counts["photometric"] += int(np.count_nonzero(outliers))
        return ~outliers

    def _refine(
        self,
        previous: np.ndarray,
        gray: np.ndarray,
        start: np.ndarray,
        predicted: np.ndarray,
        jacobian: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Lucas-Kanade refinement of the finite `predicted` positions; others stay as they are.

        Also returns each track's residual: LK's own where its result was
        used, else that of the patch at the flow prediction (NaN for
        non-finite predictions).
        """
        refined = predicted.copy()
        residuals = np.full(predicted.shape[0], np.nan)
        candidates = np.flatnonzero(np.all(np.isfinite(predicted), axis=1))
        if candidates.size == 0:
            return refined, residuals
        window = self._config.refine_window
        tracked, found, lk_errors = lucas_kanade(
            previous, gray, start[candidates], predicted[candidates], window,
            _REFINE_PYRAMID_LEVELS,
        )
        correction = np.linalg.norm(tracked - predicted[candidates], axis=1)
        accepted = found & (correction <= self._config.refine_max_correction)
        self._refinement_fallbacks["lk_failed"] += int(np.count_nonzero(~found))
        self._refinement_fallbacks["correction_limit"] += int(np.count_nonzero(found & ~accepted))
        chosen = candidates[accepted]
        bias = window_bias(self._moments[chosen], start[chosen], jacobian[chosen])
        refined[chosen] = tracked[accepted] - bias
        residuals[chosen] = lk_errors[accepted]
        kept = candidates[~accepted]
        residuals[kept] = patch_residuals(previous, gray, start[kept], predicted[kept], window)
        return refined, residuals

    def _inside_border(self, points: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
        height, width = image_shape
        margin = self._config.border_margin
        x = points[:, 0]
        y = points[:, 1]
        inside_x = (x >= margin) & (x <= width - 1 - margin)
        return inside_x & (y >= margin) & (y <= height - 1 - margin)

    def _epipolar_inliers(self, start: np.ndarray, moved: np.ndarray) -> np.ndarray:
        """RANSAC fundamental-matrix inlier mask; all True when the geometry is undetermined."""
        inliers = np.ones(start.shape[0], dtype=bool)
        if start.shape[0] < _MIN_RANSAC_TRACKS:
            return inliers
        if self._camera_model is not None:
            start = self._camera_model.undistort_pixels(start)
            moved = self._camera_model.undistort_pixels(moved)
        _, mask = cv2.findFundamentalMat(
            start,
            moved,
            cv2.FM_RANSAC,
            self._config.ransac_threshold,
            self._config.ransac_confidence,
        )
        if mask is None:
            return inliers
        return mask.reshape(-1).astype(bool)

    def _track_set(
        self,
        stamp: float,
        previous_stamp: float | None,
        previous_positions: np.ndarray,
        errors: np.ndarray,
        new_count: int,
    ) -> TrackSet:
        positions = self._positions
        velocities = np.full(positions.shape, np.nan)
        if previous_stamp is not None and stamp > previous_stamp:
            carried = positions.shape[0] - new_count
            velocities[:carried] = (positions[:carried] - previous_positions[:carried]) / (
                stamp - previous_stamp
            )
        normalized = np.full(positions.shape, np.nan)
        if self._camera_model is not None:
            normalized = self._camera_model.undistort_normalized(positions)
        return TrackSet(
            ids=self._ids.copy(),
            ages=self._ages.copy(),
            positions=positions.astype(np.float32),
            previous_positions=previous_positions.astype(np.float32),
            velocities=velocities.astype(np.float32),
            normalized=normalized.astype(np.float32),
            errors=errors.astype(np.float32),
            stamp=stamp,
            previous_stamp=previous_stamp,
        )
