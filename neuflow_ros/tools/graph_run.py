"""Measure the real ROS graph: camera process -> neuflow node process -> this process.

Numbers a user can trust come from the deployment shape, not from calling
the engine in a loop: three processes talking over DDS with the shipped
Fast DDS profile, the node at its default QoS, drops counted by the node
itself. The demo and the benchmark both run the graph through here.

A run gets its own ROS_DOMAIN_ID (unless the user chose one) and namespace,
so it cannot disturb, or be disturbed by, a robot on the same network; every
process it starts is stopped on every way out, Ctrl-C included.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuflow_ros.imaging.synthetic_sequence import (
    Motion,
    SyntheticSequence,
    interior_margin,
    median_endpoint_error,
)
from neuflow_ros.tools.flow_consumer import FlowConsumer
from neuflow_ros.tools.graph_processes import (
    ChildProcess,
    GraphRunError,
    ReplayMonitor,
    graph_environment,
    log_warnings,
    node_command,
    wait_until,
)

__all__ = ["GraphRunConfig", "GraphRunError", "GraphRunResult", "run_graph"]

NAMESPACE_PREFIX = "/neuflow_graph"
ENGINE_READY_TIMEOUT_S = 120.0
"""NeuFlow on a CPU can take a while to load and warm up; DIS is ready in about a second."""
STARTUP_TIMEOUT_S = 30.0
SETTLE_TIMEOUT_S = 10.0
DIAGNOSTIC_PERIOD_S = 0.5
ERROR_STRIDE = 2
"""Flow error is scored on every second pixel in each direction: a quarter of the cost in the
consumer (which shares the CPU with the node), the same median within a few thousandths."""
_run_numbers = itertools.count()


@dataclass
class GraphRunConfig:
    """What to run: the camera, the node's engine, and any further node parameters."""

    width: int = 640
    height: int = 480
    rate_hz: float = 30.0
    frames: int = 150
    backend: str = "dis"
    checkpoint: Path | None = None
    device: str = "auto"
    tracking: bool = True
    source: Path | None = None
    """Folder of images or video file; None plays the synthetic sequence with known motion."""
    node_parameters: dict[str, Any] = field(default_factory=dict)
    """Extra node parameters by full name (e.g. {'drop_frames': False}); they win."""
    output_dir: Path | None = None
    """Keeps the processes' logs and parameters here; None uses a temporary folder."""
    motion: Motion = field(default_factory=Motion)
    """Motion per frame of the synthetic sequence."""

    def __post_init__(self) -> None:
        if self.width < 16 or self.height < 16:
            raise ValueError(f"frame size must be at least 16x16, got {self.width}x{self.height}")
        if not (self.rate_hz > 0.0 and math.isfinite(self.rate_hz)):
            raise ValueError(f"rate must be a positive number, got {self.rate_hz}")
        if self.frames < 2:
            raise ValueError(f"at least 2 frames are needed for one flow, got {self.frames}")
        if self.source is not None and not Path(self.source).exists():
            raise ValueError(f"source {self.source} does not exist")
        if self.checkpoint is not None and not Path(self.checkpoint).is_file():
            raise ValueError(f"checkpoint {self.checkpoint} is not a file")


@dataclass
class GraphRunResult:
    """What one run measured. Latencies: header stamp of the later frame -> receipt here."""

    config: GraphRunConfig
    frames_sent: int
    frames_received_by_node: int
    flows_published: int
    flows_received: int
    frames_dropped: int
    """Frames the node replaced before computing them (latest-frame-wins), from /diagnostics."""
    stream_resets: int
    latencies_ms: list[float]
    output_rate_hz: float
    node_overhead_ms: float
    """Node time per frame outside the engine: image callback + building and publishing output
    (p50 each, from /diagnostics)."""
    inference_ms: float
    backend: str
    device: str
    flow_error_px: float | None
    """Median over flows of the median end-point error in the interior; None without truth."""
    warnings: list[str]
    duration_s: float
    sample_flow: np.ndarray | None = field(default=None, repr=False)
    """The last flow received (HxWx2 float32), for pictures."""
    sample_pair: tuple[int, int] | None = None
    """Frame indices (earlier, later) of ``sample_flow`` in the replayed sequence."""

    @property
    def latency_p50_ms(self) -> float:
        return _percentile(self.latencies_ms, 50.0)

    @property
    def latency_p95_ms(self) -> float:
        return _percentile(self.latencies_ms, 95.0)

    @property
    def latency_min_ms(self) -> float:
        return min(self.latencies_ms) if self.latencies_ms else math.nan

    @property
    def latency_max_ms(self) -> float:
        return max(self.latencies_ms) if self.latencies_ms else math.nan

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers (NaN becomes None), without the per-message lists and arrays."""
        config = self.config
        values = {
            "width": config.width, "height": config.height, "rate_hz": config.rate_hz,
            "frames": config.frames, "source": str(config.source) if config.source else None,
            "requested_backend": config.backend, "backend": self.backend, "device": self.device,
            "checkpoint": str(config.checkpoint) if config.checkpoint else None,
            "tracking": config.tracking, "frames_sent": self.frames_sent,
            "frames_received_by_node": self.frames_received_by_node,
            "flows_published": self.flows_published, "flows_received": self.flows_received,
            "frames_dropped": self.frames_dropped, "stream_resets": self.stream_resets,
            "latency_min_ms": self.latency_min_ms, "latency_p50_ms": self.latency_p50_ms,
            "latency_p95_ms": self.latency_p95_ms, "latency_max_ms": self.latency_max_ms,
            "output_rate_hz": self.output_rate_hz,
            "node_overhead_ms": self.node_overhead_ms, "inference_ms": self.inference_ms,
            "flow_error_px": self.flow_error_px, "duration_s": self.duration_s,
            "warnings": list(self.warnings),
        }
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v
                for k, v in values.items()}


def _percentile(values: list[float], percent: float) -> float:
    return float(np.percentile(values, percent)) if values else math.nan


def _nested(parameters: dict[str, Any]) -> dict[str, Any]:
    """{'tracking.enabled': x} -> {'tracking': {'enabled': x}}, the shape params files use."""
    tree: dict[str, Any] = {}
    for name, value in parameters.items():
        *groups, leaf = name.split(".")
        branch = tree
        for group in groups:
            branch = branch.setdefault(group, {})
        branch[leaf] = value
    return tree


def node_parameters(config: GraphRunConfig) -> dict[str, Any]:
    parameters: dict[str, Any] = {
        "backend": config.backend,
        "checkpoint": str(Path(config.checkpoint).resolve()) if config.checkpoint else "",
        "device": config.device,
        "tracking.enabled": config.tracking,
        "diagnostic_period": DIAGNOSTIC_PERIOD_S,
    }
    parameters.update(config.node_parameters)
    return parameters


def replay_command(config: GraphRunConfig, namespace: str) -> list[str]:
    command = [
        sys.executable, "-m", "neuflow_ros.tools.camera_replay", "--topic", f"{namespace}/image",
        "--camera-info-topic", f"{namespace}/camera_info",
        "--rate", repr(config.rate_hz), "--frames", str(config.frames),
        "--width", str(config.width), "--height", str(config.height),
        "--print-stamps", "--wait-for-start",
    ]
    if config.source is not None:
        return [*command, "--source", str(Path(config.source).resolve())]
    motion = config.motion
    return [*command, "--dx", repr(motion.dx), "--dy", repr(motion.dy),
            "--rotation", repr(motion.rotation_deg), "--zoom", repr(motion.zoom)]


class _TruthScorer:
    """Scores a received flow against the synthetic sequence, by the frame indices of its stamps."""

    def __init__(self, config: GraphRunConfig, replay: ReplayMonitor) -> None:
        self._replay = replay
        self._sequence = SyntheticSequence(config.width, config.height, config.motion)
        self._margin = interior_margin(config.width, config.height) // ERROR_STRIDE
        self._truth_by_pair: dict[tuple[int, int], np.ndarray] = {}
        self.pending: list[tuple[int, int, np.ndarray]] = []
        self.unscorable = 0

    def __call__(self, flow: np.ndarray, previous: int, current: int) -> float | None:
        pair = self._pair(previous, current)
        if pair is None:
            self.pending.append((previous, current, flow.copy()))
            return None
        return self.score(flow, pair)

    def _pair(self, previous: int, current: int) -> tuple[int, int] | None:
        earlier, later = self._replay.index_of(previous), self._replay.index_of(current)
        return None if earlier is None or later is None else (earlier, later)

    def score(self, flow: np.ndarray, pair: tuple[int, int]) -> float | None:
        if flow.shape[:2] != (self._sequence.height, self._sequence.width):
            self.unscorable += 1
            return None
        # Constant motion: the truth depends only on how many frames apart the pair is.
        key = (0, pair[1] - pair[0])
        truth = self._truth_by_pair.get(key)
        if truth is None:
            truth = self._sequence.true_flow(*key)[::ERROR_STRIDE, ::ERROR_STRIDE]
            self._truth_by_pair[key] = truth
        return median_endpoint_error(flow[::ERROR_STRIDE, ::ERROR_STRIDE], truth, self._margin)

    def score_pending(self) -> list[float]:
        """Flows that arrived before their frames' stamps were read from the replay."""
        errors = []
        for previous, current, flow in self.pending:
            pair = self._pair(previous, current)
            error = None if pair is None else self.score(flow, pair)
            if error is not None:
                errors.append(error)
        return errors


def _count(values: dict[str, str], key: str) -> int:
    return int(values.get(key, "0") or 0)


def _milliseconds(values: dict[str, str], key: str) -> float:
    try:
        return float(values.get(key, "nan"))
    except ValueError:
        return math.nan


def run_graph(config: GraphRunConfig) -> GraphRunResult:
    """Start node and replay, play ``config.frames`` frames, and measure what comes back."""
    started = time.monotonic()
    # A namespace per run: DDS may still list the endpoints of the previous run's node.
    namespace = f"{NAMESPACE_PREFIX}_{os.getpid()}_{next(_run_numbers)}"
    node_fqn = f"{namespace}/neuflow"
    env_additions = graph_environment()
    with contextlib.ExitStack() as stack:
        if config.output_dir is None:
            work = Path(tempfile.mkdtemp(prefix="neuflow_graph_"))
            stack.callback(shutil.rmtree, work, ignore_errors=True)
        else:
            work = Path(config.output_dir)
            work.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **env_additions, "ROS_LOG_DIR": str(work / "ros_log"),
               "PYTHONUNBUFFERED": "1", "RCUTILS_COLORIZED_OUTPUT": "0"}
        params_path = work / "node_parameters.yaml"
        # JSON is valid YAML; '/**' matches the node in any namespace.
        params_path.write_text(json.dumps(
            {"/**": {"ros__parameters": _nested(node_parameters(config))}}, indent=2))

        node = ChildProcess("neuflow node", [
            *node_command(), "--ros-args", "-r", f"__ns:={namespace}",
            "--params-file", str(params_path)], env, work / "node.log")
        stack.callback(node.stop)
        replay = ChildProcess("camera replay", replay_command(config, namespace),
                              env, work / "replay.log", pipes=True)
        stack.callback(replay.stop)
        monitor = ReplayMonitor(replay.process.stdout)
        scorer = _TruthScorer(config, monitor) if config.source is None else None
        consumer = FlowConsumer(env_additions, f"{node_fqn}/flow", node_fqn,
                                scorer or (lambda *_: None))
        stack.callback(consumer.close)

        if not wait_until(lambda: consumer.engine_values().get("engine state") == "ready",
                     ENGINE_READY_TIMEOUT_S, (node, replay)):
            raise node.failure("did not report a ready flow engine")
        if not wait_until(monitor.ready.is_set, STARTUP_TIMEOUT_S, (node, replay)):
            raise replay.failure("found no subscriber on its image topic")
        if not wait_until(lambda: consumer.node.count_publishers(consumer.flow_topic) > 0,
                     STARTUP_TIMEOUT_S, (node,)):
            raise node.failure(f"does not publish {consumer.flow_topic}")
        replay.process.stdin.write(b"go\n")
        replay.process.stdin.flush()

        play_s = config.frames / config.rate_hz
        if not wait_until(lambda: replay.process.poll() is not None, play_s + STARTUP_TIMEOUT_S,
                     (node,)):
            raise replay.failure("did not finish playing")
        monitor.join(2.0)
        if replay.process.returncode != 0 or monitor.sent is None:
            raise replay.failure(f"failed with code {replay.process.returncode}")
        sent = monitor.sent

        def settled() -> bool:
            values = consumer.camera_values()
            flows = _count(values, "flows published")
            accounted = flows + _count(values, "frames dropped") + _count(values, "resets") + 1
            return (_count(values, "frames received") >= sent
                    and accounted >= _count(values, "frames received")
                    and consumer.flow_count() >= flows)

        wait_until(settled, SETTLE_TIMEOUT_S, (node,))
        time.sleep(DIAGNOSTIC_PERIOD_S * 1.5)  # one more report, after the last flow
        camera, engine = consumer.camera_values(), consumer.engine_values()
        node.stop()
        return _result(config, consumer, monitor, scorer, camera, engine, sent,
                       log_warnings(node.log_text()), time.monotonic() - started)


def _result(config: GraphRunConfig, consumer: FlowConsumer, monitor: ReplayMonitor,
            scorer: _TruthScorer | None,
            camera: dict[str, str], engine: dict[str, str], sent: int,
            warnings: list[str], duration_s: float) -> GraphRunResult:
    received = list(consumer.received)
    latencies = [(flow.receipt_ns - flow.stamp_ns) / 1e6 for flow in received]
    rate = math.nan
    if len(received) >= 2:
        span_s = (received[-1].receipt_ns - received[0].receipt_ns) / 1e9
        rate = (len(received) - 1) / span_s if span_s > 0 else math.nan
    errors = list(consumer.errors)
    error_px = None
    if scorer is not None:
        errors += scorer.score_pending()
        if scorer.unscorable:
            warnings.append(f"{scorer.unscorable} flow(s) not at input resolution were not "
                            "compared with the known motion")
        error_px = float(np.median(errors)) if errors else None
    node_received = _count(camera, "frames received")
    flows_published = _count(camera, "flows published")
    if node_received < sent:
        warnings.append(f"{sent - node_received} of {sent} frames never reached the node")
    if len(received) < flows_published:
        warnings.append(f"{flows_published - len(received)} of {flows_published} published "
                        "flows were not received")
    dropped = _count(camera, "frames dropped")
    if dropped:
        warnings.append(f"the node dropped {dropped} frame(s) arriving while it was busy")
    sample_flow, sample_pair = None, None
    if consumer.last_flow is not None:
        previous, current, sample_flow = consumer.last_flow
        earlier, later = monitor.index_of(previous), monitor.index_of(current)
        if earlier is not None and later is not None:
            sample_pair = (earlier, later)
    return GraphRunResult(
        config=config, frames_sent=sent, frames_received_by_node=node_received,
        flows_published=flows_published, flows_received=len(received), frames_dropped=dropped,
        stream_resets=_count(camera, "resets"), latencies_ms=latencies, output_rate_hz=rate,
        node_overhead_ms=_milliseconds(camera, "callback time p50 (ms)")
        + _milliseconds(camera, "publish time p50 (ms)"),
        inference_ms=_milliseconds(engine, "inference time p50 (ms)"),
        backend=engine.get("backend", "?"), device=engine.get("device", "?"),
        flow_error_px=error_px, warnings=warnings, duration_s=duration_s,
        sample_flow=sample_flow, sample_pair=sample_pair,
    )
