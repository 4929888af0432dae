"""Feature-track outputs of the flow node: ~/tracks, ~/features (VINS) and ~/tracks_vis.

The ROS-free FeatureTracker does the work; this adapter keeps one tracker per
camera in step with the frame pairs the worker computed, turns its TrackSet
into messages and decides, per frame, which optional outputs anyone wants.
It runs on the worker thread, right after the flow of a batch is published.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point32
from sensor_msgs.msg import ChannelFloat32, PointCloud
from std_msgs.msg import Header

from neuflow_ros.msg import Track, TrackArray

from ..imaging.image_conversion import rgb_to_image_payload, to_gray
from ..tracking.camera_model import CameraModel
from ..tracking.stereo_geometry import StereoRig
from ..tracking.stereo_matching import StereoMatchConfig, StereoTrackMatcher, TrackMatches
from ..tracking.track_visualization import TrackTrails, draw_tracks
from ..tracking.tracker import FeatureTracker, TrackerConfig, TrackSet
from ..tracking.vins_features import (
    MissingCalibrationError,
    StampOrderError,
    VinsFeatures,
    right_camera_features,
    vins_feature_arrays,
)
from .flow_worker import CameraFlow, CameraFrame
from .ros_messages import image_msg

VINS_ID_LIMIT = 2**24
"""float32 holds every integer below 2**24 exactly: the tracker wraps ids there for VINS."""


@dataclass(frozen=True)
class TrackingSettings:
    """Tracker configuration plus which optional outputs are enabled."""

    tracker: TrackerConfig
    vins_features: bool
    camera_id_by_name: dict[str, int]
    stereo_left: str | None = None
    """The stereo pair's left camera: its tracks get right-image matches."""
    stereo_match: StereoMatchConfig = field(default_factory=StereoMatchConfig)


def gray_of(frame: CameraFrame) -> np.ndarray:
    """The tracker works on 8-bit gray, whatever the camera sent."""
    return to_gray(frame.pixels, frame.color_order)


def rgb_of(frame: CameraFrame) -> np.ndarray:
    if frame.color_order == "rgb":
        return np.ascontiguousarray(frame.pixels)
    code = cv2.COLOR_GRAY2RGB if frame.color_order == "mono" else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(np.ascontiguousarray(frame.pixels), code)


def flow_on_image_grid(flow: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resample a flow published at the inference grid onto the image grid for the tracker.

    The vectors are already in input-image pixels; only the grid changes, with
    the pixel-centre convention of cv2.resize that OpticalFlow.msg documents.
    """
    if flow.shape[1] == width and flow.shape[0] == height:
        return flow
    return cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)


def track_array_message(
    header: Header, previous_stamp: Time, tracks: TrackSet, matches: TrackMatches | None = None
) -> TrackArray:
    """``matches``: right-image matches row for row (stereo left camera); None = all NaN."""
    message = TrackArray(header=header, previous_stamp=previous_stamp)
    if matches is None:
        matches = TrackMatches.unmatched(len(tracks))
    positions = tracks.positions.tolist()
    previous = tracks.previous_positions.tolist()
    velocities = tracks.velocities.tolist()
    normalized = tracks.normalized.tolist()
    errors = tracks.errors.tolist()
    message.tracks = [
        Track(
            id=int(track_id), age=int(age),
            x=position[0], y=position[1], previous_x=before[0], previous_y=before[1],
            velocity_x=velocity[0], velocity_y=velocity[1],
            normalized_x=norm[0], normalized_y=norm[1], error=error,
            right_x=right[0], right_y=right[1],
            right_normalized_x=right_norm[0], right_normalized_y=right_norm[1],
            disparity=disparity,
        )
        for track_id, age, position, before, velocity, norm, error, right, right_norm, disparity
        in zip(
            tracks.ids.tolist(), tracks.ages.tolist(), positions, previous, velocities,
            normalized, errors, matches.positions.tolist(), matches.normalized.tolist(),
            matches.disparities.tolist(), strict=True,
        )
    ]
    return message


def vins_point_cloud(header: Header, features: Any) -> PointCloud:
    cloud = PointCloud(header=header)
    cloud.points = [Point32(x=x, y=y, z=z) for x, y, z in features.points.tolist()]
    cloud.channels = [
        ChannelFloat32(name=name, values=values.tolist()) for name, values in features.channels
    ]
    return cloud


class CameraTracking:
    """One camera's tracker, trails and calibration, fed frame pair by frame pair."""

    def __init__(self, config: TrackerConfig) -> None:
        self.tracker = FeatureTracker(config)
        self.trails = TrackTrails()
        self._tracked_stamp_ns: int | None = None
        self.camera_model: CameraModel | None = None

    def use_calibration(self, model: CameraModel | None) -> None:
        """None: no normalized coordinates (NaN) until a model for these images arrives."""
        if model is not self.camera_model:
            self.camera_model = model
            self.tracker.set_camera_model(model)

    def advance(self, flow: CameraFlow) -> tuple[TrackSet, float]:
        """Tracks on flow.current, and the seconds the tracker itself took.

        (Re)starts on flow.previous after any break in the chain. Only the
        tracker's update is timed: preparing its inputs is the node's overhead.
        """
        tracker_s = 0.0
        if self._tracked_stamp_ns != flow.previous.stamp_ns:
            self.tracker.reset()
            gray = gray_of(flow.previous)
            started = time.perf_counter()
            first = self.tracker.update(gray, flow.previous.stamp_ns / 1e9)
            tracker_s += time.perf_counter() - started
            self.trails.update(first)
        width, height = flow.result.input_size
        backward = flow.result.backward
        gray = gray_of(flow.current)
        forward_flow = flow_on_image_grid(flow.result.forward, width, height)
        backward_flow = None if backward is None else flow_on_image_grid(backward, width, height)
        started = time.perf_counter()
        tracks = self.tracker.update(
            gray, flow.current.stamp_ns / 1e9,
            forward_flow=forward_flow, backward_flow=backward_flow,
        )
        tracker_s += time.perf_counter() - started
        self._tracked_stamp_ns = flow.current.stamp_ns
        self.trails.update(tracks)
        return tracks, tracker_s


class TrackOutputs:
    """Publishes tracks for every camera flow the worker produced."""

    def __init__(
        self,
        settings: TrackingSettings,
        publishers: dict[str, tuple[Any, Any, Any]],
        warn_once: Callable[[str, str], None],
    ) -> None:
        """publishers: camera -> (tracks, features or None, tracks_vis)."""
        config = settings.tracker
        if settings.vins_features:
            config = replace(config, id_limit=VINS_ID_LIMIT)
        self._settings = settings
        self._publishers = publishers
        self._warn_once = warn_once
        self._cameras = {camera: CameraTracking(config) for camera in publishers}
        self._stereo_matcher = StereoTrackMatcher(settings.stereo_match)
        self.last_matches: TrackMatches | None = None
        """The stereo left camera's latest matches (None when that frame had none)."""

    def publish(self, flow: CameraFlow, header: Header, previous_stamp: Time,
                camera_model: CameraModel | None, stereo_rig: StereoRig | None = None) -> float:
        """Advance one camera's tracks to flow.current and publish them.

        ``camera_model`` is the last calibration the node accepted; it is used
        only for frames of the size it describes. Returns the tracker's own
        time, which diagnostics report apart from the node's overhead. The
        tracker runs even when nobody listens, so tracks keep their ids and
        ages for a subscriber that comes later; only the messages nobody would
        receive are not built. With ``stereo_rig`` (the stereo left camera, its
        frame paired) the tracks are matched in flow.stereo's right frame, and
        their features go out with camera id 1 entries for the matches.
        """
        tracking = self._cameras[flow.camera]
        if camera_model is not None and (
            (camera_model.width, camera_model.height) != flow.result.input_size
        ):
            camera_model = None
        tracking.use_calibration(camera_model)
        if camera_model is None:
            self._warn_once(
                flow.camera,
                "no usable camera_info (none received, or none that passed the checks and "
                "matches the image size): normalized track coordinates are NaN"
                + (" and ~/features is not published" if self._settings.vins_features else ""),
            )
        tracks, tracker_s = tracking.advance(flow)
        matches = self._match_stereo(flow, tracks, stereo_rig)
        tracks_publisher, features_publisher, vis_publisher = self._publishers[flow.camera]
        if tracks_publisher.get_subscription_count() > 0:
            tracks_publisher.publish(track_array_message(header, previous_stamp, tracks, matches))
        if (features_publisher is not None and tracking.camera_model is not None
                and features_publisher.get_subscription_count() > 0):
            features = self._features(flow.camera, tracks, tracking.camera_model, matches)
            if features is not None:
                features_publisher.publish(vins_point_cloud(header, features))
        if vis_publisher.get_subscription_count() > 0:
            drawn = draw_tracks(rgb_of(flow.current), tracks, tracking.trails)
            vis_publisher.publish(image_msg(header, rgb_to_image_payload(drawn)))
        return tracker_s

    def _match_stereo(
        self, flow: CameraFlow, tracks: TrackSet, rig: StereoRig | None
    ) -> TrackMatches | None:
        self.last_matches = None
        if flow.camera != self._settings.stereo_left or flow.stereo is None or rig is None:
            return None
        width, height = flow.stereo.left.width, flow.stereo.left.height
        result = flow.stereo.result
        assert result.backward is not None, "stereo pairs are computed with backward flow"
        self.last_matches = self._stereo_matcher.match(
            tracks,
            flow_on_image_grid(result.forward, width, height),
            flow_on_image_grid(result.backward, width, height),
            rig,
            (gray_of(flow.stereo.left), gray_of(flow.stereo.right)),
        )
        return self.last_matches

    def _features(
        self, camera: str, tracks: TrackSet, model: CameraModel, matches: TrackMatches | None
    ) -> VinsFeatures | None:
        try:
            features = vins_feature_arrays(tracks, model, self._settings.camera_id_by_name[camera])
        except MissingCalibrationError:
            return None
        except StampOrderError:
            # Repeated real stamps reset the stream before this; only a camera
            # without a clock (every stamp 0) gets here.
            self._warn_once(
                camera,
                "frames without stamps (all 0): ~/features needs the time between frames "
                "and is not published",
            )
            return None
        if camera == self._settings.stereo_left:
            features = right_camera_features(features, tracks, matches)
        return features
