"""One pass over an input bag: copy every message, add flow and tracks for the images.

Everything the bag path checks before it touches the output (topics exist
and have the right types, the first image decodes, the new topics do not
collide with old ones) happens in BagInput, so a mistake costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosbags.interfaces import Connection

from neuflow_ros.imaging.flow_visualization import flow_to_rgb
from neuflow_ros.imaging.image_conversion import ImageFormatError
from neuflow_ros.node.stereo_pairing import PairingStep, StereoPairConfig, StereoPairing
from neuflow_ros.tools.bag_io import (
    CAMERA_INFO_TYPE,
    IMAGE_TYPES,
    BagError,
    OutputBag,
    create_typestore,
    iterate_messages,
    open_reader,
    storage_of,
    topic_connections,
)
from neuflow_ros.tools.bag_messages import (
    DISPARITY_TYPE,
    IMAGE_TYPE,
    OPTICAL_FLOW_TYPE,
    TRACK_ARRAY_TYPE,
    ResultMessages,
    image_frame,
    stamp_ns,
)
from neuflow_ros.tools.bag_stereo import BagStereo
from neuflow_ros.tools.offline_pipeline import OfflineFlowPipeline
from neuflow_ros.tools.progress_report import ProgressReport
from neuflow_ros.tracking.camera_model import camera_model_from_info


@dataclass(frozen=True)
class BagOutputOptions:
    path: Path
    storage: str | None
    prefix: str
    flow_vis: bool
    tracks: bool
    vis_max_magnitude: float | None
    max_stamp_difference_ns: int = 0
    """Stereo: how far apart a left and a right stamp may be and still pair."""


def output_topics(
    prefix: str, flow_vis: bool, tracks: bool, stereo: bool = False
) -> dict[str, tuple[str, str]]:
    """Role ('flow', 'tracks', 'flow_vis', 'disparity') -> (topic, type); ``prefix`` is a
    namespace."""
    namespace = "/" + prefix.strip("/") if prefix.strip("/") else ""
    roles = {"flow": OPTICAL_FLOW_TYPE}
    if tracks:
        roles["tracks"] = TRACK_ARRAY_TYPE
    if flow_vis:
        roles["flow_vis"] = IMAGE_TYPE
    if stereo:
        roles["disparity"] = DISPARITY_TYPE
    return {role: (f"{namespace}/{role}", msgtype) for role, msgtype in roles.items()}


@dataclass(frozen=True)
class _BagImage:
    """A deserialized image of one side, as StereoPairing pairs it."""

    camera: str
    stamp_ns: int
    message: Any
    connection: Connection
    timestamp: int


class BagInput:
    """An open, validated input bag and the time window to process."""

    def __init__(self, path: Path, image_topic: str, camera_info_topic: str | None,
                 start_s: float | None, end_s: float | None,
                 right_image_topic: str | None = None,
                 right_camera_info_topic: str | None = None) -> None:
        self.path = path
        self.typestore = create_typestore()
        self.reader = open_reader(path)
        try:
            self.image_connections = topic_connections(self.reader, image_topic, IMAGE_TYPES,
                                                       "image")
            self.info_connections = [] if camera_info_topic is None else topic_connections(
                self.reader, camera_info_topic, (CAMERA_INFO_TYPE,), "camera_info")
            self.right_image_connections = [] if right_image_topic is None else (
                topic_connections(self.reader, right_image_topic, IMAGE_TYPES, "right image"))
            self.right_info_connections = [] if right_camera_info_topic is None else (
                topic_connections(self.reader, right_camera_info_topic, (CAMERA_INFO_TYPE,),
                                  "right camera_info"))
            origin = self.reader.start_time
            self.start_ns = None if start_s is None else origin + round(start_s * 1e9)
            self.stop_ns = None if end_s is None else origin + round(end_s * 1e9)
            self._check_first_image(image_topic)
        except BaseException:
            self.reader.close()
            raise

    @property
    def stereo(self) -> bool:
        return bool(self.right_image_connections)

    @property
    def storage(self) -> str:
        return storage_of(self.path)

    def expected_frames(self) -> int:
        """Image count in the window (proportional estimate when a window is set)."""
        total = sum(c.msgcount for c in self.image_connections)
        if self.start_ns is None and self.stop_ns is None:
            return total
        begin, end = self.reader.start_time, self.reader.end_time
        window_begin = max(begin, self.start_ns if self.start_ns is not None else begin)
        window_end = min(end, self.stop_ns if self.stop_ns is not None else end)
        return round(total * max(0, window_end - window_begin) / max(1, end - begin))

    def check_no_collision(self, topics: list[str]) -> None:
        existing = sorted({c.topic for c in self.reader.connections} & set(topics))
        if existing:
            raise BagError(
                f"the input bag already has {', '.join(existing)} (processed before?); "
                "choose another --output-prefix"
            )

    def close(self) -> None:
        self.reader.close()

    def _check_first_image(self, topic: str) -> None:
        """Fail before writing anything when the images cannot be decoded at all."""
        messages = self.reader.messages(self.image_connections, self.start_ns, self.stop_ns)
        try:
            first = next(messages, None)
        finally:
            messages.close()
        if first is None:
            raise BagError(f"image topic {topic!r} has no messages in the selected time range")
        connection, _, raw = first
        try:
            message = self.typestore.deserialize_cdr(raw, connection.msgtype)
            image_frame(message, connection.msgtype, topic).decode()
        except ImageFormatError as error:
            raise BagError(f"cannot use the images on {topic!r}: {error}") from error


def process_bag(
    source: BagInput,
    options: BagOutputOptions,
    pipeline: OfflineFlowPipeline,
    report: ProgressReport,
    warn: Callable[[str], None],
    stereo: BagStereo | None = None,
) -> bool:
    """Write the output bag; True when interrupted by Ctrl-C (the bag is closed and valid).

    With ``stereo`` and a right image topic, left frames are matched in the
    right frame of the same stamp: tracks carry the right match, and a
    disparity image is written per matched pair.
    """
    stereo = stereo if source.stereo else None
    topics = output_topics(options.prefix, options.flow_vis, options.tracks, stereo is not None)
    source.check_no_collision([topic for topic, _ in topics.values()])
    output = OutputBag(options.path, options.storage or source.storage, source.typestore, warn)
    writer = _ResultWriter(source, pipeline, output, options, topics, stereo)
    pairing: StereoPairing[_BagImage] = StereoPairing(
        StereoPairConfig("left", "right", options.max_stamp_difference_ns)
    )
    sides = {c.id: "left" for c in source.image_connections}
    sides.update({c.id: "right" for c in source.right_image_connections})
    info_sides = {c.id: "left" for c in source.info_connections}
    info_sides.update({c.id: "right" for c in source.right_info_connections})
    last_info: dict[str, bytes] = {}
    report.start(source.expected_frames())
    interrupted = False
    try:
        for connection, timestamp, raw in iterate_messages(source.reader, source.start_ns,
                                                           source.stop_ns):
            copy = output.copy_of(connection)
            if copy is not None:
                output.write(copy, timestamp, raw)
            side = sides.get(connection.id)
            if side is not None:
                image = writer.deserialize(connection, timestamp, raw, side)
                if image is not None and stereo is None:
                    writer.process(image, None)
                elif image is not None:
                    writer.release(pairing.admit([image], timestamp / 1e9))
                report.update(pipeline.counts.frames)
            elif connection.id in info_sides and raw != last_info.get(info_sides[connection.id]):
                last_info[info_sides[connection.id]] = bytes(raw)
                _update_camera_model(source, connection, raw, info_sides[connection.id],
                                     pipeline, stereo, warn)
        if stereo is not None:
            writer.release(pairing.admit([], float("inf")))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        output.close()
    return interrupted


class _ResultWriter:
    """Runs released frames through the pipeline and writes their results."""

    def __init__(self, source: BagInput, pipeline: OfflineFlowPipeline, output: OutputBag,
                 options: BagOutputOptions, topics: dict[str, tuple[str, str]],
                 stereo: BagStereo | None) -> None:
        self._source = source
        self._pipeline = pipeline
        self._output = output
        self._options = options
        self._stereo = stereo
        self._messages = ResultMessages(source.typestore)
        self._new = {role: output.add_topic(topic, msgtype)
                     for role, (topic, msgtype) in topics.items()}

    def deserialize(self, connection: Connection, timestamp: int, raw: bytes,
                    side: str) -> _BagImage | None:
        try:
            message = self._source.typestore.deserialize_cdr(raw, connection.msgtype)
        except Exception as error:  # a corrupt record is one counted error, not the end
            name = f"{connection.topic} at bag time {timestamp}"
            if side == "left":
                self._pipeline.record_error(name, f"cannot deserialize: {error}")
            elif self._stereo is not None:
                self._stereo.refuse("right_unreadable", f"{name}: {error}")
            return None
        return _BagImage(side, stamp_ns(message.header.stamp), message, connection, timestamp)

    def release(self, step: PairingStep[_BagImage]) -> None:
        """Process what the stereo pairing released, left frames with their partner."""
        assert self._stereo is not None
        for image in step.unpaired:
            self._stereo.counts[f"unpaired frames: {image.camera}"] += 1
        for image in step.frames:
            if image.camera == "left":
                partner = step.pair[1] if step.pair is not None else None
                self.process(image, partner)

    def process(self, image: _BagImage, right: _BagImage | None) -> None:
        """Flow (and tracks, disparity) ending at the left ``image``, matched in ``right``."""
        connection, timestamp, message = image.connection, image.timestamp, image.message
        name = f"{connection.topic} at bag time {timestamp}"
        right_frame = None if right is None else image_frame(
            right.message, right.connection.msgtype,
            f"{right.connection.topic} at bag time {right.timestamp}",
        )
        result = self._pipeline.process(image_frame(message, connection.msgtype, name),
                                        right_frame)
        if result is None:
            return
        messages, new, output = self._messages, self._new, self._output
        header = messages.header(result.current.stamp_ns, message.header.frame_id)
        previous_stamp = result.previous.stamp_ns
        output.write_message(new["flow"], timestamp,
                             messages.optical_flow(header, previous_stamp, result.flow))
        rig = None
        if self._stereo is not None and result.stereo is not None:
            width, height = result.flow.input_size
            rig = self._stereo.rig(width, height)
        if result.tracks is not None:
            matches = None
            if rig is not None and result.stereo is not None and self._stereo is not None:
                matches = self._stereo.match(result.tracks, result.stereo, rig)
            output.write_message(
                new["tracks"], timestamp,
                messages.track_array(header, previous_stamp, result.tracks, matches),
            )
        if "flow_vis" in new:
            rgb = flow_to_rgb(result.flow.forward, self._options.vis_max_magnitude)
            output.write_message(new["flow_vis"], timestamp,
                                 messages.flow_visualization(header, rgb))
        if rig is not None and result.stereo is not None and self._stereo is not None:
            output.write_message(
                new["disparity"], timestamp,
                self._stereo.disparity_message(messages, header, result.stereo, rig),
            )


def _update_camera_model(source: BagInput, connection: Connection, raw: bytes, side: str,
                         pipeline: OfflineFlowPipeline, stereo: BagStereo | None,
                         warn: Callable[[str], None]) -> None:
    try:
        message = source.typestore.deserialize_cdr(raw, connection.msgtype)
        model = camera_model_from_info(message)
    except ValueError as error:
        model = None
        warn(f"{connection.topic}: unusable calibration"
             + (", tracks get no normalized coordinates" if side == "left" else "")
             + f": {error}")
    if side == "left":
        pipeline.set_camera_model(model)
    if stereo is not None:
        stereo.set_model(side, model)
