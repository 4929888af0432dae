"""Flow and tracks for a recorded frame sequence, every frame in order.

The offline tools feed bags, image folders and videos through this one
loop, so they apply the same reset rules as the node (camera_stream) and
count the same things. Unlike the node nothing is ever dropped: a frame that
cannot be used is counted as an error, says why, and restarts the history.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from neuflow_ros.flow.engine import FlowEngine, FlowResult, FramePair
from neuflow_ros.imaging.frame_sources import SourceFrame
from neuflow_ros.imaging.image_conversion import CameraImage, ImageFormatError, to_gray
from neuflow_ros.node.camera_stream import CameraStream, ResetReason, StreamFrame
from neuflow_ros.node.flow_worker import stereo_frame_pairs, stereo_result
from neuflow_ros.tracking.camera_model import CameraModel
from neuflow_ros.tracking.tracker import FeatureTracker, TrackSet


@dataclass
class PipelineCounts:
    frames: int = 0
    pairs: int = 0
    errors: int = 0
    resets: dict[str, int] = field(default_factory=lambda: {r.value: 0 for r in ResetReason})

    @property
    def total_resets(self) -> int:
        return sum(self.resets.values())


@dataclass(frozen=True)
class StereoOutput:
    """Flow from the left frame to the right frame of the same instant (and back)."""

    right: SourceFrame
    flow: FlowResult
    left_gray: np.ndarray
    right_gray: np.ndarray


@dataclass(frozen=True)
class PairOutput:
    """Flow from ``previous`` to ``current`` and the tracks advanced along it."""

    previous: SourceFrame
    current: SourceFrame
    flow: FlowResult
    tracks: TrackSet | None
    stereo: StereoOutput | None = None


_STREAM = "offline"
"""The one camera stream a pipeline feeds its engine (streaming reuses encodings)."""


class OfflineFlowPipeline:
    """Turns consecutive frames of one camera into flow (and tracks), never dropping one."""

    def __init__(
        self,
        engine: FlowEngine,
        tracker: FeatureTracker | None,
        max_frame_gap_s: float,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self._engine = engine
        self._tracker = tracker
        self._stream: CameraStream[tuple[SourceFrame, CameraImage]] = CameraStream(max_frame_gap_s)
        self._warn = warn or logging.getLogger(__name__).warning
        self._camera_model: CameraModel | None = None
        self._camera_model_size_warned = False
        self.counts = PipelineCounts()

    def set_camera_model(self, model: CameraModel | None) -> None:
        """Calibration for the normalized track coordinates (from CameraInfo)."""
        self._camera_model = model
        self._camera_model_size_warned = False

    def process(self, frame: SourceFrame, right: SourceFrame | None = None) -> PairOutput | None:
        """Advance by one frame; the pair output, or None when no flow ends at this frame.

        ``right``: the right frame of the same instant (stereo); its left->right
        flow is computed in the same engine call as this frame's pair.
        """
        self.counts.frames += 1
        try:
            image = frame.decode()
        except ImageFormatError as error:
            self._fail(frame.name, f"cannot decode: {error}")
            return None
        height, width = image.pixels.shape[:2]
        step = self._stream.advance(
            StreamFrame(frame.stamp_ns, width, height, f"{frame.encoding}/{image.color_order}",
                        (frame, image))
        )
        if step.reset_reason is not None:
            self.counts.resets[step.reset_reason.value] += 1
            self._warn(f"frame {frame.name}: restarting flow ({step.detail})")
        try:
            if step.previous is None:
                if self._tracker is not None:
                    self._tracker.reset()
                    self._update_tracker(image, frame.stamp_ns, None)
                return None
            previous_frame, previous_image = step.previous.payload
            pairs = [FramePair(
                previous_image.pixels, image.pixels, image.color_order, stream=_STREAM
            )]
            backward = self._tracker is not None and self._tracker.config.forward_backward
            right_image = self._stereo_partner(image, right)
            if right_image is not None:
                pairs += stereo_frame_pairs(
                    image.pixels, right_image.pixels, image.color_order, backward
                )
            results = self._engine.compute(pairs, backward=backward)
            tracks = None
            if self._tracker is not None:
                tracks = self._update_tracker(image, frame.stamp_ns, results[0])
        except ValueError as error:
            # FrameError, ImageFormatError and the tracker's input checks are ValueErrors.
            self._fail(frame.name, str(error))
            return None
        self.counts.pairs += 1
        stereo = None
        if right is not None and right_image is not None:
            stereo = StereoOutput(right, stereo_result(results[1:]),
                                  to_gray(image.pixels, image.color_order),
                                  to_gray(right_image.pixels, right_image.color_order))
        return PairOutput(previous_frame, frame, results[0], tracks, stereo)

    def _stereo_partner(self, image: CameraImage, right: SourceFrame | None) -> CameraImage | None:
        """The decoded right frame, or None (with a warning) when it cannot pair with ``image``."""
        if right is None:
            return None
        try:
            right_image = right.decode()
        except ImageFormatError as error:
            self._warn(f"frame {right.name}: no stereo match, cannot decode: {error}")
            return None
        if (right_image.pixels.shape != image.pixels.shape
                or right_image.color_order != image.color_order):
            self._warn(f"frame {right.name}: no stereo match, its size or colour order differs "
                       "from the left frame's")
            return None
        return right_image

    def record_error(self, name: str, reason: str) -> None:
        """Count a frame that never reached process() (e.g. an undecodable bag record)."""
        self.counts.frames += 1
        self._fail(name, reason)

    def _update_tracker(
        self, image: CameraImage, stamp_ns: int, result: FlowResult | None
    ) -> TrackSet:
        assert self._tracker is not None
        gray = to_gray(image.pixels, image.color_order)
        self._tracker.set_camera_model(self._model_for(gray.shape[1], gray.shape[0]))
        forward = None if result is None else result.forward
        backward = None if result is None else result.backward
        return self._tracker.update(gray, stamp_ns / 1e9, forward, backward)

    def _model_for(self, width: int, height: int) -> CameraModel | None:
        model = self._camera_model
        if model is None or (model.width, model.height) == (width, height):
            return model
        if not self._camera_model_size_warned:
            self._camera_model_size_warned = True
            self._warn(
                f"camera_info is for {model.width}x{model.height} images but the images are "
                f"{width}x{height}: tracks get no normalized coordinates"
            )
        return None

    def _fail(self, name: str, reason: str) -> None:
        self.counts.errors += 1
        self._stream.clear()
        if self._tracker is not None:
            self._tracker.reset()
        self._warn(f"frame {name}: skipped, {reason}; restarting flow after it")
