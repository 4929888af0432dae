"""rosbags message objects to frames and calibration, and results to message objects.

The node builds rclpy messages; bags written without ROS need the same
messages as `rosbags` objects instead. The field layouts follow msg/*.msg
and the node (header = the image's header, flow as 32FC2 in input pixels).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rosbags.typesys.store import Typestore

from neuflow_ros.flow.engine import FlowResult
from neuflow_ros.imaging.compressed_image import decode_compressed_image
from neuflow_ros.imaging.frame_sources import SourceFrame
from neuflow_ros.imaging.image_conversion import (
    CameraImage,
    decode_raw_image,
    flow_to_image_payload,
    rgb_to_image_payload,
)
from neuflow_ros.tracking.stereo_matching import TrackMatches
from neuflow_ros.tracking.tracker import TrackSet

TIME_TYPE = "builtin_interfaces/msg/Time"
HEADER_TYPE = "std_msgs/msg/Header"
IMAGE_TYPE = "sensor_msgs/msg/Image"
OPTICAL_FLOW_TYPE = "neuflow_ros/msg/OpticalFlow"
TRACK_TYPE = "neuflow_ros/msg/Track"
TRACK_ARRAY_TYPE = "neuflow_ros/msg/TrackArray"
DISPARITY_TYPE = "stereo_msgs/msg/DisparityImage"
REGION_OF_INTEREST_TYPE = "sensor_msgs/msg/RegionOfInterest"
_NANOSECONDS = 1_000_000_000


def stamp_ns(stamp: Any) -> int:
    return int(stamp.sec) * _NANOSECONDS + int(stamp.nanosec)


def image_frame(message: Any, msgtype: str, name: str) -> SourceFrame:
    """A frame for the pipeline from a deserialized Image or CompressedImage.

    Decoding is deferred to the pipeline, which turns ImageFormatError into
    a counted, reported error for this one frame.
    """
    stamp = stamp_ns(message.header.stamp)
    if msgtype == IMAGE_TYPE:

        def decode() -> CameraImage:
            return decode_raw_image(message.encoding, message.height, message.width,
                                    message.step, message.is_bigendian, message.data)

        return SourceFrame(stamp, name, message.encoding, decode)

    def decode_compressed() -> CameraImage:
        return decode_compressed_image(message.format, message.data)

    return SourceFrame(stamp, name, message.format, decode_compressed)


class ResultMessages:
    """Builds the output messages of one frame pair as rosbags objects."""

    def __init__(self, typestore: Typestore) -> None:
        types = typestore.types
        self._time = types[TIME_TYPE]
        self._header = types[HEADER_TYPE]
        self._image = types[IMAGE_TYPE]
        self._flow = types[OPTICAL_FLOW_TYPE]
        self._track = types[TRACK_TYPE]
        self._track_array = types[TRACK_ARRAY_TYPE]
        self._disparity = types[DISPARITY_TYPE]
        self._region = types[REGION_OF_INTEREST_TYPE]

    def time(self, nanoseconds: int) -> Any:
        seconds, remainder = divmod(int(nanoseconds), _NANOSECONDS)
        return self._time(sec=seconds, nanosec=remainder)

    def header(self, nanoseconds: int, frame_id: str) -> Any:
        return self._header(stamp=self.time(nanoseconds), frame_id=frame_id)

    def optical_flow(self, header: Any, previous_stamp_ns: int, result: FlowResult) -> Any:
        input_width, input_height = result.input_size
        return self._flow(
            header=header,
            previous_stamp=self.time(previous_stamp_ns),
            flow=self._image_message(header, flow_to_image_payload(result.forward)),
            input_width=input_width,
            input_height=input_height,
        )

    def flow_visualization(self, header: Any, rgb: np.ndarray) -> Any:
        return self._image_message(header, rgb_to_image_payload(rgb))

    def disparity_image(self, header: Any, payload: tuple[int, int, str, int, memoryview],
                        focal_length: float, baseline: float, max_disparity: float) -> Any:
        """Whole image valid window, min_disparity 0 (invalid pixels lie below), delta_d 0."""
        height, width = payload[0], payload[1]
        return self._disparity(
            header=header, image=self._image_message(header, payload), f=focal_length,
            t=baseline,
            valid_window=self._region(x_offset=0, y_offset=0, height=height, width=width,
                                      do_rectify=False),
            min_disparity=0.0, max_disparity=max_disparity, delta_d=0.0,
        )

    def track_array(self, header: Any, previous_stamp_ns: int, tracks: TrackSet,
                    matches: TrackMatches | None = None) -> Any:
        """``matches``: right-image matches of a stereo left camera, row for row; None = NaN."""
        if matches is None:
            matches = TrackMatches.unmatched(len(tracks))
        columns = zip(
            tracks.ids.tolist(), tracks.ages.tolist(), tracks.positions.tolist(),
            tracks.previous_positions.tolist(), tracks.velocities.tolist(),
            tracks.normalized.tolist(), tracks.errors.tolist(), matches.positions.tolist(),
            matches.normalized.tolist(), matches.disparities.tolist(), strict=True,
        )
        items = [
            self._track(
                id=track_id, age=age, x=position[0], y=position[1],
                previous_x=previous[0], previous_y=previous[1],
                velocity_x=velocity[0], velocity_y=velocity[1],
                normalized_x=normalized[0], normalized_y=normalized[1], error=error,
                right_x=right[0], right_y=right[1],
                right_normalized_x=right_normalized[0], right_normalized_y=right_normalized[1],
                disparity=disparity,
            )
            for (track_id, age, position, previous, velocity, normalized, error, right,
                 right_normalized, disparity) in columns
        ]
        return self._track_array(
            header=header, previous_stamp=self.time(previous_stamp_ns), tracks=items
        )

    def _image_message(self, header: Any, payload: tuple[int, int, str, int, memoryview]) -> Any:
        height, width, encoding, step, data = payload
        return self._image(
            header=header, height=height, width=width, encoding=encoding, is_bigendian=0,
            step=step, data=np.frombuffer(data, dtype=np.uint8),
        )
