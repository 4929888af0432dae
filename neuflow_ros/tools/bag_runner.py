"""One pass over an input bag: copy every message, add flow and tracks for the images.

Everything the bag path checks before it touches the output (topics exist
and have the right types, the first image decodes, the new topics do not
collide with old ones) happens in BagInput, so a mistake costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rosbags.interfaces import Connection

from neuflow_ros.imaging.flow_visualization import flow_to_rgb
from neuflow_ros.imaging.image_conversion import ImageFormatError
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
    IMAGE_TYPE,
    OPTICAL_FLOW_TYPE,
    TRACK_ARRAY_TYPE,
    ResultMessages,
    image_frame,
)
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


def output_topics(prefix: str, flow_vis: bool, tracks: bool) -> dict[str, tuple[str, str]]:
    """Role ('flow', 'tracks', 'flow_vis') -> (topic, type); ``prefix`` is a namespace."""
    namespace = "/" + prefix.strip("/") if prefix.strip("/") else ""
    roles = {"flow": OPTICAL_FLOW_TYPE}
    if tracks:
        roles["tracks"] = TRACK_ARRAY_TYPE
    if flow_vis:
        roles["flow_vis"] = IMAGE_TYPE
    return {role: (f"{namespace}/{role}", msgtype) for role, msgtype in roles.items()}


class BagInput:
    """An open, validated input bag and the time window to process."""

    def __init__(self, path: Path, image_topic: str, camera_info_topic: str | None,
                 start_s: float | None, end_s: float | None) -> None:
        self.path = path
        self.typestore = create_typestore()
        self.reader = open_reader(path)
        try:
            self.image_connections = topic_connections(self.reader, image_topic, IMAGE_TYPES,
                                                       "image")
            self.info_connections = [] if camera_info_topic is None else topic_connections(
                self.reader, camera_info_topic, (CAMERA_INFO_TYPE,), "camera_info")
            origin = self.reader.start_time
            self.start_ns = None if start_s is None else origin + round(start_s * 1e9)
            self.stop_ns = None if end_s is None else origin + round(end_s * 1e9)
            self._check_first_image(image_topic)
        except BaseException:
            self.reader.close()
            raise

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
) -> bool:
    """Write the output bag; True when interrupted by Ctrl-C (the bag is closed and valid)."""
    topics = output_topics(options.prefix, options.flow_vis, options.tracks)
    source.check_no_collision([topic for topic, _ in topics.values()])
    output = OutputBag(options.path, options.storage or source.storage, source.typestore, warn)
    messages = ResultMessages(source.typestore)
    new = {role: output.add_topic(topic, msgtype) for role, (topic, msgtype) in topics.items()}
    image_ids = {c.id for c in source.image_connections}
    info_ids = {c.id for c in source.info_connections}
    last_info: bytes | None = None
    report.start(source.expected_frames())
    interrupted = False
    try:
        for connection, timestamp, raw in iterate_messages(source.reader, source.start_ns,
                                                           source.stop_ns):
            copy = output.copy_of(connection)
            if copy is not None:
                output.write(copy, timestamp, raw)
            if connection.id in image_ids:
                _process_image(source, connection, timestamp, raw, pipeline, output, messages,
                               new, options)
                report.update(pipeline.counts.frames)
            elif connection.id in info_ids and raw != last_info:
                last_info = bytes(raw)
                _update_camera_model(source, connection, raw, pipeline, warn)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        output.close()
    return interrupted


def _process_image(source: BagInput, connection: Connection, timestamp: int, raw: bytes,
                   pipeline: OfflineFlowPipeline, output: OutputBag, messages: ResultMessages,
                   new: dict[str, Connection], options: BagOutputOptions) -> None:
    name = f"{connection.topic} at bag time {timestamp}"
    try:
        message = source.typestore.deserialize_cdr(raw, connection.msgtype)
    except Exception as error:  # a corrupt record is one counted error, not the end
        pipeline.record_error(name, f"cannot deserialize: {error}")
        return
    result = pipeline.process(image_frame(message, connection.msgtype, name))
    if result is None:
        return
    header = messages.header(result.current.stamp_ns, message.header.frame_id)
    previous_stamp = result.previous.stamp_ns
    output.write_message(new["flow"], timestamp,
                         messages.optical_flow(header, previous_stamp, result.flow))
    if result.tracks is not None:
        output.write_message(new["tracks"], timestamp,
                             messages.track_array(header, previous_stamp, result.tracks))
    if "flow_vis" in new:
        rgb = flow_to_rgb(result.flow.forward, options.vis_max_magnitude)
        output.write_message(new["flow_vis"], timestamp, messages.flow_visualization(header, rgb))


def _update_camera_model(source: BagInput, connection: Connection, raw: bytes,
                         pipeline: OfflineFlowPipeline, warn: Callable[[str], None]) -> None:
    try:
        message = source.typestore.deserialize_cdr(raw, connection.msgtype)
        pipeline.set_camera_model(camera_model_from_info(message))
    except ValueError as error:
        pipeline.set_camera_model(None)
        warn(f"{connection.topic}: unusable calibration, tracks get no normalized "
             f"coordinates: {error}")
