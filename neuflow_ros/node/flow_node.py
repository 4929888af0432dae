"""The ROS 2 flow node: camera images in, dense optical flow out.

This module holds the plain (unmanaged) node and the process entry point
shared with the lifecycle variant (lifecycle_node). The ROS wiring lives in
pipeline: subscription callbacks decode frames (frame_intake) and hand
them to a mailbox (frame_mailbox); a worker thread (flow_worker) owns the
engine and calls back into the pipeline's publishers; statistics and health
levels live in diagnostics, parameter declarations and validation in
parameters. Works on Humble, Jazzy and Kilted: nothing newer than
Humble's rclpy is used unguarded.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, Protocol

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.logging import get_logger
from rclpy.node import Node

from .diagnostics import NodeHealth
from .flow_worker import FlowWorker
from .parameters import ConfigurationError, NodeSettings, read_settings
from .pipeline import (
    FlowPipeline,
    create_node_engine,
    declare_node_parameters,
    engine_config_from,
    hint_at_fastdds_profile,
    runtime_parameter_callback,
)
from .process_exit import exit_without_teardown
from .unknown_overrides import report_unknown_overrides
from .worker_thread import WorkerThread

NODE_NAME = "neuflow"
SHUTDOWN_TIMEOUT_S = 1.0
"""How long stopping waits for the worker to leave its engine call; the process must end
within 3 s of a signal, and the rest of the teardown takes a few tenths of a second."""


class NeuFlowNode(Node):
    """Subscribes to one or more cameras and publishes dense flow between their frames."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(kwargs.pop("node_name", NODE_NAME), **kwargs)
        declare_node_parameters(self)
        report_unknown_overrides(self)
        self.settings: NodeSettings = read_settings(lambda name: self.get_parameter(name).value)
        engine_config_from(self.settings)  # fails start-up now on impossible engine settings
        self._worker_thread = WorkerThread()
        self.pipeline = FlowPipeline(
            self, self.settings, lambda: create_node_engine(self, self.settings),
            self._worker_thread,
        )
        self.add_on_set_parameters_callback(
            runtime_parameter_callback(self, lambda: self.pipeline)
        )
        hint_at_fastdds_profile(self, self.settings)
        self.pipeline.start()

    @property
    def worker(self) -> FlowWorker:
        assert self.pipeline.worker is not None, "the plain node's pipeline runs from start-up"
        return self.pipeline.worker

    @property
    def health(self) -> NodeHealth:
        return self.pipeline.health

    def exit_code(self) -> int | None:
        """None while the node should run; 1 (after one fatal log line) once the engine failed."""
        if not self.worker.failed:
            return None
        self.get_logger().fatal(
            f"cannot start the flow engine (backend '{self.settings.backend}', checkpoint "
            f"'{self.settings.checkpoint or ''}'): {self.worker.startup_error}"
        )
        return 1

    def shutdown(self) -> bool:
        """Stop the worker (dropping its batch in hand); False if it is still in an engine call."""
        stopped = self.pipeline.stop(SHUTDOWN_TIMEOUT_S)
        self._worker_thread.close()
        if not stopped:
            self.get_logger().warning(
                f"flow worker still inside an engine call after {SHUTDOWN_TIMEOUT_S} s; "
                "exiting without it"
            )
        return stopped


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


class StoppableNode(Protocol):
    """What run_node needs of an rclpy node besides spinning it (both flow nodes have it)."""

    def exit_code(self) -> int | None:
        """None while the node should keep running, else the process exit code."""

    def shutdown(self) -> bool:
        """Stop the worker before the node is destroyed; False if it is still in an engine call."""

    def destroy_node(self) -> None: ...


def run_node(create_node: Callable[[], StoppableNode], args: list[str] | None) -> int:
    """Spin a node until Ctrl-C / SIGTERM or until it has an exit code; stop it cleanly.

    An impossible parameter ends start-up with one fatal line and exit code 1.
    When the worker is still inside an engine call after the node has shut
    down, the process ends through exit_without_teardown: tearing the
    interpreter down around that call would abort it.
    """
    stop_requested = threading.Event()
    if _init_without_rclpy_signal_handlers(args):
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop_signal, lambda *_: stop_requested.set())
    logger = get_logger(NODE_NAME)
    node: StoppableNode | None = None
    exit_code: int | None = None
    try:
        node = create_node()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not stop_requested.is_set() and rclpy.ok() and exit_code is None:
            executor.spin_once(timeout_sec=0.1)
            exit_code = node.exit_code()
    except (ConfigurationError, ParameterException) as error:
        logger.fatal(f"cannot start: {error}")
        exit_code = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        worker_stopped = True
        if node is not None:
            worker_stopped = node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
    if not worker_stopped:
        exit_without_teardown(exit_code or 0)
    return exit_code or 0


def main(args: list[str] | None = None) -> int:
    """Run the flow node until Ctrl-C / SIGTERM; exit code 1 with one message if it cannot start."""
    return run_node(NeuFlowNode, args)


if __name__ == "__main__":
    sys.exit(main())
