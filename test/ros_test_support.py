"""Shared helpers for the node tests: the node as a real process, rclpy on the test side.

The node is always started as a separate process (the installed executable,
as `ros2 run` would) and reached over real DDS, so the tests see what a user
sees: topic names, QoS, parameters over services, exit codes, log output.
conftest.py gives every test session its own ROS_DOMAIN_ID and log folder;
each node additionally gets a namespace of its own, so nodes of different
tests never share a topic.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import threading
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.srv import ChangeState, GetState
from polling import poll_until
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import SetParametersResult
from rcl_interfaces.srv import SetParameters
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from neuflow_ros.imaging.synthetic_sequence import textured_image
from neuflow_ros.tools.graph_processes import node_command

REPO_ROOT = Path(__file__).resolve().parents[1]
NODE_STARTUP_TIMEOUT_S = 30.0

_namespace_counter = itertools.count()


def unique_namespace(label: str) -> str:
    return f"/test_{label}_{os.getpid()}_{next(_namespace_counter)}"


def stamp(stamp_ns: int) -> Time:
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


def stamp_ns(time_msg: Time) -> int:
    return time_msg.sec * 1_000_000_000 + time_msg.nanosec


def image_msg(
    data: bytes | np.ndarray,
    encoding: str,
    width: int,
    height: int,
    step: int,
    stamp_nanoseconds: int,
    frame_id: str = "camera",
    is_bigendian: int = 0,
) -> Image:
    msg = Image(
        height=height, width=width, encoding=encoding, is_bigendian=is_bigendian, step=step
    )
    msg.data = array("B", bytes(data) if not isinstance(data, np.ndarray) else data.tobytes())
    msg.header.stamp = stamp(stamp_nanoseconds)
    msg.header.frame_id = frame_id
    return msg


class NodeProcess:
    """One neuflow node process with its own namespace, parameters file and log file."""

    def __init__(
        self,
        tmp_path: Path,
        parameters: dict[str, Any] | None = None,
        namespace: str | None = None,
        remappings: dict[str, str] | None = None,
        extra_env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
        executable: str = "neuflow_node",
    ) -> None:
        self.namespace = namespace or unique_namespace("node")
        self.name = "neuflow"
        self.fqn = f"{self.namespace}/{self.name}"
        tmp_path.mkdir(parents=True, exist_ok=True)
        self._log_path = tmp_path / f"{self.namespace.strip('/')}.log"
        params_path = tmp_path / f"{self.namespace.strip('/')}.yaml"
        # JSON is valid YAML; '/**' matches the node in any namespace.
        params_path.write_text(json.dumps({"/**": {"ros__parameters": parameters or {}}}))
        args = ["--ros-args", "-r", f"__ns:={self.namespace}", "--params-file", str(params_path)]
        for source, target in (remappings or {}).items():
            args += ["-r", f"{source}:={target}"]
        args += extra_args or []
        env = dict(os.environ)
        env["ROS_LOG_DIR"] = str(tmp_path / "ros_log")
        env["PYTHONUNBUFFERED"] = "1"
        env["RCUTILS_COLORIZED_OUTPUT"] = "0"
        env.update(extra_env or {})
        self._log_file = self._log_path.open("wb")
        self.process = subprocess.Popen(
            [*node_command(executable), *args], stdout=self._log_file, stderr=subprocess.STDOUT,
            env=env,
        )

    def topic(self, relative: str) -> str:
        """Name of one of the node's own topics (e.g. 'flow' -> /<ns>/neuflow/flow)."""
        return f"{self.fqn}/{relative}"

    def input_topic(self, relative: str) -> str:
        return f"{self.namespace}/{relative}"

    def output(self) -> str:
        if not self._log_file.closed:
            self._log_file.flush()
        return self._log_path.read_text(errors="replace")

    def wait_exit(self, timeout_s: float) -> int | None:
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def interrupt(
        self, sig: int = signal.SIGINT, timeout_s: float = 5.0
    ) -> tuple[int | None, float]:
        """Send ``sig``; returns (exit code or None if still running, seconds to exit)."""
        started = time.monotonic()
        self.process.send_signal(sig)
        code = self.wait_exit(timeout_s)
        return code, time.monotonic() - started

    def close(self) -> None:
        if self.process.poll() is None:
            self.interrupt(signal.SIGINT, 3.0)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5.0)
        self._log_file.close()


class MessageCollector:
    """Thread-safe list of the messages received on one topic."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self._condition = threading.Condition()

    def __call__(self, msg: Any) -> None:
        with self._condition:
            self.messages.append(msg)
            self._condition.notify_all()

    def wait_for(self, predicate: Callable[[list[Any]], Any], timeout_s: float) -> Any:
        """Wait until predicate(messages) is truthy; returns its value (or None on time-out)."""
        deadline = time.monotonic() + timeout_s
        with self._condition:
            while True:
                value = predicate(list(self.messages))
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0.0:
                    return None
                self._condition.wait(remaining)

    def wait_count(self, count: int, timeout_s: float) -> list[Any]:
        self.wait_for(lambda messages: len(messages) >= count, timeout_s)
        return list(self.messages)


def qos(reliable: bool, depth: int = 10) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
    )


class RosHarness:
    """An rclpy node in the test process, spun on a background thread."""

    def __init__(self, name: str) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"{name}_{os.getpid()}", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:
            # The context was shut down under the executor: the harness is closing.
            return

    def publisher(self, msg_type: Any, topic: str, reliable: bool = False, depth: int = 10) -> Any:
        return self.node.create_publisher(msg_type, topic, qos(reliable, depth))

    def collect(
        self, msg_type: Any, topic: str, reliable: bool = True, depth: int = 10
    ) -> MessageCollector:
        collector = MessageCollector()
        self.node.create_subscription(msg_type, topic, collector, qos(reliable, depth))
        return collector

    def wait_for_subscribers(self, publisher: Any, timeout_s: float = 10.0) -> bool:
        return poll_until(lambda: publisher.get_subscription_count() > 0, timeout_s, 0.02)

    def wait_for_publishers(self, topic: str, timeout_s: float = 10.0) -> bool:
        return poll_until(lambda: self.node.count_publishers(topic) > 0, timeout_s, 0.02)

    def set_parameters(
        self, node_fqn: str, values: dict[str, Any], timeout_s: float = 10.0
    ) -> list[SetParametersResult]:
        request = SetParameters.Request(
            parameters=[
                ParameterMsg(name=name, value=Parameter(name, value=value).get_parameter_value())
                for name, value in values.items()
            ]
        )
        response = self.call(SetParameters, f"{node_fqn}/set_parameters", request, timeout_s)
        return list(response.results)

    def call(self, srv_type: Any, service: str, request: Any, timeout_s: float = 10.0) -> Any:
        """Call a service of another process and return its response (TimeoutError if none)."""
        client = self.node.create_client(srv_type, service)
        try:
            if not client.wait_for_service(timeout_sec=timeout_s):
                raise TimeoutError(f"{service} is not available")
            future = client.call_async(request)
            deadline = time.monotonic() + timeout_s
            while not future.done():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{service} did not answer")
                time.sleep(0.01)
            return future.result()
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(2.0)


StatusTable = dict[str, tuple[int, str, dict[str, str]]]
"""{status name: (level, message, key-value pairs)} of one node's /diagnostics."""


class DiagnosticsWatcher:
    """Latest /diagnostics status values of one node, by status name."""

    def __init__(self, harness: RosHarness, node_fqn: str) -> None:
        self._prefix = node_fqn.lstrip("/")
        self._collector = harness.collect(DiagnosticArray, "/diagnostics", reliable=False, depth=50)

    def latest(self) -> StatusTable:
        """{status name: (level, message, values)} from the newest array of this node."""
        for array_msg in reversed(self._collector.messages):
            statuses = [s for s in array_msg.status if s.name.startswith(self._prefix + ":")]
            if statuses:
                return {
                    s.name: (
                        s.level[0] if isinstance(s.level, bytes) else int(s.level),
                        s.message,
                        {kv.key: kv.value for kv in s.values},
                    )
                    for s in statuses
                }
        return {}

    def wait_until(self, predicate: Callable[[StatusTable], Any], timeout_s: float) -> StatusTable:
        """Wait for a report satisfying predicate; returns the latest report either way."""
        deadline = time.monotonic() + timeout_s
        while True:
            report = self.latest()
            if report and predicate(report):
                return report
            if time.monotonic() > deadline:
                return report
            time.sleep(0.05)

    def camera(self, camera: str = "") -> tuple[int, str, dict[str, str]]:
        name = f"{self._prefix}: camera {camera}" if camera else f"{self._prefix}: camera"
        return self.latest().get(name, (-1, "", {}))

    def engine(self) -> tuple[int, str, dict[str, str]]:
        return self.latest().get(f"{self._prefix}: flow engine", (-1, "", {}))

    def wait_engine_ready(self, timeout_s: float = NODE_STARTUP_TIMEOUT_S) -> bool:
        name = f"{self._prefix}: flow engine"
        report = self.wait_until(
            lambda r: name in r and r[name][2].get("engine state") == "ready", timeout_s
        )
        return report.get(name, (0, "", {}))[2].get("engine state") == "ready"


def change_state(harness: RosHarness, node: NodeProcess, transition_id: int) -> bool:
    """Ask a lifecycle node for one transition (lifecycle_msgs Transition id); True on success."""
    request = ChangeState.Request()
    request.transition.id = transition_id
    return harness.call(ChangeState, f"{node.fqn}/change_state", request).success


def lifecycle_state(harness: RosHarness, node: NodeProcess) -> str:
    return harness.call(GetState, f"{node.fqn}/get_state", GetState.Request()).current_state.label


def flow_array(msg: Any) -> np.ndarray:
    """HxWx2 float32 from an OpticalFlow message's 32FC2 image (independent of the node's code)."""
    image = msg.flow
    assert image.encoding == "32FC2"
    assert image.step == image.width * 8
    dtype = ">f4" if image.is_bigendian else "<f4"
    return np.frombuffer(bytes(image.data), dtype=dtype).reshape(image.height, image.width, 2)


def wait_for_process_ready(harness: RosHarness, node: NodeProcess, timeout_s: float) -> None:
    """Block until the node's engine reports ready in /diagnostics (fails with its log)."""
    watcher = DiagnosticsWatcher(harness, node.fqn)
    if not watcher.wait_engine_ready(timeout_s):
        raise AssertionError(f"node did not become ready; its output:\n{node.output()}")


def rgb_msg(rgb: np.ndarray, stamp_nanoseconds: int, frame_id: str = "camera") -> Image:
    height, width = rgb.shape[:2]
    return image_msg(rgb, "rgb8", width, height, width * 3, stamp_nanoseconds, frame_id)


def flow_for(collector: MessageCollector, stamp_nanoseconds: int, timeout_s: float) -> Any:
    """The flow message whose header stamp is ``stamp_nanoseconds`` (None on time-out)."""
    return collector.wait_for(
        lambda messages: next(
            (m for m in messages if stamp_ns(m.header.stamp) == stamp_nanoseconds), None
        ),
        timeout_s,
    )


def camera_count(watcher: DiagnosticsWatcher, key: str, camera: str = "") -> int:
    return int(watcher.camera(camera)[2].get(key, "0"))


def send_processed(
    publisher: Any, watcher: DiagnosticsWatcher, msg: Any, camera: str = "", timeout_s: float = 10.0
) -> None:
    """Publish one frame and wait until the worker took it (so no later frame replaces it)."""
    stamp_text = f"{msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}"
    publisher.publish(msg)
    watcher.wait_until(
        lambda _: watcher.camera(camera)[2].get("last processed stamp") == stamp_text, timeout_s
    )


def prime_flow(
    collector: MessageCollector, publisher: Any, stamps: Any, node: NodeProcess,
    size: tuple[int, int] = (128, 96),
) -> None:
    """Send frame pairs until one flow arrives: afterwards all DDS endpoints are matched."""
    width, height = size
    for _ in range(40):
        first, second = next(stamps), next(stamps)
        publisher.publish(rgb_msg(textured_image(width, height), first))
        publisher.publish(rgb_msg(textured_image(width, height, (1.0, 0.5)), second))
        if flow_for(collector, second, timeout_s=0.5) is not None:
            return
    raise AssertionError(f"no flow came through; node output:\n{node.output()}")
