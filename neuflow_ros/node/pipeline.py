"""The flow node's ROS wiring, shared by the plain and the lifecycle (managed) node.

A FlowPipeline owns everything between the camera subscriptions and the
output publishers on a host rclpy node: publishers, the camera_info
subscriptions, the diagnostics timer, the frame mailbox and the worker
thread. The plain node builds one and starts it at once; the lifecycle node
builds it on configure (with an engine it loaded itself), starts it on
activate, stops it on deactivate and closes it on cleanup. Keeping both
nodes on this one object means they cannot drift apart in behaviour.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.utilities import get_rmw_implementation_identifier
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud
from std_msgs.msg import Header
from stereo_msgs.msg import DisparityImage

from neuflow_ros.msg import OpticalFlow, TrackArray

from ..flow.engine import EngineConfig, config_to_run, create_engine, min_input_side
from ..imaging.flow_visualization import flow_to_rgb
from ..imaging.image_conversion import flow_to_image_payload, rgb_to_image_payload
from ..tracking.camera_model import CalibrationError
from ..tracking.stereo_matching import StereoMatchConfig
from .calibration_gate import CalibrationGate
from .camera_stream import ResetReason
from .diagnostics import DiagnosticThresholds, FailureLog, NodeHealth, WarningThrottle
from .fastdds_profile import installed_fastdds, profile_is_set, profile_variables
from .flow_worker import CameraFlow, CameraFrame, FlowWorker, WorkerSettings
from .frame_intake import FrameLimits, MalformedFrameError, compressed_frame, raw_frame
from .frame_mailbox import FrameMailbox, MailboxClosedError
from .parameters import (
    PARAMETERS,
    ConfigurationError,
    NodeSettings,
    RuntimeSettings,
    descriptor_for,
    read_runtime_settings,
)
from .ros_messages import image_msg, stamp_ns, time_msg
from .stereo_health import StereoHealth
from .stereo_outputs import StereoOutputs
from .stereo_pairing import StereoPairConfig
from .track_outputs import TrackingSettings, TrackOutputs
from .worker_thread import WorkerThread

WARNING_PERIOD_S = 5.0
"""At most one log line per camera and problem (malformed-frame reason, rejected
camera_info reason, reset reason, worker failure) in this period; the rest are counted."""

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


def declare_node_parameters(node: Node) -> None:
    for spec in PARAMETERS:
        node.declare_parameter(spec.name, spec.default, descriptor_for(spec))


def engine_config_from(settings: NodeSettings) -> EngineConfig:
    """The engine part of the settings; an invalid combination is a ConfigurationError."""
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
            streaming=settings.streaming,
            cuda_graphs=settings.cuda_graphs,
            dis_preset=settings.dis_preset,
            num_threads=settings.num_threads,
        )
    except ValueError as error:
        raise ConfigurationError(f"invalid engine parameters: {error}") from error


def create_node_engine(node: Node, settings: NodeSettings) -> Any:
    """Load the flow engine the settings ask for, logging through the node's logger."""
    return create_engine(
        engine_config_from(settings),
        allow_dis_fallback=settings.allow_dis_fallback,
        logger=_engine_logger(node.get_logger()),
    )


def hint_at_fastdds_profile(node: Node, settings: NodeSettings) -> None:
    """Fast DDS defaults lose most best-effort 640x480 images between processes: say so.

    Checks the variable the Fast DDS in this process reads: a profile in the
    other version's variable is silently ignored, which is the case to catch.
    """
    if settings.input_reliable or "fastrtps" not in get_rmw_implementation_identifier():
        return
    fastdds = installed_fastdds()
    if profile_is_set(fastdds):
        return
    variables = " or ".join(profile_variables(fastdds))
    found = f"Fast DDS {fastdds.major}.x ({fastdds.library.name})" if fastdds else "Fast DDS"
    node.get_logger().warning(
        f"no Fast DDS profile set for {found}: best-effort images above ~0.5 MB may not "
        f"arrive from other processes. Set {variables} to the installed "
        "config/fastdds_profile.xml for this node and the camera driver "
        "(neuflow.launch.py does); input_qos.reliability reliable helps only with a reliable "
        "camera publisher."
    )


def runtime_parameter_callback(
    node: Node, pipeline_of: Callable[[], FlowPipeline | None]
) -> Callable[[list[Parameter]], SetParametersResult]:
    """on-set-parameters callback: validates run-time values, applies them to the pipeline.

    ``pipeline_of`` is asked on every change because the lifecycle node has no
    pipeline while unconfigured; the values are then read again on configure.
    """

    def on_set_parameters(parameters: list[Parameter]) -> SetParametersResult:
        changed = {parameter.name: parameter.value for parameter in parameters}
        try:
            runtime = read_runtime_settings(
                lambda name: changed[name] if name in changed else node.get_parameter(name).value
            )
        except ConfigurationError as error:
            return SetParametersResult(successful=False, reason=str(error))
        pipeline = pipeline_of()
        if pipeline is not None:
            pipeline.apply_runtime(runtime)
        return SetParametersResult(successful=True)

    return on_set_parameters


@dataclass
class CameraPorts:
    """Topics and publishers of one camera."""

    image_topic: str
    info_topic: str
    flow_publisher: Any
    vis_publisher: Any
    calibration: CalibrationGate = field(default_factory=CalibrationGate)
    """The last calibration that passed every check, for the feature tracks."""


class FlowPipeline:
    """Cameras in, flow out, on a host node; ``start``/``stop`` may alternate (lifecycle)."""

    def __init__(
        self, node: Node, settings: NodeSettings, engine_factory: Callable[[], Any],
        worker_thread: WorkerThread,
    ) -> None:
        """engine_factory runs on worker_thread at every start (the node owns the thread)."""
        self._node = node
        self.settings = settings
        self._engine_factory = engine_factory
        self._worker_thread = worker_thread
        runtime = settings.runtime
        self._keep_all = not runtime.drop_frames
        self._worker_settings = WorkerSettings(
            runtime.max_frame_gap_s, runtime.publish_resolution,
            backward=settings.tracking is not None and settings.tracking.forward_backward,
            stereo=None if settings.stereo is None else StereoPairConfig(
                settings.stereo.left, settings.stereo.right,
                settings.stereo.max_stamp_difference_ns,
            ),
        )
        self._vis_max_magnitude = runtime.flow_vis_max_magnitude
        self._warnings = WarningThrottle(WARNING_PERIOD_S)
        self._failures = FailureLog(self._warnings)
        self._limits = FrameLimits(
            min_side=min_input_side(
                config_to_run(engine_config_from(settings), settings.allow_dis_fallback)
            ),
            max_pixels=settings.max_input_pixels,
        )
        self._destroyers: list[Callable[[], Any]] = []
        """What close() calls to remove every publisher, subscription and timer made here."""
        self._image_subscriptions: list[Any] = []
        self._cameras = {camera: self._open_camera(camera) for camera in settings.cameras}
        self._tracks = self._open_track_outputs()
        self._warned_once: set[tuple[str, str]] = set()
        self._stereo = self._open_stereo_outputs()
        self.health = NodeHealth(
            node.get_fully_qualified_name().lstrip("/"),
            {camera: ports.image_topic for camera, ports in self._cameras.items()},
            DiagnosticThresholds(
                input_timeout_s=runtime.input_timeout_s,
                min_output_ratio=runtime.min_output_ratio,
                stall_timeout_s=runtime.stall_timeout_s,
            ),
        )
        self._mailbox: FrameMailbox[CameraFrame] | None = None
        self.worker: FlowWorker | None = None
        self._diagnostics_publisher = self._publisher(DiagnosticArray, "/diagnostics", 10)
        timer = node.create_timer(settings.diagnostic_period_s, self._publish_diagnostics)
        self._destroyers.append(lambda: node.destroy_timer(timer))

    # --- set-up ---------------------------------------------------------------------------

    def _publisher(self, msg_type: Any, topic: str, qos: QoSProfile | int) -> Any:
        publisher = self._node.create_publisher(msg_type, topic, qos)
        self._destroyers.append(lambda: self._node.destroy_publisher(publisher))
        return publisher

    def _subscription(self, msg_type: Any, topic: str, callback: Any, qos: QoSProfile) -> Any:
        subscription = self._node.create_subscription(msg_type, topic, callback, qos)
        self._destroyers.append(lambda: self._node.destroy_subscription(subscription))
        return subscription

    def _open_camera(self, camera: str) -> CameraPorts:
        prefix = f"{camera}/" if camera else ""
        output_qos = _qos(self.settings.output_reliable, self.settings.output_depth)
        image_topic = self._resolve(f"{prefix}image")
        if self.settings.transport == "compressed":
            image_topic = f"{image_topic}/compressed"
        ports = CameraPorts(
            image_topic=image_topic,
            info_topic=self._resolve(f"{prefix}camera_info"),
            flow_publisher=self._publisher(OpticalFlow, f"~/{prefix}flow", output_qos),
            vis_publisher=self._publisher(Image, f"~/{prefix}flow_vis", output_qos),
        )
        self._subscription(
            CameraInfo, f"{prefix}camera_info", lambda msg: self._on_camera_info(camera, msg),
            _qos(self.settings.input_reliable, self.settings.input_depth),
        )
        return ports

    def _subscribe_images(self, camera: str) -> Any:
        input_qos = _qos(self.settings.input_reliable, self.settings.input_depth)
        topic = self._cameras[camera].image_topic
        if self.settings.transport == "compressed":
            return self._node.create_subscription(
                CompressedImage, topic, lambda msg: self._on_compressed_image(camera, msg),
                input_qos,
            )
        return self._node.create_subscription(
            Image, topic, lambda msg: self._on_raw_image(camera, msg), input_qos
        )

    def _open_track_outputs(self) -> TrackOutputs | None:
        if self.settings.tracking is None:
            return None
        output_qos = _qos(self.settings.output_reliable, self.settings.output_depth)
        # VINS-Fusion subscribes reliably; a best-effort publisher would never match it.
        features_qos = _qos(True, self.settings.output_depth)
        publishers = {}
        stereo = self.settings.stereo
        for camera in self._cameras:
            prefix = f"{camera}/" if camera else ""
            # VINS-Fusion reads both cameras of a pair from one topic, camera id 0 and 1.
            features_prefix = "" if stereo is not None and camera == stereo.left else prefix
            features = (
                self._publisher(PointCloud, f"~/{features_prefix}features", features_qos)
                if self.settings.vins_features
                and (stereo is None or camera != stereo.right) else None
            )
            publishers[camera] = (
                self._publisher(TrackArray, f"~/{prefix}tracks", output_qos),
                features,
                self._publisher(Image, f"~/{prefix}tracks_vis", output_qos),
            )
        order = list(self._cameras)
        if stereo is not None:
            order = [stereo.left, stereo.right] + [
                camera for camera in order if camera not in (stereo.left, stereo.right)
            ]
        settings = TrackingSettings(
            tracker=self.settings.tracking,
            vins_features=self.settings.vins_features,
            camera_id_by_name={camera: index for index, camera in enumerate(order)},
            stereo_left=None if stereo is None else stereo.left,
            stereo_match=StereoMatchConfig() if stereo is None else stereo.match,
        )
        return TrackOutputs(settings, publishers, self._warn_once)

    def _open_stereo_outputs(self) -> StereoOutputs | None:
        stereo = self.settings.stereo
        if stereo is None:
            return None
        output_qos = _qos(self.settings.output_reliable, self.settings.output_depth)
        name = self._node.get_fully_qualified_name().lstrip("/")
        return StereoOutputs(
            stereo,
            StereoHealth(f"{name}: stereo {stereo.left}/{stereo.right}", stereo.left, stereo.right),
            lambda camera: self._cameras[camera].calibration.model,
            self._publisher(DisparityImage, "~/disparity", output_qos),
            self._warn_about_stereo,
        )

    def _warn_about_stereo(self, reason: str, message: str) -> None:
        suppressed = self._warnings.admit(("stereo", reason), time.monotonic())
        if suppressed is not None:
            more = f" ({suppressed} more since the last warning)" if suppressed else ""
            self._node.get_logger().warning(message + more)

    def _warn_once(self, camera: str, message: str) -> None:
        """For lasting conditions of a camera's tracks (no calibration, no stamps)."""
        if (camera, message) not in self._warned_once:
            self._warned_once.add((camera, message))
            self._node.get_logger().warning(f"{self._cameras[camera].image_topic}: {message}")

    def _resolve(self, topic: str) -> str:
        """Fully qualified, remapped name, so '<image>/compressed' follows a remapped image."""
        if hasattr(self._node, "resolve_topic_name"):
            return self._node.resolve_topic_name(topic)
        return topic

    # --- running --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(self) -> None:
        """Subscribe to the cameras and start a worker (with a fresh frame history)."""
        if self.worker is not None:
            return
        self._mailbox = FrameMailbox(keep_all=self._keep_all, max_queued=self.settings.queue_size)
        self.worker = FlowWorker(
            self._engine_factory, self._mailbox, self.publish_flows, self, self._worker_settings,
            thread=self._worker_thread,
        )
        self.health.engine_starting()
        self.worker.start()
        self._image_subscriptions = [self._subscribe_images(camera) for camera in self._cameras]

    def stop(self, timeout_s: float) -> bool:
        """Unsubscribe and stop the worker; False when it is still busy after timeout_s."""
        for subscription in self._image_subscriptions:
            self._node.destroy_subscription(subscription)
        self._image_subscriptions = []
        if self.worker is None:
            return True
        worker, self.worker = self.worker, None
        stopped = worker.stop(timeout_s)
        self.health.engine_inactive()
        return stopped

    def close(self, timeout_s: float) -> bool:
        """Stop, then destroy every publisher, subscription and timer made on the node."""
        stopped = self.stop(timeout_s)
        for destroy in self._destroyers:
            destroy()
        self._destroyers = []
        return stopped

    def apply_runtime(self, runtime: RuntimeSettings) -> None:
        """Take over parameters that may change while running (see parameters)."""
        self._keep_all = not runtime.drop_frames
        mailbox = self._mailbox
        if mailbox is not None and mailbox.keep_all != self._keep_all:
            for camera, count in mailbox.set_keep_all(self._keep_all).items():
                self.health.frames_dropped(str(camera), count, time.monotonic())
        self._worker_settings = replace(
            self._worker_settings,
            max_frame_gap_s=runtime.max_frame_gap_s,
            output_grid=runtime.publish_resolution,
        )
        worker = self.worker
        if worker is not None:
            worker.settings = self._worker_settings
        self._vis_max_magnitude = runtime.flow_vis_max_magnitude
        self.health.thresholds = replace(
            self.health.thresholds,
            input_timeout_s=runtime.input_timeout_s,
            min_output_ratio=runtime.min_output_ratio,
            stall_timeout_s=runtime.stall_timeout_s,
        )

    # --- subscription callbacks: convert and hand over, nothing else ----------------------

    def _on_raw_image(self, camera: str, msg: Image) -> None:
        started = time.perf_counter()
        try:
            frame = raw_frame(
                camera, stamp_ns(msg.header.stamp), msg.header.frame_id, msg.encoding,
                msg.height, msg.width, msg.step, msg.is_bigendian, msg.data, self._limits,
            )
        except MalformedFrameError as error:
            self._reject(camera, error)
            return
        self._hand_over(frame, started)

    def _on_compressed_image(self, camera: str, msg: CompressedImage) -> None:
        started = time.perf_counter()
        try:
            frame = compressed_frame(
                camera, stamp_ns(msg.header.stamp), msg.header.frame_id, msg.format, msg.data,
                self._limits,
            )
        except MalformedFrameError as error:
            self._reject(camera, error)
            return
        self._hand_over(frame, started)

    def _hand_over(self, frame: CameraFrame, started: float) -> None:
        mailbox = self._mailbox
        if mailbox is None:
            return
        rejection = self._cameras[frame.camera].calibration.image_arrived(
            frame.width, frame.height
        )
        if rejection is not None:
            self._reject_calibration(frame.camera, rejection)
        try:
            outcome = mailbox.put(frame.camera, frame)
        except MailboxClosedError:
            return
        now = time.monotonic()
        self.health.frames_dropped(frame.camera, outcome.dropped, now)
        self.health.frame_received(frame.camera, now, time.perf_counter() - started)

    def _reject(self, camera: str, error: MalformedFrameError) -> None:
        now = time.monotonic()
        self.health.frame_malformed(camera, error.reason, str(error), now)
        topic = self._cameras[camera].image_topic
        line = self._warnings.line(
            (camera, error.reason), now, f"dropping malformed frame on {topic}: {error}"
        )
        if line is not None:
            self._node.get_logger().warning(line)

    def _on_camera_info(self, camera: str, msg: CameraInfo) -> None:
        """Check a calibration at the door: a bad one must not reach the tracker."""
        rejection = self._cameras[camera].calibration.offer(msg)
        if rejection is not None:
            self._reject_calibration(camera, rejection)

    def _reject_calibration(self, camera: str, rejection: CalibrationError) -> None:
        now = time.monotonic()
        self.health.camera_info_rejected(camera, rejection.reason, str(rejection), now)
        ports = self._cameras[camera]
        kept = "the last good one" if ports.calibration.model is not None else "none yet"
        line = self._warnings.line(
            (camera, "camera_info", rejection.reason), now,
            f"ignoring camera_info on {ports.info_topic} ({rejection.reason}): {rejection}; "
            f"calibration in use: {kept}",
        )
        if line is not None:
            self._node.get_logger().warning(line)


    # --- worker side ----------------------------------------------------------------------

    def publish_flows(self, flows: Sequence[CameraFlow]) -> None:
        """Runs on the worker thread; rclpy publishers may be used from any thread.

        Publish time is everything here except the tracker's own update, which
        is reported apart as tracking time: the first is the node's overhead,
        the second an algorithm the user chose to run.
        """
        vis_max = self._vis_max_magnitude
        for flow in flows:
            started = time.perf_counter()
            ports = self._cameras[flow.camera]
            header = Header(stamp=time_msg(flow.current.stamp_ns), frame_id=flow.current.frame_id)
            previous_stamp = time_msg(flow.previous.stamp_ns)
            input_width, input_height = flow.result.input_size
            ports.flow_publisher.publish(
                OpticalFlow(
                    header=header,
                    previous_stamp=previous_stamp,
                    flow=image_msg(header, flow_to_image_payload(flow.result.forward)),
                    input_width=input_width,
                    input_height=input_height,
                )
            )
            if ports.vis_publisher.get_subscription_count() > 0:
                rgb = flow_to_rgb(flow.result.forward, vis_max)
                ports.vis_publisher.publish(image_msg(header, rgb_to_image_payload(rgb)))
                self.health.visualization_published(flow.camera)
            rig = None
            if self._stereo is not None and flow.stereo is not None:
                rig = self._stereo.rig_for(flow.stereo)
            tracking_s = None
            if self._tracks is not None:
                try:
                    tracking_s = self._tracks.publish(
                        flow, header, previous_stamp, ports.calibration.model, rig
                    )
                except Exception as error:
                    # The flow went out: count it, and let the tracks fail on their own.
                    self.worker_exception("tracking", error, traceback.format_exc())
                matches = self._tracks.last_matches
                if self._stereo is not None and matches is not None:
                    self._stereo.health.matched(
                        int(matches.matched.sum()), matches.rejections, time.monotonic()
                    )
            if self._stereo is not None and flow.stereo is not None and rig is not None:
                self._stereo.publish_disparity(flow.stereo, rig, header)
            publish_s = time.perf_counter() - started - (tracking_s or 0.0)
            latency_s = (self._node.get_clock().now().nanoseconds - flow.current.stamp_ns) / 1e9
            self.health.flow_published(
                flow.camera, time.monotonic(), latency_s, publish_s, tracking_s
            )

    # WorkerObserver: called on the worker thread.

    def engine_ready(self, engine: Any) -> None:
        info = {"backend": engine.backend, "device": str(engine.device),
                "precision": engine.precision}
        self.health.engine_ready(info)
        self._node.get_logger().info(
            f"flow engine ready: {info['backend']} on {info['device']} ({info['precision']}); "
            f"cameras: {', '.join(p.image_topic for p in self._cameras.values())}"
        )

    def engine_failed(self, error: BaseException) -> None:
        self.health.engine_failed(str(error))

    def frame_taken(self, frame: CameraFrame, queue_wait_s: float) -> None:
        self.health.frame_taken(frame.camera, time.monotonic(), queue_wait_s, frame.stamp_ns)

    def stream_reset(self, camera: str, reason: ResetReason, detail: str) -> None:
        self.health.stream_reset(camera, reason.value)
        line = self._warnings.line(
            (camera, "reset", reason), time.monotonic(),
            f"{self._cameras[camera].image_topic}: restarting flow ({detail}); "
            "no flow across this frame",
        )
        if line is not None:
            self._node.get_logger().info(line)

    def inference_done(self, pairs: int, seconds: float) -> None:
        self.health.inference_done(time.monotonic(), seconds)

    def stereo_paired(self, left: CameraFrame, right: CameraFrame) -> None:
        if self._stereo is not None:
            self._stereo.health.paired()

    def stereo_unpaired(self, frame: CameraFrame) -> None:
        if self._stereo is not None:
            self._stereo.health.unpaired(frame.camera, time.monotonic())

    def stereo_skipped(self, reason: str, detail: str) -> None:
        if self._stereo is not None:
            self._stereo.refuse(reason, detail)

    def worker_exception(self, stage: str, error: BaseException, trace: str) -> None:
        """Counted every time, logged as FailureLog decides (no traceback per frame)."""
        if not self._node.context.ok():
            return  # shutting down under the worker: publishing fails, nothing is wrong
        now = time.monotonic()
        self.health.worker_exception(now, f"{stage}: {error}")
        line = self._failures.line(stage, error, trace, now)
        if line is not None:
            self._node.get_logger().error(line)

    # --- diagnostics ----------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        worker = self.worker
        engine = worker.engine if worker is not None else None
        gpu_bytes = engine.gpu_memory_bytes() if engine is not None else None
        if worker is not None and not worker.alive and not worker.failed:
            self.health.worker_stopped("worker thread ended")
        hardware_id = str(engine.device) if engine is not None else self.settings.device
        array_msg = DiagnosticArray()
        array_msg.header.stamp = self._node.get_clock().now().to_msg()
        engine_call = worker.engine_call if worker is not None else None
        now = time.monotonic()
        reports = self.health.report(now, gpu_bytes, engine_call)
        if self._stereo is not None:
            reports.append(self._stereo.health.report(now))
        for report in reports:
            array_msg.status.append(
                DiagnosticStatus(
                    level=_LEVELS[report.level], name=report.name, message=report.message,
                    hardware_id=hardware_id,
                    values=[KeyValue(key=key, value=value) for key, value in report.values],
                )
            )
        self._diagnostics_publisher.publish(array_msg)
