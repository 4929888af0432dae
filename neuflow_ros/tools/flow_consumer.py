"""The flow consumer of a measured graph: an rclpy node in the measuring process.

It runs on a private context and executor thread, so the caller's own ROS
use (if any) is untouched, and records what a downstream user of the node
would see: when each flow arrived, and the node's own /diagnostics.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from neuflow_ros.msg import OpticalFlow
from neuflow_ros.node.ros_messages import stamp_ns


@dataclass
class ReceivedFlow:
    """One flow message as the consumer saw it (nanoseconds, wall clock)."""

    receipt_ns: int
    stamp_ns: int
    previous_stamp_ns: int


class FlowConsumer:
    """Subscribes to the node's flow and /diagnostics in this process, on a private context."""

    def __init__(self, env: dict[str, str], flow_topic: str, node_fqn: str,
                 score: Callable[[np.ndarray, int, int], float | None]) -> None:
        self._prefix = node_fqn.lstrip("/")
        self._score = score
        self._lock = threading.Lock()
        self.received: list[ReceivedFlow] = []
        self.errors: list[float] = []
        self.last_flow: tuple[int, int, np.ndarray] | None = None
        self.statuses: dict[str, dict[str, str]] = {}
        self.context = Context()
        with _environment(env):
            domain = env.get("ROS_DOMAIN_ID", os.environ.get("ROS_DOMAIN_ID"))
            rclpy.init(context=self.context, domain_id=int(domain) if domain else None,
                       signal_handler_options=SignalHandlerOptions.NO)
            self.node = rclpy.create_node(f"neuflow_graph_consumer_{os.getpid()}",
                                          context=self.context)
        reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                              reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(OpticalFlow, flow_topic, self._on_flow, reliable)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.flow_topic = flow_topic
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        with contextlib.suppress(Exception):  # the context is shut down under it on close()
            self._executor.spin()

    def _on_flow(self, msg: OpticalFlow) -> None:
        receipt = time.time_ns()
        image = msg.flow
        dtype = ">f4" if image.is_bigendian else "<f4"
        flow = np.frombuffer(image.data, dtype=dtype).reshape(image.height, image.width, 2)
        current, previous = stamp_ns(msg.header.stamp), stamp_ns(msg.previous_stamp)
        error = self._score(flow, previous, current)
        with self._lock:
            self.received.append(ReceivedFlow(receipt, current, previous))
            if error is not None:
                self.errors.append(error)
            self.last_flow = (previous, current, flow.copy())

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        mine = {s.name: {kv.key: kv.value for kv in s.values} for s in msg.status
                if s.name.startswith(self._prefix + ":")}
        if mine:
            with self._lock:
                self.statuses = mine

    def engine_values(self) -> dict[str, str]:
        with self._lock:
            return dict(self.statuses.get(f"{self._prefix}: flow engine", {}))

    def camera_values(self) -> dict[str, str]:
        with self._lock:
            return dict(self.statuses.get(f"{self._prefix}: camera", {}))

    def flow_count(self) -> int:
        with self._lock:
            return len(self.received)

    def close(self) -> None:
        self._executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(2.0)


@contextlib.contextmanager
def _environment(variables: dict[str, str]) -> Iterator[None]:
    """Sets variables while this process's DDS participant is created (it reads them then)."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
