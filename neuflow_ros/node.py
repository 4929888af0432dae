"""The ROS 2 flow node: camera images in, dense optical flow out.

This module only adapts ROS to the ROS-free parts: subscription callbacks
decode frames (frame_intake) and hand them to a mailbox (frame_mailbox); a
worker thread (flow_worker) owns the engine and calls back into
``_publish_flows``; statistics and health levels live in node_diagnostics,
parameter declarations and validation in node_parameters. Works on Humble,
Jazzy and Kilted: nothing newer than Humble's rclpy is used unguarded.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.utilities import get_rmw_implementation_identifier
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud
from std_msgs.msg import Header

from neuflow_ros.msg import OpticalFlow, TrackArray

from .camera_stream import ResetReason
from .engine import EngineConfig, create_engine
from .flow_visualization import flow_to_rgb
from .flow_worker import CameraFlow, CameraFrame, FlowWorker, WorkerSettings
from .frame_intake import MalformedFrameError, compressed_frame, raw_frame
from .frame_mailbox import FrameMailbox, MailboxClosedError
from .image_conversion import flow_to_image_payload, rgb_to_image_payload
from .node_diagnostics import DiagnosticThresholds, NodeHealth, WarningThrottle
from .node_parameters import (
    PARAMETERS,
    ConfigurationError,
    NodeSettings,
    RuntimeSettings,
    descriptor_for,
    read_runtime_settings,
    read_settings,
)
from .node_tracking import TrackingSettings, TrackOutputs
from .ros_messages import image_msg, stamp_ns, time_msg

NODE_NAME = "neuflow"
SHUTDOWN_TIMEOUT_S = 1.5
"""The worker gets this long to finish its batch; the node must exit within 2 s."""
FASTDDS_PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
WARNING_PERIOD_S = 5.0
"""At most one warning per camera and malformed-frame reason in this period."""

_LEVELS = {0: DiagnosticStatus.OK, 1: DiagnosticStatus.WARN, 2: DiagnosticStatus.ERROR}


def _qos(reliable: bool, depth: int) -> QoSProfile:
    reliability = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability)


class _RclpyLogHandler(logging.Handler):
    """Forwards the engine's standard-library log records to the node's ROS logger."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__()
        self._ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        message = self.format(record)
        if record.levelno >= logging.ERROR:
            self._ros_logger.error(message)
        elif record.levelno >= logging.WARNING:
            self._ros_logger.warning(message)
        elif record.levelno >= logging.INFO:
            self._ros_logger.info(message)
        else:
            self._ros_logger.debug(message)


def _engine_logger(ros_logger: Any) -> logging.Logger:
    logger = logging.getLogger(f"neuflow_ros.node.{ros_logger.name}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.handlers = [_RclpyLogHandler(ros_logger)]
    return logger


@dataclass
class CameraPorts:
    """Topics and publishers of one camera."""

    image_topic: str
    flow_publisher: Any
    vis_publisher: Any
    camera_info: CameraInfo | None = None
    """Latest calibration, for output publishers that need it (e.g. feature tracks)."""


class NeuFlowNode(Node):
    """Subscribes to one or more cameras and publishes dense flow between their frames."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(kwargs.pop("node_name", NODE_NAME), **kwargs)
        for spec in PARAMETERS:
            self.declare_parameter(spec.name, spec.default, descriptor_for(spec))
        self.settings = read_settings(lambda name: self.get_parameter(name).value)
        runtime = self.settings.runtime
        self._engine_config = self._engine_config_from(self.settings)
        self._warnings = WarningThrottle(WARNING_PERIOD_S)
        self._mailbox: FrameMailbox[CameraFrame] = FrameMailbox(
            keep_all=not runtime.drop_frames, max_queued=self.settings.queue_size
        )
        self._vis_max_magnitude = runtime.flow_vis_max_magnitude
        self._cameras = {camera: self._open_camera(camera) for camera in self.settings.cameras}
        self._tracks = self._open_track_outputs()
        self._calibration_warned: set[str] = set()
        self.health = NodeHealth(
            self.get_fully_qualified_name().lstrip("/"),
            {camera: ports.image_topic for camera, ports in self._cameras.items()},
            self._thresholds(runtime),
        )
        self._diagnostics_publisher = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(self.settings.diagnostic_period_s, self._publish_diagnostics)
        self.worker = FlowWorker(
            lambda: create_engine(
                self._engine_config,
                allow_dis_fallback=self.settings.allow_dis_fallback,
                logger=_engine_logger(self.get_logger()),
            ),
            self._mailbox,
            self._publish_flows,
            self,
            WorkerSettings(
                runtime.max_frame_gap_s, runtime.publish_resolution,
                backward=self.settings.tracking is not None,
            ),
        )
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._hint_at_fastdds_profile()
        self.worker.start()

    # --- set-up ---------------------------------------------------------------------------

    @staticmethod
    def _engine_config_from(settings: NodeSettings) -> EngineConfig:
        try:
            return EngineConfig(
                backend=settings.backend,
                checkpoint=settings.checkpoint,
                checkpoint_sha256=settings.checkpoint_sha256,
                cache_dir=settings.cache_dir,
                device=settings.device,
                precision=settings.precision,
                inference_size=settings.inference_size,
                iters_s16=settings.iters_s16,
                iters_s8=settings.iters_s8,
                fold_batchnorm=settings.fold_batchnorm,
                dis_preset=settings.dis_preset,
                num_threads=settings.num_threads,
            )
        except ValueError as error:
            raise ConfigurationError(f"invalid engine parameters: {error}") from error

    def _open_camera(self, camera: str) -> CameraPorts:
        prefix = f"{camera}/" if camera else ""
        input_qos = _qos(self.settings.input_reliable, self.settings.input_depth)
        output_qos = _qos(self.settings.output_reliable, self.settings.output_depth)
        image_topic = self._resolve(f"{prefix}image")
        if self.settings.transport == "compressed":
            image_topic = f"{image_topic}/compressed"
            self.create_subscription(
                CompressedImage, image_topic,
                lambda msg: self._on_compressed_image(camera, msg), input_qos,
            )
        else:
            self.create_subscription(
                Image, image_topic, lambda msg: self._on_raw_image(camera, msg), input_qos
            )
        ports = CameraPorts(
            image_topic=image_topic,
            flow_publisher=self.create_publisher(OpticalFlow, f"~/{prefix}flow", output_qos),
            vis_publisher=self.create_publisher(Image, f"~/{prefix}flow_vis", output_qos),
        )
        self.create_subscription(
            CameraInfo, f"{prefix}camera_info",
            lambda msg: setattr(ports, "camera_info", msg), input_qos,
        )
        return ports

    def _open_track_outputs(self) -> TrackOutputs | None:
        if self.settings.tracking is None:
            return None
        output_qos = _qos(self.settings.output_reliable, self.settings.output_depth)
        # VINS-Fusion subscribes reliably; a best-effort publisher would never match it.
        features_qos = _qos(True, self.settings.output_depth)
        publishers = {}
        for camera in self._cameras:
            prefix = f"{camera}/" if camera else ""
            features = (
                self.create_publisher(PointCloud, f"~/{prefix}features", features_qos)
                if self.settings.vins_features else None
            )
            publishers[camera] = (
                self.create_publisher(TrackArray, f"~/{prefix}tracks", output_qos),
                features,
                self.create_publisher(Image, f"~/{prefix}tracks_vis", output_qos),
            )
        settings = TrackingSettings(
            tracker=self.settings.tracking,
            vins_features=self.settings.vins_features,
            camera_id_by_name={camera: index for index, camera in enumerate(self._cameras)},
        )
        return TrackOutputs(settings, publishers, self._warn_once_about_calibration)

    def _warn_once_about_calibration(self, camera: str, message: str) -> None:
        if camera not in self._calibration_warned:
            self._calibration_warned.add(camera)
            self.get_logger().warning(f"{self._cameras[camera].image_topic}: {message}")

    def _resolve(self, topic: str) -> str:
        """Fully qualified, remapped name, so '<image>/compressed' follows a remapped image."""
        if hasattr(self, "resolve_topic_name"):
            return self.resolve_topic_name(topic)
        return topic

    def _hint_at_fastdds_profile(self) -> None:
        """Fast DDS defaults lose most best-effort 640x480 images between processes: say so."""
        if self.settings.input_reliable or "fastrtps" not in get_rmw_implementation_identifier():
            return
        if any(os.environ.get(variable) for variable in FASTDDS_PROFILE_VARIABLES):
            return
        self.get_logger().warning(
            "no Fast DDS profile set: best-effort images above ~0.5 MB may not arrive from "
            "other processes. Set FASTDDS_DEFAULT_PROFILES_FILE (Kilted) or "
            "FASTRTPS_DEFAULT_PROFILES_FILE (Humble, Jazzy) to the installed "
            "config/fastdds_profile.xml for this node and the camera driver "
            "(neuflow.launch.py does); input_qos.reliability reliable helps only with a reliable "
            "camera publisher."
        )

    @staticmethod
    def _thresholds(runtime: RuntimeSettings) -> DiagnosticThresholds:
        return DiagnosticThresholds(
            input_timeout_s=runtime.input_timeout_s, min_output_ratio=runtime.min_output_ratio
        )

    def camera_info(self, camera: str) -> CameraInfo | None:
        return self._cameras[camera].camera_info

    # --- subscription callbacks: convert and hand over, nothing else ----------------------

    def _on_raw_image(self, camera: str, msg: Image) -> None:
        started = time.perf_counter()
        try:
            frame = raw_frame(
                camera, stamp_ns(msg.header.stamp), msg.header.frame_id, msg.encoding,
                msg.height, msg.width, msg.step, msg.is_bigendian, msg.data,
            )
        except MalformedFrameError as error:
            self._reject(camera, error)
            return
        self._hand_over(frame, started)

    def _on_compressed_image(self, camera: str, msg: CompressedImage) -> None:
        started = time.perf_counter()
        try:
            frame = compressed_frame(
                camera, stamp_ns(msg.header.stamp), msg.header.frame_id, msg.format, msg.data
            )
        except MalformedFrameError as error:
            self._reject(camera, error)
            return
        self._hand_over(frame, started)

    def _hand_over(self, frame: CameraFrame, started: float) -> None:
        try:
            outcome = self._mailbox.put(frame.camera, frame)
        except MailboxClosedError:
            return
        now = time.monotonic()
        self.health.frames_dropped(frame.camera, outcome.dropped, now)
        self.health.frame_received(frame.camera, now, time.perf_counter() - started)

    def _reject(self, camera: str, error: MalformedFrameError) -> None:
        now = time.monotonic()
        self.health.frame_malformed(camera, error.reason, str(error), now)
        suppressed = self._warnings.admit((camera, error.reason), now)
        if suppressed is not None:
            topic = self._cameras[camera].image_topic
            more = f" ({suppressed} more since the last warning)" if suppressed else ""
            self.get_logger().warning(f"dropping malformed frame on {topic}: {error}{more}")

    # --- worker side ----------------------------------------------------------------------

    def _publish_flows(self, flows: Sequence[CameraFlow]) -> None:
        """Runs on the worker thread; rclpy publishers may be used from any thread."""
        vis_max = self._vis_max_magnitude
        for flow in flows:
            started = time.perf_counter()
            ports = self._cameras[flow.camera]
            header = Header(stamp=time_msg(flow.current.stamp_ns), frame_id=flow.current.frame_id)
            input_width, input_height = flow.result.input_size
            ports.flow_publisher.publish(
                OpticalFlow(
                    header=header,
                    previous_stamp=time_msg(flow.previous.stamp_ns),
                    flow=image_msg(header, flow_to_image_payload(flow.result.forward)),
                    input_width=input_width,
                    input_height=input_height,
                )
            )
            if ports.vis_publisher.get_subscription_count() > 0:
                rgb = flow_to_rgb(flow.result.forward, vis_max)
                ports.vis_publisher.publish(image_msg(header, rgb_to_image_payload(rgb)))
                self.health.visualization_published(flow.camera)
            if self._tracks is not None:
                self._tracks.publish(
                    flow, header, time_msg(flow.previous.stamp_ns), ports.camera_info
                )
            publish_s = time.perf_counter() - started
            latency_s = (self.get_clock().now().nanoseconds - flow.current.stamp_ns) / 1e9
            self.health.flow_published(flow.camera, time.monotonic(), latency_s, publish_s)

    # WorkerObserver: called on the worker thread.

    def engine_ready(self, engine: Any) -> None:
        info = {"backend": engine.backend, "device": str(engine.device),
                "precision": engine.precision}
        self.health.engine_ready(info)
        self.get_logger().info(
            f"flow engine ready: {info['backend']} on {info['device']} ({info['precision']}); "
            f"cameras: {', '.join(p.image_topic for p in self._cameras.values())}"
        )

    def engine_failed(self, error: BaseException) -> None:
        self.health.engine_failed(str(error))

    def frame_taken(self, frame: CameraFrame, queue_wait_s: float) -> None:
        self.health.frame_taken(frame.camera, time.monotonic(), queue_wait_s, frame.stamp_ns)

    def stream_reset(self, camera: str, reason: ResetReason, detail: str) -> None:
        self.health.stream_reset(camera, reason.value)
        self.get_logger().info(
            f"{self._cameras[camera].image_topic}: restarting flow ({detail}); "
            "no flow across this frame"
        )

    def inference_done(self, pairs: int, seconds: float) -> None:
        self.health.inference_done(time.monotonic(), seconds)

    def worker_exception(self, stage: str, error: BaseException, trace: str) -> None:
        if not self.context.ok():
            return  # shutting down under the worker: publishing fails, nothing is wrong
        self.health.worker_exception(time.monotonic(), f"{stage}: {error}")
        self.get_logger().error(f"flow worker failed during {stage}, continuing:\n{trace}")

    # --- diagnostics and parameters -------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        engine = self.worker.engine
        gpu_bytes = engine.gpu_memory_bytes() if engine is not None else None
        if not self.worker.alive and not self.worker.failed:
            self.health.worker_stopped("worker thread ended")
        hardware_id = str(engine.device) if engine is not None else self.settings.device
        array_msg = DiagnosticArray()
        array_msg.header.stamp = self.get_clock().now().to_msg()
        for report in self.health.report(time.monotonic(), gpu_bytes):
            array_msg.status.append(
                DiagnosticStatus(
                    level=_LEVELS[report.level], name=report.name, message=report.message,
                    hardware_id=hardware_id,
                    values=[KeyValue(key=key, value=value) for key, value in report.values],
                )
            )
        self._diagnostics_publisher.publish(array_msg)

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Applies run-time parameters atomically; rejects values the node cannot use."""
        changed = {parameter.name: parameter.value for parameter in parameters}
        try:
            runtime = read_runtime_settings(
                lambda name: changed[name] if name in changed else self.get_parameter(name).value
            )
        except ConfigurationError as error:
            return SetParametersResult(successful=False, reason=str(error))
        if runtime.drop_frames != (not self._mailbox.keep_all):
            for camera, count in self._mailbox.set_keep_all(not runtime.drop_frames).items():
                self.health.frames_dropped(str(camera), count, time.monotonic())
        self.worker.settings = replace(
            self.worker.settings,
            max_frame_gap_s=runtime.max_frame_gap_s,
            output_grid=runtime.publish_resolution,
        )
        self._vis_max_magnitude = runtime.flow_vis_max_magnitude
        self.health.thresholds = replace(
            self.health.thresholds,
            input_timeout_s=runtime.input_timeout_s,
            min_output_ratio=runtime.min_output_ratio,
        )
        return SetParametersResult(successful=True)

    def shutdown(self) -> None:
        """Stop the worker; it gets SHUTDOWN_TIMEOUT_S to finish the batch in hand."""
        if not self.worker.stop(SHUTDOWN_TIMEOUT_S):
            self.get_logger().warning(
                f"flow worker still busy after {SHUTDOWN_TIMEOUT_S} s; exiting without it"
            )


def _init_without_rclpy_signal_handlers(args: list[str] | None) -> bool:
    """rclpy.init, keeping SIGINT/SIGTERM for main(); False where rclpy cannot be told so.

    rclpy's own handlers shut the context down at once, while the worker may be
    publishing; handling the signals here lets main() stop the worker first.
    """
    try:
        from rclpy.signals import SignalHandlerOptions
    except ImportError:
        rclpy.init(args=args)
        return False
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    return True


def main(args: list[str] | None = None) -> int:
    """Run the node until Ctrl-C / SIGTERM; exit code 1 with one message if it cannot start."""
    stop_requested = threading.Event()
    if _init_without_rclpy_signal_handlers(args):
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop_signal, lambda *_: stop_requested.set())
    logger = get_logger(NODE_NAME)
    node: NeuFlowNode | None = None
    exit_code = 0
    try:
        node = NeuFlowNode()
        logger = node.get_logger()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not stop_requested.is_set() and rclpy.ok() and not node.worker.failed:
            executor.spin_once(timeout_sec=0.1)
        if node.worker.failed:
            logger.fatal(
                f"cannot start the flow engine (backend '{node.settings.backend}', checkpoint "
                f"'{node.settings.checkpoint or ''}'): {node.worker.startup_error}"
            )
            exit_code = 1
    except (ConfigurationError, ParameterException) as error:
        logger.fatal(f"cannot start: {error}")
        exit_code = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
