"""Health bookkeeping of the flow node, without ROS.

The node's callbacks and its worker thread report events here (frame
received, dropped, malformed, flow published, inference done, worker
exception); the diagnostics timer asks for a report and turns it into
``diagnostic_msgs/DiagnosticArray``. Keeping the statistics and the level
decisions free of ROS lets them be tested with a fake clock, and keeps the
rules for OK / WARN / ERROR in one readable place.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from neuflow_ros.node.flow_worker import EngineCall

OK = 0
WARN = 1
ERROR = 2
"""Levels with the values of diagnostic_msgs/DiagnosticStatus (OK, WARN, ERROR)."""


class EventWindow:
    """Times (and optional values) of recent events, for rates and percentiles.

    Only the last ``window_s`` seconds are kept, so a camera that stops shows
    a falling rate instead of its all-time average.
    """

    def __init__(self, window_s: float) -> None:
        if window_s <= 0.0:
            raise ValueError(f"window must be positive, got {window_s}")
        self.window_s = window_s
        self._events: deque[tuple[float, float]] = deque()
        self._first_event_s: float | None = None

    def add(self, now_s: float, value: float = 0.0) -> None:
        if self._first_event_s is None:
            self._first_event_s = now_s
        self._events.append((now_s, value))
        self._expire(now_s)

    def count(self, now_s: float) -> int:
        self._expire(now_s)
        return len(self._events)

    def rate(self, now_s: float) -> float:
        """Events per second over the window (or since the first event, if more recent)."""
        self._expire(now_s)
        if self._first_event_s is None:
            return 0.0
        span = min(self.window_s, now_s - self._first_event_s)
        if span <= 0.0:
            return 0.0
        return len(self._events) / span

    def percentile(self, now_s: float, fraction: float) -> float:
        """Nearest-rank percentile of the values in the window; NaN when empty."""
        self._expire(now_s)
        if not self._events:
            return math.nan
        values = sorted(value for _, value in self._events)
        rank = max(1, math.ceil(fraction * len(values)))
        return values[rank - 1]

    def _expire(self, now_s: float) -> None:
        horizon = now_s - self.window_s
        while self._events and self._events[0][0] <= horizon:
            self._events.popleft()


@dataclass(frozen=True)
class DiagnosticThresholds:
    """When a camera or the engine stops being OK."""

    window_s: float = 5.0
    """Rates, percentiles and 'recent' error counts cover this many seconds."""

    input_timeout_s: float = 2.0
    """WARN when a camera has sent nothing for this long (0 disables)."""

    min_output_ratio: float = 0.5
    """WARN when flows per second fall below this fraction of frames per second."""

    stall_timeout_s: float = 10.0
    """ERROR when one engine compute call has been running this long (0 disables):
    far above any healthy batch (NeuFlow v2 on a 2-core CPU takes under a second
    per pair at 512x384). Warm-ups are not judged."""


@dataclass(frozen=True)
class StatusReport:
    """One diagnostic status, ROS-free: the node copies it into DiagnosticStatus."""

    name: str
    level: int
    message: str
    values: list[tuple[str, str]]


@dataclass
class _CameraHealth:
    window_s: float
    topic: str
    received: int = 0
    dropped: int = 0
    processed: int = 0
    flows: int = 0
    visualizations: int = 0
    malformed: dict[str, int] = field(default_factory=dict)
    resets: dict[str, int] = field(default_factory=dict)
    calibrations_rejected: dict[str, int] = field(default_factory=dict)
    last_received_s: float | None = None
    last_processed_stamp_ns: int | None = None
    last_malformed_detail: str = ""
    last_calibration_detail: str = ""

    def __post_init__(self) -> None:
        self.inputs = EventWindow(self.window_s)
        self.outputs = EventWindow(self.window_s)
        self.recent_malformed = EventWindow(self.window_s)
        self.recent_calibration_rejects = EventWindow(self.window_s)
        self.recent_drops = EventWindow(self.window_s)
        self.latency_s = EventWindow(self.window_s)
        self.callback_s = EventWindow(self.window_s)
        self.publish_s = EventWindow(self.window_s)
        self.tracking_s = EventWindow(self.window_s)
        self.queue_wait_s = EventWindow(self.window_s)


def _ms(seconds: float) -> str:
    return "nan" if math.isnan(seconds) else f"{seconds * 1e3:.2f}"


def _stamp(stamp_ns: int | None) -> str:
    """sec.nanosec as in a ROS header, exact (no float rounding); '' before the first frame."""
    if stamp_ns is None:
        return ""
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    return f"{sec}.{nanosec:09d}"


def _hz(rate: float) -> str:
    return f"{rate:.2f}"


class NodeHealth:
    """Thread-safe counters and statistics of one flow node."""

    def __init__(
        self,
        node_name: str,
        camera_topics: dict[str, str],
        thresholds: DiagnosticThresholds | None = None,
    ) -> None:
        self.node_name = node_name
        self.thresholds = thresholds or DiagnosticThresholds()
        self._lock = threading.Lock()
        self._cameras = {
            camera: _CameraHealth(self.thresholds.window_s, topic)
            for camera, topic in camera_topics.items()
        }
        self._inference_s = EventWindow(self.thresholds.window_s)
        self._recent_exceptions = EventWindow(self.thresholds.window_s)
        self._batches = 0
        self._exceptions = 0
        self._last_exception = ""
        self._engine_state = "starting"
        self._engine_detail = ""
        self._engine_info: dict[str, str] = {}

    # --- events from the subscription callbacks -------------------------------------------

    def frame_received(self, camera: str, now_s: float, callback_s: float) -> None:
        """A frame was decoded and handed to the worker; callback_s is the node's cost."""
        with self._lock:
            health = self._cameras[camera]
            health.received += 1
            health.last_received_s = now_s
            health.inputs.add(now_s)
            health.callback_s.add(now_s, callback_s)

    def frame_malformed(self, camera: str, reason: str, detail: str, now_s: float) -> None:
        """A frame could not be decoded; it is counted, never silently lost."""
        with self._lock:
            health = self._cameras[camera]
            health.malformed[reason] = health.malformed.get(reason, 0) + 1
            health.last_malformed_detail = detail
            health.last_received_s = now_s
            health.recent_malformed.add(now_s)

    def camera_info_rejected(self, camera: str, reason: str, detail: str, now_s: float) -> None:
        """A CameraInfo failed its checks; the last good calibration stays in use."""
        with self._lock:
            health = self._cameras[camera]
            rejected = health.calibrations_rejected
            rejected[reason] = rejected.get(reason, 0) + 1
            health.last_calibration_detail = detail
            health.recent_calibration_rejects.add(now_s)

    def frames_dropped(self, camera: str, count: int, now_s: float) -> None:
        if count <= 0:
            return
        with self._lock:
            health = self._cameras[camera]
            health.dropped += count
            for _ in range(count):
                health.recent_drops.add(now_s)

    # --- events from the worker -----------------------------------------------------------

    def stream_reset(self, camera: str, reason: str) -> None:
        with self._lock:
            resets = self._cameras[camera].resets
            resets[reason] = resets.get(reason, 0) + 1

    def frame_taken(
        self, camera: str, now_s: float, queue_wait_s: float, stamp_ns: int
    ) -> None:
        """The worker picked a frame up; queue_wait_s is how long it waited in the mailbox."""
        with self._lock:
            health = self._cameras[camera]
            health.processed += 1
            health.last_processed_stamp_ns = stamp_ns
            health.queue_wait_s.add(now_s, queue_wait_s)

    def inference_done(self, now_s: float, seconds: float) -> None:
        with self._lock:
            self._batches += 1
            self._inference_s.add(now_s, seconds)

    def flow_published(
        self,
        camera: str,
        now_s: float,
        latency_s: float,
        publish_s: float,
        tracking_s: float | None = None,
    ) -> None:
        """Flow of one frame pair went out.

        latency_s: image stamp to publish. publish_s: the node's own work after
        the flow computation (message building, conversions, publishing).
        tracking_s: the feature tracker's update, None when tracking is off; it
        is an algorithm, not overhead, so it is kept apart from publish_s.
        """
        with self._lock:
            health = self._cameras[camera]
            health.flows += 1
            health.outputs.add(now_s)
            health.latency_s.add(now_s, latency_s)
            health.publish_s.add(now_s, publish_s)
            if tracking_s is not None:
                health.tracking_s.add(now_s, tracking_s)

    def visualization_published(self, camera: str) -> None:
        with self._lock:
            self._cameras[camera].visualizations += 1

    def worker_exception(self, now_s: float, description: str) -> None:
        with self._lock:
            self._exceptions += 1
            self._last_exception = description
            self._recent_exceptions.add(now_s)

    def engine_ready(self, info: dict[str, str]) -> None:
        with self._lock:
            self._engine_state = "ready"
            self._engine_info = dict(info)

    def engine_starting(self) -> None:
        """A worker is (re)starting: the lifecycle node activating again."""
        with self._lock:
            if self._engine_state != "failed":
                self._engine_state = "starting"

    def engine_inactive(self) -> None:
        """The worker was stopped on purpose (lifecycle deactivate): not an error."""
        with self._lock:
            if self._engine_state != "failed":
                self._engine_state = "inactive"

    def engine_failed(self, detail: str) -> None:
        with self._lock:
            self._engine_state = "failed"
            self._engine_detail = detail

    def worker_stopped(self, detail: str) -> None:
        with self._lock:
            if self._engine_state not in ("failed", "inactive"):
                self._engine_state = "stopped"
                self._engine_detail = detail

    # --- queries --------------------------------------------------------------------------

    def totals(self, camera: str) -> dict[str, int]:
        """All-time counters of one camera (for logs and tests)."""
        with self._lock:
            health = self._cameras[camera]
            return {
                "received": health.received,
                "dropped": health.dropped,
                "flows": health.flows,
                "malformed": sum(health.malformed.values()),
                "resets": sum(health.resets.values()),
            }

    def report(
        self,
        now_s: float,
        gpu_memory_bytes: int | None = None,
        engine_call: EngineCall | None = None,
    ) -> list[StatusReport]:
        """``engine_call``: the worker's engine call now running, None between calls."""
        with self._lock:
            reports = [self._engine_report(now_s, gpu_memory_bytes, engine_call)]
            reports.extend(
                self._camera_report(camera, health, now_s)
                for camera, health in self._cameras.items()
            )
            return reports

    def _engine_report(
        self, now_s: float, gpu_memory_bytes: int | None, engine_call: EngineCall | None
    ) -> StatusReport:
        recent_exceptions = self._recent_exceptions.count(now_s)
        call_s = None if engine_call is None else now_s - engine_call.started_s
        stall_timeout_s = self.thresholds.stall_timeout_s
        # A warm-up may legitimately take many times a batch (autotuning on a small
        # Jetson); a hang there still shows at the camera as missing output.
        stalled = (
            engine_call is not None
            and engine_call.kind == "compute"
            and stall_timeout_s > 0.0
            and call_s > stall_timeout_s
        )
        values = [
            ("engine state", self._engine_state),
            *self._engine_info.items(),
            ("batches computed", str(self._batches)),
            ("inference time p50 (ms)", _ms(self._inference_s.percentile(now_s, 0.5))),
            ("inference time p95 (ms)", _ms(self._inference_s.percentile(now_s, 0.95))),
            ("worker exceptions", str(self._exceptions)),
            ("last worker exception", self._last_exception),
            (
                "engine call running (s)",
                "no" if engine_call is None else f"{call_s:.1f} ({engine_call.kind})",
            ),
        ]
        if gpu_memory_bytes is not None:
            values.append(("GPU memory (MB)", f"{gpu_memory_bytes / 2**20:.1f}"))
        if self._engine_state in ("failed", "stopped"):
            level, message = ERROR, f"flow engine {self._engine_state}: {self._engine_detail}"
        elif stalled:
            level = ERROR
            message = (
                f"flow engine stalled: one compute call has been running for {call_s:.1f} s "
                "(GPU hang or driver reset?)"
            )
        elif recent_exceptions:
            level = ERROR
            message = (
                f"{recent_exceptions} worker exception(s) in the last "
                f"{self.thresholds.window_s:g} s: {self._last_exception}"
            )
        elif self._engine_state == "starting":
            level, message = OK, "flow engine starting"
        elif self._engine_state == "inactive":
            level, message = OK, "inactive: not processing images"
        else:
            level = OK
            message = (
                f"{self._engine_info.get('backend', '?')} on "
                f"{self._engine_info.get('device', '?')}"
            )
        return StatusReport(f"{self.node_name}: flow engine", level, message, values)

    def _camera_report(self, camera: str, health: _CameraHealth, now_s: float) -> StatusReport:
        thresholds = self.thresholds
        input_rate = health.inputs.rate(now_s)
        output_rate = health.outputs.rate(now_s)
        recent_malformed = health.recent_malformed.count(now_s)
        recent_drops = health.recent_drops.count(now_s)
        values = [
            ("topic", health.topic),
            ("input rate (Hz)", _hz(input_rate)),
            ("output rate (Hz)", _hz(output_rate)),
            ("frames received", str(health.received)),
            ("frames dropped", str(health.dropped)),
            ("frames dropped recently", str(recent_drops)),
            ("frames processed", str(health.processed)),
            ("last processed stamp", _stamp(health.last_processed_stamp_ns)),
            ("flows published", str(health.flows)),
            ("visualizations published", str(health.visualizations)),
            ("malformed frames", str(sum(health.malformed.values()))),
            *((f"malformed: {reason}", str(n)) for reason, n in sorted(health.malformed.items())),
            ("resets", str(sum(health.resets.values()))),
            *((f"resets: {reason}", str(n)) for reason, n in sorted(health.resets.items())),
            ("camera_info rejected", str(sum(health.calibrations_rejected.values()))),
            *(
                (f"camera_info rejected: {reason}", str(n))
                for reason, n in sorted(health.calibrations_rejected.items())
            ),
            ("latency p50 (ms)", _ms(health.latency_s.percentile(now_s, 0.5))),
            ("latency p95 (ms)", _ms(health.latency_s.percentile(now_s, 0.95))),
            ("callback time p50 (ms)", _ms(health.callback_s.percentile(now_s, 0.5))),
            ("queue wait p50 (ms)", _ms(health.queue_wait_s.percentile(now_s, 0.5))),
            ("publish time p50 (ms)", _ms(health.publish_s.percentile(now_s, 0.5))),
            ("publish time p95 (ms)", _ms(health.publish_s.percentile(now_s, 0.95))),
            ("tracking time p50 (ms)", _ms(health.tracking_s.percentile(now_s, 0.5))),
            ("tracking time p95 (ms)", _ms(health.tracking_s.percentile(now_s, 0.95))),
        ]
        name = f"{self.node_name}: camera {camera}" if camera else f"{self.node_name}: camera"
        if self._engine_state == "inactive":
            return StatusReport(name, OK, f"inactive: not subscribed to {health.topic}", values)
        silent_s = None if health.last_received_s is None else now_s - health.last_received_s
        if silent_s is None:
            return StatusReport(name, WARN, f"waiting for images on {health.topic}", values)
        if thresholds.input_timeout_s > 0.0 and silent_s > thresholds.input_timeout_s:
            return StatusReport(
                name, WARN, f"no images on {health.topic} for {silent_s:.1f} s", values
            )
        if recent_malformed:
            message = (
                f"{recent_malformed} malformed frame(s) in the last {thresholds.window_s:g} s: "
                f"{health.last_malformed_detail}"
            )
            return StatusReport(name, WARN, message, values)
        recent_calibration_rejects = health.recent_calibration_rejects.count(now_s)
        if recent_calibration_rejects:
            message = (
                f"{recent_calibration_rejects} camera_info message(s) rejected in the last "
                f"{thresholds.window_s:g} s: {health.last_calibration_detail}"
            )
            return StatusReport(name, WARN, message, values)
        if input_rate > 0.0 and output_rate < thresholds.min_output_ratio * input_rate:
            message = (
                f"flow at {output_rate:.1f} Hz of {input_rate:.1f} Hz input: "
                f"{recent_drops} frame(s) dropped in the last {thresholds.window_s:g} s"
            )
            return StatusReport(name, WARN, message, values)
        return StatusReport(
            name, OK, f"{input_rate:.1f} Hz in, {output_rate:.1f} Hz flow out", values
        )


class WarningThrottle:
    """Lets one warning per key through every ``period_s`` and counts the rest.

    rclpy's own throttling is per call site, so a broken camera would hide
    the warnings of a healthy one; keying on (camera, reason) keeps them apart.
    """

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._last_s: dict[object, float] = {}
        self._suppressed: dict[object, int] = {}
        self._lock = threading.Lock()

    def admit(self, key: object, now_s: float) -> int | None:
        """None to stay quiet, else the number of warnings suppressed since the last one."""
        with self._lock:
            last = self._last_s.get(key)
            if last is not None and now_s - last < self.period_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return None
            self._last_s[key] = now_s
            return self._suppressed.pop(key, 0)

    def line(self, key: object, now_s: float, message: str) -> str | None:
        """``message`` with the count of suppressed repeats, or None to stay quiet.

        The caller logs it: rclpy refuses two severities from one call site, so
        a shared logging helper would break.
        """
        suppressed = self.admit(key, now_s)
        if suppressed is None:
            return None
        return message + (f" ({suppressed} more since the last one)" if suppressed else "")


class FailureLog:
    """Log lines for exceptions that may repeat on every frame.

    The traceback is what a developer needs, once; a robot's log needs to know
    the failure goes on, not the same 20 lines 30 times a second. So each
    (stage, exception type) gets its traceback the first time, then one line
    per throttle period with the count of repeats.
    """

    def __init__(self, throttle: WarningThrottle) -> None:
        self._throttle = throttle
        self._traced: set[tuple[str, str]] = set()

    def line(self, stage: str, error: BaseException, trace: str, now_s: float) -> str | None:
        kind = (stage, type(error).__name__)
        first = kind not in self._traced
        self._traced.add(kind)
        message = f"flow worker failed during {stage}, continuing: {kind[1]}: {error}"
        if first:
            message += f"\n{trace}"
        return self._throttle.line(("failure", kind), now_s, message)
